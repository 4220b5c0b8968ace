//! What a Canary may hold: each field's bounds, and [`validate`], which checks every field and the
//! rules across fields and reports every problem at once, each starting with its field path.
//!
//! The schema carries what a plain Kubernetes API server can check by itself (patterns, lengths,
//! numeric bounds); this module checks the same again, so a spec built in code, or stored before a
//! bound existed, is judged the same way, and adds what a schema cannot say (duration ranges,
//! weights that only go up, metrics that need a Prometheus provider).

use std::time::Duration;

use super::{Analysis, CanarySpec, CanaryStep, Metric, MetricKind, MetricMode, ProviderKind, Webhook};
use crate::duration::{DurationRange, shown};

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `spec.analysis.interval`: 1s to 1h.
pub const INTERVAL: DurationRange = DurationRange::new(secs(1), secs(3600));
/// `spec.steps[].pause`: at most 24h.
pub const PAUSE: DurationRange = DurationRange::new(Duration::ZERO, secs(24 * 3600));
/// `spec.analysis.minDuration`: at most 24h.
pub const MIN_DURATION: DurationRange = DurationRange::new(Duration::ZERO, secs(24 * 3600));
/// `spec.analysis.warmup`: at most 1h.
pub const WARMUP: DurationRange = DurationRange::new(Duration::ZERO, secs(3600));
/// `spec.progressDeadline`: 10s to 72h.
pub const PROGRESS_DEADLINE: DurationRange = DurationRange::new(secs(10), secs(72 * 3600));
/// `spec.webhooks[].timeout`: 100ms to 60s.
pub const WEBHOOK_TIMEOUT: DurationRange = DurationRange::new(Duration::from_millis(100), secs(60));
/// `spec.analysis.provider.scrapeInterval`: 1s to 5m.
pub const SCRAPE_INTERVAL: DurationRange = DurationRange::new(secs(1), secs(300));

/// A Service name (DNS-1035 label), for `service`, `stable` and `canary`.
pub const SERVICE_NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
pub const MAX_SERVICE_NAME_LEN: usize = 63;
/// Webhook URLs and the Prometheus address.
pub const URL_PATTERN: &str = "^https?://";
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_STEPS: usize = 100;
pub const MAX_METRICS: usize = 20;
pub const MAX_METRIC_NAME_LEN: usize = 63;
pub const MAX_QUERY_LEN: usize = 4096;
pub const MAX_WEBHOOKS: usize = 20;
pub const MAX_WEBHOOK_NAME_LEN: usize = 63;
pub const MAX_WEBHOOK_METADATA: usize = 32;
pub const MAX_FAILURE_LIMIT: u32 = 100;
pub const MAX_MIN_REQUESTS: u64 = 1_000_000_000;
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;
pub const MAX_TOLERANCE: f64 = 100.0;

/// Every problem with `spec`, each as `field.path: what is wrong and what to write`; empty when
/// the spec is valid. Lists longer than their bound are reported once and checked up to the bound.
pub fn validate(spec: &CanarySpec) -> Vec<String> {
    let mut p = Problems(Vec::new());
    for (field, value) in
        [("spec.service", &spec.service), ("spec.stable", &spec.stable), ("spec.canary", &spec.canary)]
    {
        service_name(&mut p, field, value);
    }
    if !spec.stable.is_empty() && spec.stable == spec.canary {
        p.push("spec.canary", "must differ from spec.stable");
    }
    steps(&mut p, spec);
    analysis(&mut p, &spec.analysis);
    webhooks(&mut p, &spec.webhooks);
    p.duration("spec.progressDeadline", spec.progress_deadline.as_deref(), PROGRESS_DEADLINE);
    if let Some(name) = spec.route_ref.as_ref().and_then(|r| r.name.as_deref()) {
        let valid = is_object_name(name);
        if !valid {
            p.push("spec.routeRef.name", format!("{name:?} is not an object name: use lower-case letters, digits, '-' and '.', at most 253 characters"));
        }
    }
    p.0
}

/// A DNS subdomain: labels of lower-case letters, digits and `-`, not starting or ending with `-`.
fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, field: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{field}: {message}"));
    }

    fn duration(&mut self, field: &str, raw: Option<&str>, range: DurationRange) {
        if let Some(Err(e)) = raw.map(|r| range.parse(r)) {
            self.push(field, e);
        }
    }

    fn count<T>(&mut self, field: &str, items: &[T], max: usize) {
        if items.len() > max {
            self.push(field, format!("{} items; at most {max}", items.len()));
        }
    }

    fn length(&mut self, field: &str, text: &str, max: usize) -> bool {
        let len = text.chars().count();
        if len > max {
            self.push(field, format!("{len} characters long; at most {max}"));
        }
        len <= max
    }

    /// `value` must lie in `lo..=hi` (NaN never does).
    fn number(&mut self, field: &str, value: Option<f64>, lo: f64, hi: f64) {
        if let Some(v) = value
            && !(lo <= v && v <= hi)
        {
            self.push(field, format!("must be between {lo} and {hi}, got {}", num(v)));
        }
    }

    /// `value` must lie strictly between `lo` and `hi`.
    fn open_interval(&mut self, field: &str, value: Option<f64>, lo: f64, hi: f64, example: &str) {
        if let Some(v) = value
            && !(lo < v && v < hi)
        {
            self.push(field, format!("must be above {lo} and below {hi} (e.g. {example}), got {}", num(v)));
        }
    }
}

/// A number as a person reads it: `0.25`, `1500`, and `1e300` rather than 300 digits.
fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-6..1e15).contains(&v.abs()) { v.to_string() } else { format!("{v:e}") }
}

fn service_name(p: &mut Problems, field: &str, name: &str) {
    let valid = name.len() <= MAX_SERVICE_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() {
        p.push(field, "must not be empty; name a Service in this namespace");
    } else if !valid {
        p.push(
            field,
            format!(
                "{} is not a Service name: lower-case letters, digits and '-', starting with a letter and not ending with '-', at most {MAX_SERVICE_NAME_LEN} characters",
                shown(name)
            ),
        );
    }
}

fn steps(p: &mut Problems, spec: &CanarySpec) {
    if !spec.steps.is_empty() && (spec.step_weight.is_some() || spec.max_weight.is_some()) {
        p.push("spec.steps", "give either steps or stepWeight/maxWeight, not both");
    }
    for (field, value) in [("spec.stepWeight", spec.step_weight), ("spec.maxWeight", spec.max_weight)] {
        if let Some(w) = value
            && !(1..=100).contains(&w)
        {
            p.push(field, format!("must be between 1 and 100 (percent), got {w}"));
        }
    }
    p.count("spec.steps", &spec.steps, MAX_STEPS);
    let mut last = 0;
    for (i, CanaryStep { weight, pause, .. }) in spec.steps.iter().take(MAX_STEPS).enumerate() {
        let at = format!("spec.steps[{i}]");
        if *weight > 100 {
            p.push(&format!("{at}.weight"), format!("must be between 0 and 100 (percent), got {weight}"));
        } else if *weight < last {
            p.push(
                &format!("{at}.weight"),
                format!("{weight} is lower than an earlier step ({last}); weights only go up"),
            );
        }
        last = last.max(*weight).min(100);
        p.duration(&format!("{at}.pause"), pause.as_deref(), PAUSE);
    }
}

fn analysis(p: &mut Problems, a: &Analysis) {
    p.duration("spec.analysis.interval", a.interval.as_deref(), INTERVAL);
    p.duration("spec.analysis.minDuration", a.min_duration.as_deref(), MIN_DURATION);
    p.duration("spec.analysis.warmup", a.warmup.as_deref(), WARMUP);
    if let Some(n) = a.failure_limit
        && !(1..=MAX_FAILURE_LIMIT).contains(&n)
    {
        p.push("spec.analysis.failureLimit", format!("must be between 1 and {MAX_FAILURE_LIMIT}, got {n}"));
    }
    if let Some(n) = a.min_requests
        && n > MAX_MIN_REQUESTS
    {
        p.push("spec.analysis.minRequests", format!("must be at most {MAX_MIN_REQUESTS}, got {n}"));
    }
    p.open_interval("spec.analysis.alpha", a.alpha, 0.0, 0.5, "0.01");

    let prometheus = a.provider.kind == ProviderKind::Prometheus;
    match a.provider.address.as_deref() {
        None | Some("") if prometheus => {
            p.push("spec.analysis.provider.address", "required when type is prometheus (e.g. http://prometheus:9090)")
        }
        None | Some("") => {}
        Some(address) => url(p, "spec.analysis.provider.address", address),
    }
    if a.provider.scrape_interval.is_some() && !prometheus {
        p.push("spec.analysis.provider.scrapeInterval", "only for type prometheus; remove it or set type: prometheus");
    } else {
        p.duration("spec.analysis.provider.scrapeInterval", a.provider.scrape_interval.as_deref(), SCRAPE_INTERVAL);
    }
    if let Some(plane) = a.provider.data_plane
        && !prometheus
    {
        p.push(
            "spec.analysis.provider.dataPlane",
            format!(
                "{} chooses Prometheus queries, so it is only for type prometheus; remove it or set type: prometheus",
                plane.name()
            ),
        );
    }

    p.count("spec.analysis.metrics", &a.metrics, MAX_METRICS);
    for (i, m) in a.metrics.iter().take(MAX_METRICS).enumerate() {
        metric(p, &format!("spec.analysis.metrics[{i}]"), m, prometheus);
    }
}

fn metric(p: &mut Problems, at: &str, m: &Metric, prometheus: bool) {
    let field = |name: &str| format!("{at}.{name}");
    p.length(&field("name"), &m.name, MAX_METRIC_NAME_LEN);
    p.number(&field("minSuccessRate"), m.min_success_rate, 0.0, 100.0);
    p.open_interval(&field("quantile"), m.quantile, 0.0, 1.0, "0.99");
    if let Some(ms) = m.max_latency_ms
        && !(ms > 0.0 && ms <= MAX_LATENCY_MS)
    {
        p.push(
            &field("maxLatencyMs"),
            format!("must be above 0 and at most {MAX_LATENCY_MS} (an hour), got {}", num(ms)),
        );
    }
    p.number(&field("tolerance"), m.tolerance, 1.0, MAX_TOLERANCE);
    for (name, bound) in [("min", m.min), ("max", m.max)] {
        if let Some(v) = bound
            && !v.is_finite()
        {
            p.push(&field(name), format!("must be a finite number, got {}", num(v)));
        }
    }
    if let (Some(min), Some(max)) = (m.min, m.max)
        && min > max
    {
        p.push(&field("min"), format!("{} is above max ({}); no value could pass", num(min), num(max)));
    }
    let query = m.query.as_deref().unwrap_or("");
    p.length(&field("query"), query, MAX_QUERY_LEN);
    let mode =
        m.mode.unwrap_or(if m.kind == MetricKind::Custom { MetricMode::Absolute } else { MetricMode::Comparative });
    match (m.kind, mode) {
        (MetricKind::Custom, _) => {
            if query.is_empty() {
                p.push(&field("query"), "a custom metric needs a PromQL query");
            }
            if m.min.is_none() && m.max.is_none() {
                p.push(at, "a custom metric needs min, max or both");
            }
            if !prometheus {
                p.push(at, "custom queries need provider type prometheus");
            }
        }
        (MetricKind::SuccessRate, MetricMode::Absolute) if m.min_success_rate.is_none() => {
            p.push(&field("minSuccessRate"), "required for an absolute success-rate metric (e.g. 99)");
        }
        (MetricKind::Latency, MetricMode::Absolute) if m.max_latency_ms.is_none() => {
            p.push(&field("maxLatencyMs"), "required for an absolute latency metric (e.g. 500)");
        }
        _ => {}
    }
}

fn webhooks(p: &mut Problems, hooks: &[Webhook]) {
    p.count("spec.webhooks", hooks, MAX_WEBHOOKS);
    let hooks = &hooks[..hooks.len().min(MAX_WEBHOOKS)];
    for (i, w) in hooks.iter().enumerate() {
        let at = format!("spec.webhooks[{i}]");
        if w.name.is_empty() {
            p.push(&format!("{at}.name"), "must not be empty; name the hook for status and Events");
        } else if p.length(&format!("{at}.name"), &w.name, MAX_WEBHOOK_NAME_LEN)
            && let Some(first) = hooks[..i].iter().position(|h| h.name == w.name)
        {
            p.push(
                &format!("{at}.name"),
                format!("{} is used twice (also spec.webhooks[{first}]); give each hook its own name", shown(&w.name)),
            );
        }
        url(p, &format!("{at}.url"), &w.url);
        p.duration(&format!("{at}.timeout"), w.timeout.as_deref(), WEBHOOK_TIMEOUT);
        if w.metadata.len() > MAX_WEBHOOK_METADATA {
            p.push(&format!("{at}.metadata"), format!("{} entries; at most {MAX_WEBHOOK_METADATA}", w.metadata.len()));
        }
    }
}

fn url(p: &mut Problems, field: &str, url: &str) {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        p.push(field, format!("{} must be an http:// or https:// URL", shown(url)));
    } else {
        p.length(field, url, MAX_URL_LEN);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DataPlane, Provider};
    use super::*;

    fn spec() -> CanarySpec {
        CanarySpec { service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into(), ..Default::default() }
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
    fn the_interval_that_crashed_the_api_server_is_an_ordinary_error() {
        let mut s = spec();
        s.analysis.interval = Some("9999999999999999999999s".into());
        assert_eq!(
            validate(&s),
            vec!["spec.analysis.interval: must be between 1s and 1h, got \"9999999999999999999999s\"".to_string()]
        );
    }

    #[test]
    fn every_duration_field_names_its_range() {
        let mut s = spec();
        s.analysis.interval = Some("2h".into());
        s.analysis.min_duration = Some("25h".into());
        s.analysis.warmup = Some("2h".into());
        s.progress_deadline = Some("5s".into());
        s.steps = vec![CanaryStep { weight: 10, pause: Some("48h".into()), gate: false }];
        s.webhooks = vec![Webhook {
            name: "load".into(),
            url: "http://load".into(),
            timeout: Some("2m".into()),
            ..Default::default()
        }];
        assert_eq!(
            validate(&s),
            [
                "spec.steps[0].pause: must be at most 24h, got \"48h\"",
                "spec.analysis.interval: must be between 1s and 1h, got \"2h\"",
                "spec.analysis.minDuration: must be at most 24h, got \"25h\"",
                "spec.analysis.warmup: must be at most 1h, got \"2h\"",
                "spec.webhooks[0].timeout: must be between 100ms and 1m, got \"2m\"",
                "spec.progressDeadline: must be between 10s and 72h, got \"5s\"",
            ]
        );
    }

    #[test]
    fn numbers_names_and_lists_are_bounded() {
        let mut s = spec();
        s.service = "Web_App".into();
        s.step_weight = Some(0);
        s.analysis.failure_limit = Some(0);
        s.analysis.min_requests = Some(u64::MAX);
        s.analysis.alpha = Some(f64::NAN);
        s.analysis.metrics = vec![Metric {
            kind: MetricKind::Latency,
            quantile: Some(1.0),
            tolerance: Some(1e300),
            max_latency_ms: Some(-1.0),
            mode: Some(MetricMode::Absolute),
            ..Default::default()
        }];
        s.webhooks = vec![Webhook { name: "a".into(), url: "http://a".into(), ..Default::default() }; 2];
        let errors = validate(&s);
        let fields: Vec<&str> = errors.iter().map(|e| e.split_once(": ").unwrap().0).collect();
        assert_eq!(
            fields,
            [
                "spec.service",
                "spec.stepWeight",
                "spec.analysis.failureLimit",
                "spec.analysis.minRequests",
                "spec.analysis.alpha",
                "spec.analysis.metrics[0].quantile",
                "spec.analysis.metrics[0].maxLatencyMs",
                "spec.analysis.metrics[0].tolerance",
                "spec.webhooks[1].name",
            ],
            "{errors:#?}"
        );
        s = spec();
        s.steps = vec![CanaryStep::default(); MAX_STEPS + 1];
        assert_eq!(validate(&s), ["spec.steps: 101 items; at most 100"]);
    }

    #[test]
    fn numbers_in_messages_stay_short() {
        // Found by the property tests: `{}` of a tiny f64 printed hundreds of digits.
        let mut s = spec();
        s.analysis.provider =
            Provider { kind: ProviderKind::Prometheus, address: Some("http://p:9090".into()), ..Provider::default() };
        s.analysis.metrics = vec![Metric {
            kind: MetricKind::Custom,
            query: Some("up".into()),
            min: Some(1.065533902003367e-244),
            max: Some(-1.6957137914863517e-224),
            ..Default::default()
        }];
        assert_eq!(
            validate(&s),
            [
                "spec.analysis.metrics[0].min: 1.065533902003367e-244 is above max (-1.6957137914863517e-224); no value could pass"
            ]
        );
    }

    #[test]
    fn scrape_interval_is_for_prometheus_and_within_range() {
        let with = |kind, interval: &str| {
            let mut s = spec();
            s.analysis.provider = Provider {
                kind,
                address: Some("http://prometheus:9090".into()),
                scrape_interval: Some(interval.into()),
                data_plane: None,
            };
            validate(&s).join("\n")
        };
        assert_eq!(with(ProviderKind::Prometheus, "5s"), "");
        let field = "spec.analysis.provider.scrapeInterval: ";
        for (kind, interval, says) in [
            (ProviderKind::Mesh, "5s", "only for type prometheus"),
            (ProviderKind::Prometheus, "0s", "must be between 1s and 5m, got \"0s\""),
            (ProviderKind::Prometheus, "10m", "must be between 1s and 5m, got \"10m\""),
            (ProviderKind::Prometheus, "often", "is not a duration"),
        ] {
            let errors = with(kind, interval);
            assert!(errors.starts_with(field) && errors.contains(says), "{interval}: {errors}");
        }
    }

    #[test]
    fn data_plane_is_for_prometheus() {
        let with = |kind, plane| {
            let mut s = spec();
            s.analysis.provider = Provider {
                kind,
                address: Some("http://prometheus:9090".into()),
                scrape_interval: None,
                data_plane: Some(plane),
            };
            validate(&s)
        };
        for plane in [DataPlane::Shifter, DataPlane::Linkerd, DataPlane::Istio, DataPlane::Envoy] {
            assert_eq!(with(ProviderKind::Prometheus, plane), Vec::<String>::new(), "{plane:?}");
        }
        assert_eq!(
            with(ProviderKind::Mesh, DataPlane::Istio),
            [
                "spec.analysis.provider.dataPlane: istio chooses Prometheus queries, so it is only for type prometheus; remove it or set type: prometheus"
            ]
        );
    }

    #[test]
    fn data_plane_names_are_camel_case_and_default_to_shifter() {
        let p: Provider = serde_json::from_str(r#"{"type":"prometheus","dataPlane":"envoy"}"#).unwrap();
        assert_eq!(p.data_plane, Some(DataPlane::Envoy));
        assert_eq!(p.data_plane.unwrap_or_default().name(), "envoy");
        let p: Provider = serde_json::from_str(r#"{"type":"prometheus"}"#).unwrap();
        assert_eq!(p.data_plane.unwrap_or_default(), DataPlane::Shifter);
        let err = serde_json::from_str::<Provider>(r#"{"dataPlane":"cilium"}"#).unwrap_err();
        assert!(err.to_string().contains("expected one of `shifter`, `linkerd`, `istio`, `envoy`"), "{err}");
    }

    #[test]
    fn a_route_ref_names_an_object() {
        let mut s = spec();
        s.route_ref = Some(crate::canary::RouteRef { name: Some("web.v2".into()), ..Default::default() });
        assert!(validate(&s).is_empty());
        s.route_ref = Some(crate::canary::RouteRef { name: Some("Web_2".into()), ..Default::default() });
        assert_eq!(
            validate(&s),
            [
                "spec.routeRef.name: \"Web_2\" is not an object name: use lower-case letters, digits, '-' and '.', at most 253 characters"
            ]
        );
    }
}
