//! shifter's `Canary` (`shifter.dev/v1alpha1`): steps traffic to a new version, judges it against the
//! stable version and promotes or rolls back on its own. Every field has a default that works, so a
//! Canary needs only `service`, `stable` and `canary`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;

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
    /// The apex Service clients call. shifter creates and owns the TrafficSplit for it.
    pub service: String,
    /// The Service of the version that serves today.
    pub stable: String,
    /// The Service of the new version. Changing it starts a new rollout.
    pub canary: String,
    /// Explicit steps. Leave empty to use `stepWeight`/`maxWeight`, or the default 10, 20, 50, 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
    /// Shorthand for steps: raise the canary weight by this much per step …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub step_weight: Option<u32>,
    /// … up to this weight, then promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_weight: Option<u32>,
    /// How the canary is judged.
    #[serde(default)]
    pub analysis: Analysis,
    /// HTTP hooks called at points of the rollout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
    /// Roll back when a step makes no progress for this long (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
    /// Hold the rollout where it is; traffic stays at the current weight.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// One step of a rollout.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of traffic sent to the canary during this step.
    #[schemars(range(min = 0, max = 100))]
    pub weight: u32,
    /// Stay at this step at least this long even when analysis passes sooner (e.g. `2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
    /// Wait here for `kubectl shift promote` once analysis passes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gate: bool,
}

/// How the canary is judged each tick.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Time between verdicts (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Roll back after this many failed verdicts in a step (default 1 for comparative metrics, whose
    /// test already controls false alarms; raise it for absolute thresholds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub failure_limit: Option<u32>,
    /// Canary requests a step must see before it can pass (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// Time a step must last before it can pass (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_duration: Option<String>,
    /// Ignore the first window after each weight change (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<String>,
    /// Chance of a false rollback over the whole rollout (default 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// Where metrics come from (default: the mesh's own telemetry).
    #[serde(default)]
    pub provider: Provider,
    /// Metrics to judge. Empty means comparative success rate and latency against stable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// How often Prometheus scrapes the proxies (default `15s`). Each window asked of it spans at
    /// least four scrapes, so the default judges one-minute windows; `prometheus` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<String>,
}

/// Shortest and longest `spec.analysis.provider.scrapeInterval` accepted.
pub const SCRAPE_INTERVAL_RANGE: (std::time::Duration, std::time::Duration) =
    (std::time::Duration::from_secs(1), std::time::Duration::from_secs(300));

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[default]
    Mesh,
    Prometheus,
}

/// One judged metric.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Name shown in verdicts.
    pub name: String,
    /// `successRate`, `latency` or `custom`.
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// `comparative` (against stable; the default for builtins) or `absolute` (fixed thresholds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MetricMode>,
    /// Absolute success rate floor in percent (successRate, absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub min_success_rate: Option<f64>,
    /// Latency quantile judged (latency; default 0.99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1))]
    pub quantile: Option<f64>,
    /// Absolute latency ceiling in milliseconds (latency, absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<f64>,
    /// Comparative: how much worse than stable is tolerated, as a ratio (default 1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tolerance: Option<f64>,
    /// Custom PromQL; `{{namespace}}`, `{{service}}`, `{{backend}}` and `{{interval}}` are filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Custom: the query result must be at least this.
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
    /// Name shown in status and Events.
    pub name: String,
    /// When it is called.
    #[serde(rename = "type")]
    pub kind: WebhookKind,
    /// URL that receives a JSON POST.
    pub url: String,
    /// Per-call timeout (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Extra key/values passed in the body.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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

/// Checks what the schema cannot: cross-field rules and durations. Each message names its field.
pub fn validate(spec: &CanarySpec) -> Vec<String> {
    let mut errors = Vec::new();
    for (field, value) in
        [("spec.service", &spec.service), ("spec.stable", &spec.stable), ("spec.canary", &spec.canary)]
    {
        if value.is_empty() {
            errors.push(format!("{field}: must not be empty; name a Service in this namespace"));
        }
    }
    if !spec.stable.is_empty() && spec.stable == spec.canary {
        errors.push("spec.canary: must differ from spec.stable".to_string());
    }
    if !spec.steps.is_empty() && (spec.step_weight.is_some() || spec.max_weight.is_some()) {
        errors.push("spec.steps: give either steps or stepWeight/maxWeight, not both".to_string());
    }
    let mut last = 0;
    for (i, step) in spec.steps.iter().enumerate() {
        if step.weight > 100 {
            errors.push(format!("spec.steps[{i}].weight: {} is above 100", step.weight));
        }
        if step.weight < last {
            errors.push(format!(
                "spec.steps[{i}].weight: {} is lower than the step before ({last}); weights only go up",
                step.weight
            ));
        }
        last = step.weight;
        if let Some(p) = &step.pause
            && let Err(e) = parse_duration(p)
        {
            errors.push(format!("spec.steps[{i}].pause: {e}"));
        }
    }
    let durations = [
        ("spec.progressDeadline", spec.progress_deadline.as_ref()),
        ("spec.analysis.interval", spec.analysis.interval.as_ref()),
        ("spec.analysis.minDuration", spec.analysis.min_duration.as_ref()),
        ("spec.analysis.warmup", spec.analysis.warmup.as_ref()),
    ];
    for (field, value) in durations {
        if let Some(v) = value
            && let Err(e) = parse_duration(v)
        {
            errors.push(format!("{field}: {e}"));
        }
    }
    if let Some(a) = spec.analysis.alpha
        && !(a > 0.0 && a < 0.5)
    {
        errors.push(format!("spec.analysis.alpha: {a} must be between 0 and 0.5 (e.g. 0.01)"));
    }
    if spec.analysis.provider.kind == ProviderKind::Prometheus
        && spec.analysis.provider.address.as_deref().unwrap_or("").is_empty()
    {
        errors.push(
            "spec.analysis.provider.address: required when type is prometheus (e.g. http://prometheus:9090)"
                .to_string(),
        );
    }
    if let Some(raw) = &spec.analysis.provider.scrape_interval {
        let field = "spec.analysis.provider.scrapeInterval";
        let (min, max) = SCRAPE_INTERVAL_RANGE;
        match parse_duration(raw) {
            _ if spec.analysis.provider.kind != ProviderKind::Prometheus => {
                errors.push(format!("{field}: only for type prometheus; remove it or set type: prometheus"))
            }
            Err(e) => errors.push(format!("{field}: {e}")),
            Ok(d) if d < min || d > max => {
                errors.push(format!("{field}: {raw} is outside 1s..5m; give Prometheus' scrape_interval, e.g. 15s"))
            }
            Ok(_) => {}
        }
    }
    for (i, m) in spec.analysis.metrics.iter().enumerate() {
        let at = format!("spec.analysis.metrics[{i}]");
        let mode =
            m.mode.unwrap_or(if m.kind == MetricKind::Custom { MetricMode::Absolute } else { MetricMode::Comparative });
        match (m.kind, mode) {
            (MetricKind::Custom, _) => {
                if m.query.as_deref().unwrap_or("").is_empty() {
                    errors.push(format!("{at}.query: a custom metric needs a PromQL query"));
                }
                if m.min.is_none() && m.max.is_none() {
                    errors.push(format!("{at}: a custom metric needs min, max or both"));
                }
                if spec.analysis.provider.kind != ProviderKind::Prometheus {
                    errors.push(format!("{at}: custom queries need provider type prometheus"));
                }
            }
            (MetricKind::SuccessRate, MetricMode::Absolute) if m.min_success_rate.is_none() => {
                errors.push(format!("{at}.minSuccessRate: required for an absolute success-rate metric (e.g. 99)"));
            }
            (MetricKind::Latency, MetricMode::Absolute) if m.max_latency_ms.is_none() => {
                errors.push(format!("{at}.maxLatencyMs: required for an absolute latency metric (e.g. 500)"));
            }
            _ => {}
        }
    }
    for (i, w) in spec.webhooks.iter().enumerate() {
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            errors.push(format!("spec.webhooks[{i}].url: {:?} must be an http:// or https:// URL", w.url));
        }
        if let Some(t) = &w.timeout
            && let Err(e) = parse_duration(t)
        {
            errors.push(format!("spec.webhooks[{i}].timeout: {e}"));
        }
    }
    errors
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

    #[test]
    fn validation_names_each_bad_field() {
        assert!(validate(&spec()).is_empty());
        let bad = CanarySpec {
            canary: "web-v1".into(),
            progress_deadline: Some("10".into()),
            steps: vec![
                CanaryStep { weight: 50, ..Default::default() },
                CanaryStep { weight: 20, ..Default::default() },
            ],
            ..spec()
        };
        let errors = validate(&bad).join("\n");
        assert!(errors.contains("spec.canary: must differ"), "{errors}");
        assert!(errors.contains("spec.progressDeadline"), "{errors}");
        assert!(errors.contains("spec.steps[1].weight"), "{errors}");
    }

    #[test]
    fn scrape_interval_is_for_prometheus_and_within_range() {
        let with = |kind, interval: &str| {
            let mut s = spec();
            s.analysis.provider = Provider {
                kind,
                address: Some("http://prometheus:9090".into()),
                scrape_interval: Some(interval.into()),
            };
            validate(&s).join("\n")
        };
        assert_eq!(with(ProviderKind::Prometheus, "5s"), "");
        let field = "spec.analysis.provider.scrapeInterval: ";
        for (kind, interval, says) in [
            (ProviderKind::Mesh, "5s", "only for type prometheus"),
            (ProviderKind::Prometheus, "0s", "outside 1s..5m"),
            (ProviderKind::Prometheus, "10m", "outside 1s..5m"),
            (ProviderKind::Prometheus, "often", ""),
        ] {
            let errors = with(kind, interval);
            assert!(errors.starts_with(field) && errors.contains(says), "{interval}: {errors}");
        }
    }
}
