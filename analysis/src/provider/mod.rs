//! Where counts come from. Every provider answers the same two questions for a window `[from, to)`
//! in unix seconds: one backend's counts, and (if it can) the value of a custom query.

pub mod mesh;
pub mod prometheus;
pub mod query_set;

use std::future::Future;

use crate::config::Target;
use crate::counts::BackendCounts;
use crate::error::ProviderError;

/// A source of metrics for the analyzer.
pub trait MetricsProvider: Send + Sync {
    /// Counts for `backend` (the stable or canary Service) over `[from, to)`.
    fn counts(
        &self,
        target: &Target,
        backend: &str,
        from_unix_s: i64,
        to_unix_s: i64,
    ) -> impl Future<Output = Result<BackendCounts, ProviderError>> + Send;

    /// The value of a custom query over `[from, to)`, with template variables filled in.
    fn custom(
        &self,
        query: &str,
        target: &Target,
        from_unix_s: i64,
        to_unix_s: i64,
    ) -> impl Future<Output = Result<f64, ProviderError>> + Send;

    /// The shortest window this source can judge reliably (Prometheus: several scrape intervals).
    fn min_window_s(&self) -> i64 {
        1
    }
}

/// Fills `{{namespace}}`, `{{service}}`, `{{backend}}` (the canary) and `{{interval}}` (the window,
/// as a Prometheus duration such as `30s`).
pub fn render_template(query: &str, target: &Target, window_s: i64) -> String {
    query
        .replace("{{namespace}}", &target.namespace)
        .replace("{{service}}", &target.service)
        .replace("{{backend}}", &target.canary)
        .replace("{{interval}}", &format!("{}s", window_s.max(1)))
}

/// Either built-in provider, chosen from a Canary's `spec.analysis.provider`.
pub enum AnyProvider<M: mesh::MeshSource> {
    Mesh(mesh::MeshProvider<M>),
    Prometheus(prometheus::PrometheusProvider),
}

impl<M: mesh::MeshSource> AnyProvider<M> {
    /// The provider a Canary's `spec.analysis.provider` names; `mesh` reads from `source`.
    pub fn from_spec(spec: &shifter_crds::canary::Provider, source: M) -> Result<Self, crate::error::ConfigError> {
        Self::from_spec_with_client(spec, source, reqwest::Client::new())
    }

    /// As [`AnyProvider::from_spec`]; a Prometheus provider shares `http` (one connection pool for
    /// every Canary instead of a client per tick).
    pub fn from_spec_with_client(
        spec: &shifter_crds::canary::Provider,
        source: M,
        http: reqwest::Client,
    ) -> Result<Self, crate::error::ConfigError> {
        match spec.kind {
            shifter_crds::canary::ProviderKind::Mesh => Ok(AnyProvider::Mesh(mesh::MeshProvider::new(source))),
            shifter_crds::canary::ProviderKind::Prometheus => {
                prometheus::PrometheusProvider::from_spec_with_client(spec, http).map(AnyProvider::Prometheus)
            }
        }
    }
}

impl<M: mesh::MeshSource> MetricsProvider for AnyProvider<M> {
    async fn counts(
        &self,
        target: &Target,
        backend: &str,
        from_unix_s: i64,
        to_unix_s: i64,
    ) -> Result<BackendCounts, ProviderError> {
        match self {
            AnyProvider::Mesh(p) => p.counts(target, backend, from_unix_s, to_unix_s).await,
            AnyProvider::Prometheus(p) => p.counts(target, backend, from_unix_s, to_unix_s).await,
        }
    }

    async fn custom(
        &self,
        query: &str,
        target: &Target,
        from_unix_s: i64,
        to_unix_s: i64,
    ) -> Result<f64, ProviderError> {
        match self {
            AnyProvider::Mesh(p) => p.custom(query, target, from_unix_s, to_unix_s).await,
            AnyProvider::Prometheus(p) => p.custom(query, target, from_unix_s, to_unix_s).await,
        }
    }

    fn min_window_s(&self) -> i64 {
        match self {
            AnyProvider::Mesh(p) => p.min_window_s(),
            AnyProvider::Prometheus(p) => p.min_window_s(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_every_variable() {
        let t = Target {
            namespace: "shop".into(),
            service: "web".into(),
            stable: "web-v1".into(),
            canary: "web-v2".into(),
        };
        let q = "sum(rate(x{ns=\"{{namespace}}\",svc=\"{{service}}\",b=\"{{backend}}\"}[{{interval}}]))";
        assert_eq!(render_template(q, &t, 30), "sum(rate(x{ns=\"shop\",svc=\"web\",b=\"web-v2\"}[30s]))");
    }
}
