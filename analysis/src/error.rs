//! Errors of the analysis engine: a metrics source that failed, or a Canary analysis that cannot be
//! turned into a judge.

/// Why a metrics source gave no usable number. [`ProviderError::is_missing_data`] separates "the
/// source answered but had nothing to judge" (Inconclusive) from "the source failed" (Error).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    #[error("metrics source {address} unreachable after {attempts} attempts: {detail}")]
    Unreachable { address: String, attempts: u32, detail: String },
    #[error("metrics source {address} did not answer within {timeout_ms} ms ({attempts} attempts)")]
    Timeout { address: String, timeout_ms: u64, attempts: u32 },
    #[error("metrics source {address} answered HTTP {status}: {body}")]
    Status { address: String, status: u16, body: String },
    #[error("query rejected ({error_type}): {error}; query: {query}")]
    Query { error_type: String, error: String, query: String },
    #[error("unreadable answer from the metrics source: {0}")]
    Malformed(String),
    #[error("query returned no series (no traffic yet, or its labels match nothing): {query}")]
    EmptyResult { query: String },
    #[error("query returned NaN (usually 0/0: no requests in the window): {query}")]
    NotANumber { query: String },
    #[error("{0}")]
    Unsupported(String),
}

impl ProviderError {
    /// The source answered, but with nothing to judge: the verdict is Inconclusive, not Error.
    pub fn is_missing_data(&self) -> bool {
        matches!(self, ProviderError::EmptyResult { .. } | ProviderError::NotANumber { .. })
    }
}

/// A Canary's `spec.analysis` that cannot be judged as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { field: field.into(), message: message.into() }
    }
}
