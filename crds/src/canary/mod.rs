//! shifter's `Canary` (`shifter.dev/v1alpha1`): steps traffic to a new version, judges it against the
//! stable version and promotes or rolls back on its own. Every field has a default that works, so a
//! Canary needs only `service`, `stable` and `canary`.
//!
//! Each field's bounds are in its doc comment (what `kubectl explain` shows) and, where a plain
//! Kubernetes API server can check them, in the generated schema; [`validate`] checks them all,
//! with the cross-field rules, and reports every problem at once.

mod validate;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use validate::*;

pub const GROUP: &str = "shifter.dev";
pub const VERSION: &str = "v1alpha1";

/// Desired rollout of `canary` in place of `stable` behind the apex `service`.
// kube's derive takes one `printcolumn(...)` per column, which clippy reads as repeated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "shifter.dev",
    version = "v1alpha1",
    kind = "Canary",
    plural = "canaries",
    doc = "Canary steps traffic from a stable Service to a canary Service, judges the canary against stable, and promotes or rolls back on its own.",
    namespaced,
    status = "CanaryStatus",
    shortname = "canary",
    category = "shifter",
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.service"),
    printcolumn(name = "Stable", type_ = "string", json_path = ".status.stable"),
    printcolumn(name = "Canary", type_ = "string", json_path = ".spec.canary"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.canaryWeight"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.lastVerdict.result"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.lastVerdict.reason", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// The apex Service clients call. shifter creates and owns the TrafficSplit for it. A Service
    /// name: lower-case letters, digits and `-`, starting with a letter, at most 63 characters.
    #[schemars(pattern(SERVICE_NAME_PATTERN), length(min = 1, max = MAX_SERVICE_NAME_LEN))]
    pub service: String,
    /// The Service of the version that serves today (a Service name, as for `service`).
    #[schemars(pattern(SERVICE_NAME_PATTERN), length(min = 1, max = MAX_SERVICE_NAME_LEN))]
    pub stable: String,
    /// The Service of the new version (a Service name, as for `service`). Changing it starts a new rollout.
    #[schemars(pattern(SERVICE_NAME_PATTERN), length(min = 1, max = MAX_SERVICE_NAME_LEN))]
    pub canary: String,
    /// Explicit steps, at most 100, with weights that never go down. Leave empty to use
    /// `stepWeight`/`maxWeight`, or the default 10, 20, 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STEPS))]
    pub steps: Vec<CanaryStep>,
    /// Shorthand for steps: raise the canary weight by this much per step (1 to 100) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub step_weight: Option<u32>,
    /// … up to this weight (1 to 100), then promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_weight: Option<u32>,
    /// How the canary is judged.
    #[serde(default)]
    pub analysis: Analysis,
    /// HTTP hooks called at points of the rollout; at most 20, each with its own name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_WEBHOOKS))]
    pub webhooks: Vec<Webhook>,
    /// Roll back when a step makes no progress for this long: 10s to 72h (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::duration::PATTERN), length(max = crate::duration::MAX_LEN))]
    pub progress_deadline: Option<String>,
    /// Hold the rollout where it is; traffic stays at the current weight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Move weights on this Gateway API route instead of a TrafficSplit: an HTTPRoute or
    /// GRPCRoute whose parentRef is the `service` Service, created if absent. shifter changes only
    /// the weights of the stable and canary backendRefs in it (adding the canary's next to the
    /// stable one), and judges a step once the route is Accepted at its current generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_ref: Option<RouteRef>,
}

/// A Gateway API route a Canary moves weights on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteRef {
    /// `HTTPRoute` (default) or `GRPCRoute`.
    #[serde(default)]
    pub kind: RouteRefKind,
    /// The route's name in the Canary's namespace (default: the `service` name); lower-case
    /// letters, digits, `-` and `.`, at most 253 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ROUTE_NAME_PATTERN), length(min = 1, max = 253))]
    pub name: Option<String>,
}

/// The route kinds a Canary can drive.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RouteRefKind {
    #[default]
    HTTPRoute,
    GRPCRoute,
}

/// A DNS subdomain, as Kubernetes object names are.
pub const ROUTE_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

impl RouteRef {
    /// The route's name: `name`, else the Canary's `service`.
    pub fn name_or<'a>(&'a self, service: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(service)
    }
}

/// One step of a rollout.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of traffic sent to the canary during this step, 0 to 100.
    #[schemars(range(min = 0, max = 100))]
    pub weight: u32,
    /// Stay at this step at least this long even when analysis passes sooner (e.g. `2m`); at most 24h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::duration::PATTERN), length(max = crate::duration::MAX_LEN))]
    pub pause: Option<String>,
    /// Wait here for `kubectl shift promote` once analysis passes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gate: bool,
}

/// How the canary is judged each tick.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Time between verdicts: 1s to 1h (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::duration::PATTERN), length(max = crate::duration::MAX_LEN))]
    pub interval: Option<String>,
    /// Roll back after this many failed verdicts in a step, 1 to 100 (default 1 for comparative
    /// metrics, whose test already controls false alarms; raise it for absolute thresholds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_FAILURE_LIMIT))]
    pub failure_limit: Option<u32>,
    /// Canary requests a step must see before it can pass, 0 to 1000000000 (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_MIN_REQUESTS))]
    pub min_requests: Option<u64>,
    /// Time a step must last before it can pass: at most 24h (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::duration::PATTERN), length(max = crate::duration::MAX_LEN))]
    pub min_duration: Option<String>,
    /// Ignore the first window after each weight change: at most 1h (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::duration::PATTERN), length(max = crate::duration::MAX_LEN))]
    pub warmup: Option<String>,
    /// Chance of a false rollback over the whole rollout, above 0 and below 0.5 (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "exclusiveMinimum" = true, "maximum" = 0.5, "exclusiveMaximum" = true))]
    pub alpha: Option<f64>,
    /// Where metrics come from (default: the mesh's own telemetry).
    #[serde(default)]
    pub provider: Provider,
    /// Metrics to judge, at most 20. Empty means comparative success rate and latency against stable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_METRICS))]
    pub metrics: Vec<Metric>,
}

/// The source of metrics for analysis.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    /// `mesh` (the proxies' own telemetry, nothing to install) or `prometheus`.
    #[serde(default, rename = "type")]
    pub kind: ProviderKind,
    /// Prometheus base URL, e.g. `http://prometheus.monitoring:9090`; required for `prometheus`.
    /// An http:// or https:// URL of at most 2048 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(URL_PATTERN), length(max = MAX_URL_LEN))]
    pub address: Option<String>,
    /// How often Prometheus scrapes the proxies: 1s to 5m (default `15s`). Each window asked of it
    /// spans at least four scrapes, so the default judges one-minute windows; `prometheus` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::duration::PATTERN), length(max = crate::duration::MAX_LEN))]
    pub scrape_interval: Option<String>,
    /// Whose metric names the built-in success-rate and latency queries read (`prometheus` only):
    /// `shifter` (the default: shifter's proxies), `linkerd` (inbound metrics by Deployment),
    /// `istio` (destination-reported metrics by workload) or `envoy` (upstream cluster metrics,
    /// clusters named `<namespace>_<service>_<port>` as Contour names them). Linkerd and Istio
    /// workloads are taken to be named as the stable and canary Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_plane: Option<DataPlane>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[default]
    Mesh,
    Prometheus,
}

/// The data plane whose metrics Prometheus holds; it chooses the built-in query set. (Variants carry
/// plain comments: doc comments would turn the schema's string enum into a `oneOf`.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DataPlane {
    // shifter's own proxies: `response_total` and `response_latency_ms_bucket` by backend Service.
    #[default]
    Shifter,
    // Linkerd's proxies: inbound `response_total` and `response_latency_ms_bucket` by Deployment.
    Linkerd,
    // Istio's sidecars: `istio_requests_total` and `istio_request_duration_milliseconds_bucket`.
    Istio,
    // Envoy: `envoy_cluster_upstream_rq` and `envoy_cluster_upstream_rq_time_bucket` by cluster.
    Envoy,
}

impl DataPlane {
    /// The name a Canary spells it with.
    pub fn name(self) -> &'static str {
        match self {
            DataPlane::Shifter => "shifter",
            DataPlane::Linkerd => "linkerd",
            DataPlane::Istio => "istio",
            DataPlane::Envoy => "envoy",
        }
    }
}

/// One judged metric.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Name shown in verdicts, at most 63 characters (empty: `metric-<index>`).
    #[schemars(length(max = MAX_METRIC_NAME_LEN))]
    pub name: String,
    /// `successRate`, `latency` or `custom`.
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// `comparative` (against stable; the default for builtins) or `absolute` (fixed thresholds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MetricMode>,
    /// Absolute success rate floor in percent, 0 to 100 (successRate, absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub min_success_rate: Option<f64>,
    /// Latency quantile judged, above 0 and below 1 (latency; default 0.99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "exclusiveMinimum" = true, "maximum" = 1, "exclusiveMaximum" = true))]
    pub quantile: Option<f64>,
    /// Absolute latency ceiling in milliseconds, above 0 and at most 3600000 (latency, absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "exclusiveMinimum" = true, "maximum" = MAX_LATENCY_MS))]
    pub max_latency_ms: Option<f64>,
    /// Comparative: how much worse than stable is tolerated, as a ratio from 1 to 100 (default 1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_TOLERANCE))]
    pub tolerance: Option<f64>,
    /// Custom PromQL, at most 4096 characters; `{{namespace}}`, `{{service}}`, `{{backend}}` and
    /// `{{interval}}` are filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_QUERY_LEN))]
    pub query: Option<String>,
    /// Custom: the query result must be at least this (at most `max` when both are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Custom: the query result must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MetricKind {
    #[default]
    SuccessRate,
    Latency,
    Custom,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MetricMode {
    #[default]
    Comparative,
    Absolute,
}

/// An HTTP hook called during the rollout.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// Name shown in status and Events: 1 to 63 characters, unique among the Canary's webhooks.
    #[schemars(length(min = 1, max = MAX_WEBHOOK_NAME_LEN))]
    pub name: String,
    /// When it is called.
    #[serde(rename = "type")]
    pub kind: WebhookKind,
    /// http:// or https:// URL, at most 2048 characters, that receives a JSON POST.
    #[schemars(pattern(URL_PATTERN), length(max = MAX_URL_LEN))]
    pub url: String,
    /// Per-call timeout: 100ms to 60s (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::duration::PATTERN), length(max = crate::duration::MAX_LEN))]
    pub timeout: Option<String>,
    /// Extra key/values passed in the body, at most 32.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_WEBHOOK_METADATA))]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookKind {
    /// Before any traffic moves; failure counts as a failed check.
    #[default]
    PreRollout,
    /// Every analysis tick (e.g. to drive a load test); failure counts as a failed check.
    Rollout,
    /// Gate before promotion; the rollout waits until it answers 2xx.
    ConfirmPromotion,
    /// After promotion; failures are logged.
    PostRollout,
    /// Each tick; a 2xx answer rolls back.
    Rollback,
}

/// Where a rollout stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CanaryPhase {
    #[default]
    Idle,
    Progressing,
    Paused,
    WaitingConfirmation,
    Promoting,
    Succeeded,
    RolledBack,
}

/// Outcome of one analysis tick.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VerdictResult {
    Pass,
    Fail,
    #[default]
    Inconclusive,
    Error,
}

/// A verdict as recorded in status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictRecord {
    pub result: VerdictResult,
    /// A sentence with the numbers behind the verdict.
    pub reason: String,
    /// RFC 3339 time of the verdict.
    pub time: String,
    /// Step index the verdict was given in.
    #[serde(default)]
    pub step: u32,
    /// Canary weight when the verdict was given.
    #[serde(default)]
    pub weight: u32,
}

/// Everything a rollout needs to resume after a restart lives here.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub phase: CanaryPhase,
    /// The version serving 100% outside a rollout (the last promoted canary, or `spec.stable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<String>,
    /// The canary Service this rollout is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// Index into the effective steps.
    #[serde(default)]
    pub current_step: u32,
    /// Percent of traffic on the canary now.
    #[serde(default)]
    pub canary_weight: u32,
    /// Failed verdicts in the current step.
    #[serde(default)]
    pub failed_checks: u32,
    /// When the current step started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<String>,
    /// When the rollout last made progress (RFC 3339), for the progress deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_at: Option<String>,
    /// Webhooks that already succeeded in this rollout, as `name@step`; never called twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed_webhooks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<VerdictRecord>,
    /// Recent verdicts, newest last, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<VerdictRecord>,
    /// `Progressing`, `Promoted`, `RolledBack`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the current rollout started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_started_at: Option<String>,
    /// The last `kubectl shift` command acted on (its annotation value), so none runs twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_command: Option<String>,
    /// Recent traffic per version (the last minute), for `kubectl shift status`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendStats>,
    /// The analysis engine's evidence so far, so a restarted controller resumes the same test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<OpaqueState>,
}

/// Traffic one version served recently.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendStats {
    /// The Service (stable or canary).
    pub service: String,
    /// Percent of traffic routed to it now.
    pub weight: u32,
    /// Requests per second over the window.
    pub rps: f64,
    /// Percent of requests that succeeded; absent without traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// 99th-percentile latency in milliseconds (bucket upper bound); absent without traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Window length in seconds.
    pub window_seconds: u32,
}

/// Machine-written state kept as-is by the API server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct OpaqueState(pub serde_json::Value);

impl JsonSchema for OpaqueState {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OpaqueState".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Machine-written state; not for editing.",
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// Annotation `kubectl shift promote` sets: `promote@<time>` or `promote-full@<time>`.
pub const COMMAND_ANNOTATION: &str = "shifter.dev/command";

/// The steps a Canary runs, after applying shorthand and defaults.
pub fn effective_steps(spec: &CanarySpec) -> Vec<CanaryStep> {
    if !spec.steps.is_empty() {
        return spec.steps.clone();
    }
    let (step, max) = match (spec.step_weight, spec.max_weight) {
        (None, None) => {
            return [10, 20, 50].iter().map(|&w| CanaryStep { weight: w, ..Default::default() }).collect();
        }
        (s, m) => (s.unwrap_or(10).max(1), m.unwrap_or(50).min(100)),
    };
    let mut steps = Vec::new();
    let mut w = step;
    while w < max {
        steps.push(CanaryStep { weight: w, ..Default::default() });
        w += step;
    }
    steps.push(CanaryStep { weight: max, ..Default::default() });
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CanarySpec {
        CanarySpec { service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into(), ..Default::default() }
    }

    #[test]
    fn shorthand_expands_to_steps_ending_at_max() {
        let s = CanarySpec { step_weight: Some(20), max_weight: Some(50), ..spec() };
        let w: Vec<u32> = effective_steps(&s).iter().map(|s| s.weight).collect();
        assert_eq!(w, vec![20, 40, 50]);
        let w: Vec<u32> = effective_steps(&spec()).iter().map(|s| s.weight).collect();
        assert_eq!(w, vec![10, 20, 50]);
    }
}
