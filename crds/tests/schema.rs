//! The generated CRDs carry what a plain Kubernetes API server can enforce by itself: on a real
//! cluster none of shifter's admission code runs, so absurd values must stop at the schema.

mod support;

use serde_json::{Value, json};
use shifter_crds::all_crds;
use support::schema::{nodes_with, problems_of};

fn canary(spec: Value) -> Value {
    let mut base = json!({"service": "web", "stable": "web-v1", "canary": "web-v2"});
    base.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
    json!({"apiVersion": "shifter.dev/v1alpha1", "kind": "Canary", "metadata": {"name": "web"}, "spec": base})
}

fn crd_schemas() -> Vec<Value> {
    all_crds().into_iter().map(|c| serde_json::to_value(c).unwrap()).collect()
}

/// Every pattern compiles with Rust's `regex` (the embedded API server's engine) and keeps to the
/// syntax RE2 (a Kubernetes API server's engine) reads the same way: no look-around or
/// back-references, which RE2 lacks, and no `\d`, `\w`, `\s` or `\b`, which mean ASCII in RE2 but
/// Unicode in `regex`.
#[test]
fn every_pattern_compiles_and_reads_the_same_in_re2_and_rust_regex() {
    let mut patterns = Vec::new();
    for crd in crd_schemas() {
        let mut nodes = Vec::new();
        nodes_with(&crd, "pattern", "", &mut nodes);
        patterns
            .extend(nodes.into_iter().filter_map(|(path, node)| Some((path, node["pattern"].as_str()?.to_string()))));
    }
    assert!(patterns.len() >= 10, "durations, names, URLs and quantities carry patterns: {patterns:?}");
    for (path, pattern) in patterns {
        regex::Regex::new(&pattern).unwrap_or_else(|e| panic!("{path}: {pattern}: {e}"));
        for construct in
            ["(?=", "(?!", "(?<", "\\1", "\\d", "\\D", "\\w", "\\W", "\\s", "\\S", "\\b", "\\B", "\\p", "\\z"]
        {
            assert!(!pattern.contains(construct), "{path}: {pattern} uses {construct}");
        }
        assert!(
            pattern.starts_with('^') && pattern.ends_with('$') || pattern == "^https?://",
            "{path}: {pattern} is anchored"
        );
    }
}

#[test]
fn the_schema_alone_rejects_the_interval_that_crashed_the_api_server() {
    let problems = problems_of(&canary(json!({"analysis": {"interval": "9999999999999999999999s"}})));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with(".spec.analysis.interval: "), "{problems:?}");
}

#[test]
fn the_schema_rejects_absurd_canary_values_in_every_field() {
    for (spec, field) in [
        (json!({"progressDeadline": "1e9s"}), ".spec.progressDeadline"),
        (json!({"steps": [{"weight": 10, "pause": "99999999999h"}]}), ".spec.steps[0].pause"),
        (json!({"steps": [{"weight": 101}]}), ".spec.steps[0].weight"),
        (
            json!({"webhooks": [{"name": "a", "type": "rollout", "url": "http://a", "timeout": "-1s"}]}),
            ".spec.webhooks[0].timeout",
        ),
        (json!({"webhooks": [{"name": "a", "type": "sometimes", "url": "http://a"}]}), ".spec.webhooks[0].type"),
        (json!({"webhooks": [{"name": "a", "type": "rollout", "url": "ftp://a"}]}), ".spec.webhooks[0].url"),
        (
            json!({"analysis": {"provider": {"type": "prometheus", "scrapeInterval": "15"}}}),
            ".spec.analysis.provider.scrapeInterval",
        ),
        (json!({"analysis": {"provider": {"type": "graphite"}}}), ".spec.analysis.provider.type"),
        (json!({"analysis": {"alpha": 0.5}}), ".spec.analysis.alpha"),
        (json!({"analysis": {"failureLimit": 0}}), ".spec.analysis.failureLimit"),
        (json!({"analysis": {"minRequests": 10_000_000_000u64}}), ".spec.analysis.minRequests"),
        (
            json!({"analysis": {"metrics": [{"name": "p", "type": "latency", "quantile": 1.0}]}}),
            ".spec.analysis.metrics[0].quantile",
        ),
        (
            json!({"analysis": {"metrics": [{"name": "p", "type": "latency", "maxLatencyMs": 0}]}}),
            ".spec.analysis.metrics[0].maxLatencyMs",
        ),
        (json!({"analysis": {"metrics": [{"name": "p", "type": "p99"}]}}), ".spec.analysis.metrics[0].type"),
        (json!({"stepWeight": 1000}), ".spec.stepWeight"),
        (json!({"canary": "Web_V2"}), ".spec.canary"),
        (json!({"steps": vec![json!({"weight": 1}); 101]}), ".spec.steps"),
    ] {
        let problems = problems_of(&canary(spec.clone()));
        assert!(problems.iter().any(|p| p.starts_with(&format!("{field}:"))), "{spec}: {problems:?}");
    }
    assert_eq!(problems_of(&canary(json!({}))), Vec::<String>::new());
}

#[test]
fn the_schema_bounds_traffic_split_weights_at_every_version() {
    let split = |version: &str, weight: Value| {
        json!({"apiVersion": format!("split.smi-spec.io/{version}"), "kind": "TrafficSplit", "metadata": {"name": "w"},
            "spec": {"service": "web", "backends": [{"service": "web-v1", "weight": weight}]}})
    };
    for version in ["v1alpha2", "v1alpha3", "v1alpha4"] {
        assert!(problems_of(&split(version, json!(1_000_000_000))).is_empty());
        assert_eq!(problems_of(&split(version, json!(1_000_000_001))).len(), 1, "{version}");
        assert_eq!(problems_of(&split(version, json!(-1))).len(), 1, "{version}");
    }
    for ok in [json!("500m"), json!("1G"), json!(".5"), json!("+1e3"), json!(90), json!("1Ki")] {
        assert!(problems_of(&split("v1alpha1", ok.clone())).is_empty(), "{ok}");
    }
    for bad in [json!("-1"), json!("1e999"), json!("99999999999999999999999999999"), json!(" 1"), json!(2_000_000_000)]
    {
        assert_eq!(problems_of(&split("v1alpha1", bad.clone())).len(), 1, "{bad}");
    }
}
