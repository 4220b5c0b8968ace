//! PromQL over Prometheus' HTTP API. Built-in queries read the metric names of the data plane the
//! Canary names (shifter's proxies by default; see [`crate::provider::query_set`]).
//!
//! A window `[from, to)` becomes `increase(...[<to − from>s])` evaluated at `to`. Prometheus needs
//! several scrapes inside a range to say anything, so windows shorter than
//! [`PrometheusConfig::min_window_s`] are not queried.

use std::time::Duration;

use serde::Deserialize;
use shifter_crds::canary::DataPlane;
use shifter_proto::LATENCY_BOUNDS_MS;
use tracing::debug;

use crate::config::Target;
use crate::counts::{BackendCounts, LATENCY_BUCKETS};
use crate::error::{ConfigError, ProviderError};
use crate::provider::MetricsProvider;
use crate::provider::query_set::CountQueries;

/// Scrapes a window must span for `increase()` to say something reliable.
pub const SCRAPES_PER_WINDOW: i64 = 4;

/// The largest answer read from Prometheus; a bigger one is an error, never memory.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// How to reach Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`.
    pub address: String,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Bound on one query, every attempt and pause included: a slow Prometheus delays its own
    /// Canary's verdict by at most this much per query.
    pub deadline: Duration,
    /// Attempts per query (connection failures, timeouts and 5xx are retried; 4xx are not).
    pub attempts: u32,
    /// Pause before the second attempt, doubled after each further failure.
    pub backoff: Duration,
    /// Shortest window queried: at least four scrape intervals (default 60 s for 15 s scrapes).
    pub min_window_s: i64,
    /// Whose metric names the built-in counts are read from.
    pub data_plane: DataPlane,
}

impl PrometheusConfig {
    pub fn new(address: impl Into<String>) -> Self {
        PrometheusConfig {
            address: address.into().trim_end_matches('/').to_string(),
            timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(12),
            attempts: 3,
            backoff: Duration::from_millis(200),
            min_window_s: 60,
            data_plane: DataPlane::Shifter,
        }
    }
}

/// Reads counts and custom values from Prometheus.
pub struct PrometheusProvider {
    config: PrometheusConfig,
    client: reqwest::Client,
}

/// One sample of an instant query result: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct ApiSample {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

impl PrometheusProvider {
    /// A provider with an HTTP client of its own.
    pub fn new(config: PrometheusConfig) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| ProviderError::Malformed(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self::with_client(config, client))
    }

    /// A provider that shares `client` (and its connection pool) with other callers; timeouts are
    /// set per request from `config`.
    pub fn with_client(config: PrometheusConfig, client: reqwest::Client) -> Self {
        PrometheusProvider { config, client }
    }

    /// From a Canary's `spec.analysis.provider` (type `prometheus`, `address` required, `dataPlane`
    /// choosing the query set), with an HTTP client of its own.
    pub fn from_spec(provider: &shifter_crds::canary::Provider) -> Result<Self, ConfigError> {
        Self::from_spec_with_client(provider, reqwest::Client::new())
    }

    /// As [`PrometheusProvider::from_spec`], sharing `client`.
    pub fn from_spec_with_client(
        provider: &shifter_crds::canary::Provider,
        client: reqwest::Client,
    ) -> Result<Self, ConfigError> {
        let address = provider.address.as_deref().unwrap_or("").trim();
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "spec.analysis.provider.address",
                format!("{address:?} must be an http:// or https:// URL, e.g. http://prometheus:9090"),
            ));
        }
        let mut config = PrometheusConfig::new(address);
        config.data_plane = provider.data_plane.unwrap_or_default();
        if let Some(raw) = &provider.scrape_interval {
            let field = "spec.analysis.provider.scrapeInterval";
            let scrape =
                shifter_crds::canary::SCRAPE_INTERVAL.parse(raw).map_err(|e| ConfigError::invalid(field, e))?;
            config.min_window_s = SCRAPES_PER_WINDOW * scrape.as_secs().max(1) as i64;
        }
        Ok(PrometheusProvider::with_client(config, client))
    }

    pub fn config(&self) -> &PrometheusConfig {
        &self.config
    }

    /// Runs an instant query at `at_unix_s`, retrying transient failures, all within the deadline.
    pub async fn query(&self, promql: &str, at_unix_s: i64) -> Result<Vec<Sample>, ProviderError> {
        match tokio::time::timeout(self.config.deadline, self.query_with_retries(promql, at_unix_s)).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Timeout {
                address: self.config.address.clone(),
                timeout_ms: self.config.deadline.as_millis() as u64,
                attempts: self.config.attempts.max(1),
            }),
        }
    }

    async fn query_with_retries(&self, promql: &str, at_unix_s: i64) -> Result<Vec<Sample>, ProviderError> {
        let url = format!("{}/api/v1/query", self.config.address);
        let attempts = self.config.attempts.max(1);
        let mut backoff = self.config.backoff;
        let mut last = None;
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            match self.query_once(&url, promql, at_unix_s, attempts).await {
                Ok(samples) => return Ok(samples),
                Err(Retry::No(e)) => return Err(e),
                Err(Retry::Yes(e)) => {
                    debug!(error = %e, attempt, query = promql, "prometheus query failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ProviderError::Malformed("no attempt was made".into())))
    }

    async fn query_once(&self, url: &str, promql: &str, at: i64, attempts: u32) -> Result<Vec<Sample>, Retry> {
        let address = self.config.address.clone();
        let sent = self
            .client
            .get(url)
            .timeout(self.config.timeout)
            .query(&[("query", promql), ("time", &at.to_string())])
            .send()
            .await;
        let response = sent.map_err(|e| {
            Retry::Yes(if e.is_timeout() {
                ProviderError::Timeout {
                    address: address.clone(),
                    timeout_ms: self.config.timeout.as_millis() as u64,
                    attempts,
                }
            } else {
                ProviderError::Unreachable { address: address.clone(), attempts, detail: error_chain(&e.without_url()) }
            })
        })?;
        let status = response.status();
        let body = read_bounded(response, MAX_RESPONSE_BYTES).await.map_err(|e| match e {
            BodyError::TooLarge => Retry::No(ProviderError::Malformed(format!(
                "the answer is larger than {} MiB; narrow the query: {promql}",
                MAX_RESPONSE_BYTES / (1024 * 1024)
            ))),
            BodyError::Read(e) => Retry::Yes(ProviderError::Unreachable {
                address: address.clone(),
                attempts,
                detail: error_chain(&e.without_url()),
            }),
        })?;
        let parsed: Result<ApiResponse, _> = serde_json::from_str(&body);
        match parsed {
            Ok(api) if api.status == "error" => Err(Retry::No(ProviderError::Query {
                error_type: api.error_type.unwrap_or_default(),
                error: api.error.unwrap_or_default(),
                query: promql.to_string(),
            })),
            Ok(api) if status.is_success() => parse_result(api.data).map_err(Retry::No),
            _ => {
                let e = ProviderError::Status { address, status: status.as_u16(), body: truncate(&body, 200) };
                Err(if status.is_server_error() { Retry::Yes(e) } else { Retry::No(e) })
            }
        }
    }
}

enum Retry {
    Yes(ProviderError),
    No(ProviderError),
}

enum BodyError {
    TooLarge,
    Read(reqwest::Error),
}

/// The body as text, refusing to hold more than `max` bytes of it.
async fn read_bounded(mut response: reqwest::Response, max: usize) -> Result<String, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn parse_value(raw: &str) -> Result<f64, ProviderError> {
    match raw {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        other => other.parse().map_err(|_| ProviderError::Malformed(format!("sample value {other:?} is not a number"))),
    }
}

fn parse_result(data: Option<ApiData>) -> Result<Vec<Sample>, ProviderError> {
    let data = data.ok_or_else(|| ProviderError::Malformed("answer without data".into()))?;
    match data.result_type.as_str() {
        "vector" => {
            let samples: Vec<ApiSample> = serde_json::from_value(data.result)
                .map_err(|e| ProviderError::Malformed(format!("vector result: {e}")))?;
            samples
                .into_iter()
                .map(|s| Ok(Sample { labels: s.metric.into_iter().collect(), value: parse_value(&s.value.1)? }))
                .collect()
        }
        "scalar" => {
            let (_, raw): (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| ProviderError::Malformed(format!("scalar result: {e}")))?;
            Ok(vec![Sample { labels: Vec::new(), value: parse_value(&raw)? }])
        }
        other => Err(ProviderError::Malformed(format!(
            "result type {other}; use an instant vector or scalar query (no range selector at the top)"
        ))),
    }
}

/// Counts from an `increase()`: extrapolated, so round to whole requests.
fn count(value: f64, query: &str) -> Result<u64, ProviderError> {
    if value.is_nan() {
        return Err(ProviderError::NotANumber { query: query.to_string() });
    }
    Ok(value.max(0.0).round() as u64)
}

/// Per-bucket counts on [`LATENCY_BOUNDS_MS`] from cumulative `le` samples on any bounds.
///
/// Each of our bounds takes the cumulative count at the data plane's largest bound at or below it,
/// so a request is never placed faster than its data plane recorded it: on the same bounds
/// (shifter's, Linkerd's) the counts carry over unchanged; on others (Istio's and Envoy's 0.5, 25,
/// 250, 2500 ms...) a request lands in the first of our buckets that holds its whole bucket. Both
/// versions are binned alike, so the comparative judges compare like with like. Bounds missing from
/// the answer hold nothing beyond the bound below; `+Inf` holds everything counted.
fn buckets_from_cumulative(samples: &[Sample], query: &str) -> Result<Vec<u64>, ProviderError> {
    let mut points = Vec::with_capacity(samples.len());
    for s in samples {
        let Some(le) = s.label("le") else { continue };
        points.push((parse_value(le)?, count(s.value, query)?));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = vec![0u64; LATENCY_BUCKETS];
    let (mut below, mut next) = (0u64, 0);
    for (i, bound) in LATENCY_BOUNDS_MS.iter().chain([&f64::INFINITY]).enumerate() {
        let mut c = below;
        while let Some(&(le, n)) = points.get(next)
            && le <= bound + 1e-9
        {
            c = c.max(n);
            next += 1;
        }
        out[i] = c - below;
        below = c;
    }
    Ok(out)
}

impl MetricsProvider for PrometheusProvider {
    async fn counts(
        &self,
        target: &Target,
        backend: &str,
        from_unix_s: i64,
        to_unix_s: i64,
    ) -> Result<BackendCounts, ProviderError> {
        let queries = CountQueries::new(self.config.data_plane, target, backend, to_unix_s - from_unix_s);
        let samples = self.query(&queries.responses, to_unix_s).await?;
        if samples.is_empty() {
            return Err(ProviderError::EmptyResult { query: queries.responses });
        }
        let mut counts = BackendCounts::default();
        for s in &samples {
            let n = count(s.value, &queries.responses)?;
            counts.requests += n;
            if queries.failed(s.label(queries.outcome_label)) {
                counts.failures += n;
            }
        }
        let samples = self.query(&queries.latency, to_unix_s).await?;
        if !samples.is_empty() {
            counts.latency_counts = buckets_from_cumulative(&samples, &queries.latency)?;
        }
        Ok(counts)
    }

    async fn custom(&self, query: &str, _target: &Target, _from: i64, to_unix_s: i64) -> Result<f64, ProviderError> {
        let samples = self.query(query, to_unix_s).await?;
        match samples.as_slice() {
            [] => Err(ProviderError::EmptyResult { query: query.to_string() }),
            [one] if one.value.is_nan() => Err(ProviderError::NotANumber { query: query.to_string() }),
            [one] => Ok(one.value),
            many => Err(ProviderError::Malformed(format!(
                "query returned {} series; a custom metric must return one number (wrap it in sum()): {query}",
                many.len()
            ))),
        }
    }

    fn min_window_s(&self) -> i64 {
        self.config.min_window_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_buckets_become_per_bucket_counts() {
        let s = |le: &str, v: f64| Sample { labels: vec![("le".into(), le.into())], value: v };
        let samples = vec![s("+Inf", 10.0), s("1", 2.0), s("10", 7.4), s("5", 3.0), s("50000", 10.0)];
        let b = buckets_from_cumulative(&samples, "q").unwrap();
        assert_eq!(b[0], 2);
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 4);
        assert_eq!(b.iter().sum::<u64>(), 10);
        assert!(matches!(buckets_from_cumulative(&[s("1", f64::NAN)], "q"), Err(ProviderError::NotANumber { .. })));
    }

    #[test]
    fn the_spec_chooses_the_query_set_and_shifter_is_the_default() {
        use shifter_crds::canary::{Provider, ProviderKind};
        let mut spec = Provider {
            kind: ProviderKind::Prometheus,
            address: Some("http://prometheus:9090".into()),
            ..Provider::default()
        };
        assert_eq!(PrometheusProvider::from_spec(&spec).unwrap().config().data_plane, DataPlane::Shifter);
        spec.data_plane = Some(DataPlane::Istio);
        assert_eq!(PrometheusProvider::from_spec(&spec).unwrap().config().data_plane, DataPlane::Istio);
    }

    #[test]
    fn other_bounds_round_up_to_the_next_of_ours() {
        // Istio's and Envoy's default bounds: 0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, ... 3600000.
        let s = |le: &str, v: f64| Sample { labels: vec![("le".into(), le.into())], value: v };
        let samples = vec![
            s("0.5", 4.0),
            s("1", 4.0),
            s("5", 10.0),
            s("25", 16.0),
            s("250", 17.0),
            s("2500", 17.0),
            s("60000", 19.0),
            s("3600000", 20.0),
            s("+Inf", 20.0),
        ];
        let b = buckets_from_cumulative(&samples, "q").unwrap();
        let at = |bound: f64| LATENCY_BOUNDS_MS.iter().position(|&x| x == bound).unwrap();
        let mut want = vec![0u64; LATENCY_BUCKETS];
        want[at(1.0)] = 4; // ≤ 0.5 ms and ≤ 1 ms
        want[at(5.0)] = 6;
        want[at(30.0)] = 6; // (5, 25] ms: known only to be at most 25 ms
        want[at(300.0)] = 1; // (25, 250] ms
        want[LATENCY_BUCKETS - 1] = 3; // beyond 50 s
        assert_eq!(b, want);
    }

    #[test]
    fn result_types_parse_and_nan_is_kept() {
        let data = ApiData { result_type: "scalar".into(), result: serde_json::json!([1.0, "NaN"]) };
        assert!(parse_result(Some(data)).unwrap()[0].value.is_nan());
        let data = ApiData { result_type: "matrix".into(), result: serde_json::json!([]) };
        assert!(matches!(parse_result(Some(data)), Err(ProviderError::Malformed(_))));
    }
}
