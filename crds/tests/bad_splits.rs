//! Each way a TrafficSplit can be wrong gets its own message naming the field.

mod support;

use serde_json::{Value, json};
use shifter_crds::normalise::SplitErrorKind;
use support::mk_split;

fn only_error(obj: &Value) -> (SplitErrorKind, String) {
    let errs = shifter_crds::normalise(obj).expect_err("split must be rejected");
    assert_eq!(errs.0.len(), 1, "exactly one problem expected, got: {errs}");
    (errs.0[0].kind, errs.0[0].to_string())
}

#[test]
fn all_weights_zero() {
    let (kind, msg) = only_error(&mk_split("v1alpha4", &[("web-v1", json!(0)), ("web-v2", json!(0))]));
    assert_eq!(kind, SplitErrorKind::AllWeightsZero);
    assert!(msg.starts_with("spec.backends: every weight is 0"), "{msg}");
    let (kind, _) = only_error(&mk_split("v1alpha1", &[("web-v1", json!("0")), ("web-v2", json!("0m"))]));
    assert_eq!(kind, SplitErrorKind::AllWeightsZero);
}

#[test]
fn negative_weight() {
    let (kind, msg) = only_error(&mk_split("v1alpha2", &[("web-v1", json!(90)), ("web-v2", json!(-10))]));
    assert_eq!(kind, SplitErrorKind::NegativeWeight);
    assert!(msg.starts_with("spec.backends[1].weight: -10 is negative"), "{msg}");
    let (kind, msg) = only_error(&mk_split("v1alpha1", &[("web-v1", json!("-500m")), ("web-v2", json!(1))]));
    assert_eq!(kind, SplitErrorKind::NegativeWeight);
    assert!(msg.starts_with("spec.backends[0].weight:"), "{msg}");
}

#[test]
fn non_numeric_weight() {
    let (kind, msg) = only_error(&mk_split("v1alpha1", &[("web-v1", json!("lots")), ("web-v2", json!(1))]));
    assert_eq!(kind, SplitErrorKind::NonNumericWeight);
    assert!(msg.starts_with("spec.backends[0].weight: \"lots\" is not a Kubernetes quantity"), "{msg}");
    // A quantity is fine at v1alpha1 but not from v1alpha2 on, and the message says so.
    let (kind, msg) = only_error(&mk_split("v1alpha3", &[("web-v1", json!("500m")), ("web-v2", json!(1))]));
    assert_eq!(kind, SplitErrorKind::NonNumericWeight);
    assert!(msg.contains("spec.backends[0].weight") && msg.contains("v1alpha1 only"), "{msg}");
    let (_, msg) = only_error(&mk_split("v1alpha4", &[("web-v1", json!(2.5)), ("web-v2", json!(1))]));
    assert!(msg.contains("not a whole number"), "{msg}");
}

#[test]
fn duplicate_backend() {
    let (kind, msg) =
        only_error(&mk_split("v1alpha4", &[("web-v1", json!(50)), ("web-v2", json!(25)), ("web-v1", json!(25))]));
    assert_eq!(kind, SplitErrorKind::DuplicateBackend);
    assert!(msg.starts_with("spec.backends[2].service: \"web-v1\" is listed twice (also spec.backends[0])"), "{msg}");
}

#[test]
fn no_backends() {
    let (kind, msg) = only_error(&mk_split("v1alpha4", &[]));
    assert_eq!(kind, SplitErrorKind::NoBackends);
    assert!(msg.starts_with("spec.backends: no backends"), "{msg}");
    let mut missing = mk_split("v1alpha2", &[]);
    missing["spec"].as_object_mut().unwrap().remove("backends");
    assert_eq!(only_error(&missing).0, SplitErrorKind::NoBackends);
}

#[test]
fn unknown_match_kind() {
    let mut obj = mk_split("v1alpha4", &[("web-v1", json!(1))]);
    obj["spec"]["matches"] = json!([{"kind": "TCPRoute", "name": "db"}]);
    let (kind, msg) = only_error(&obj);
    assert_eq!(kind, SplitErrorKind::UnknownMatchKind);
    assert!(msg.starts_with("spec.matches[0].kind: unknown kind \"TCPRoute\""), "{msg}");
    // Matches do not exist before v1alpha3.
    let mut old = mk_split("v1alpha2", &[("web-v1", json!(1))]);
    old["spec"]["matches"] = json!([{"kind": "HTTPRouteGroup", "name": "ab"}]);
    let (kind, msg) = only_error(&old);
    assert_eq!(kind, SplitErrorKind::MatchesNotSupported);
    assert!(msg.starts_with("spec.matches: not part of split.smi-spec.io/v1alpha2"), "{msg}");
}

#[test]
fn empty_names() {
    let (kind, msg) = only_error(&mk_split("v1alpha4", &[("", json!(1))]));
    assert_eq!(kind, SplitErrorKind::EmptyName);
    assert!(msg.starts_with("spec.backends[0].service: must not be empty"), "{msg}");

    let mut apex = mk_split("v1alpha4", &[("web-v1", json!(1))]);
    apex["spec"]["service"] = json!("");
    let (kind, msg) = only_error(&apex);
    assert_eq!(kind, SplitErrorKind::EmptyName);
    assert!(msg.starts_with("spec.service: must not be empty"), "{msg}");

    let mut unnamed = mk_split("v1alpha3", &[("web-v1", json!(1))]);
    unnamed["spec"]["matches"] = json!([{"kind": "HTTPRouteGroup", "name": ""}]);
    let (kind, msg) = only_error(&unnamed);
    assert_eq!(kind, SplitErrorKind::EmptyName);
    assert!(msg.starts_with("spec.matches[0].name: must not be empty"), "{msg}");
}

#[test]
fn several_problems_are_all_reported() {
    let mut obj = mk_split("v1alpha4", &[("", json!(-1)), ("web-v2", json!("x"))]);
    obj["spec"]["service"] = json!("");
    let errs = shifter_crds::normalise(&obj).unwrap_err();
    let fields: Vec<&str> = errs.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.service", "spec.backends[0].service", "spec.backends[0].weight", "spec.backends[1].weight"]
    );
}

#[test]
fn wrong_api_version() {
    let mut obj = mk_split("v1alpha4", &[("web-v1", json!(1))]);
    obj["apiVersion"] = json!("split.smi-spec.io/v2");
    let (kind, msg) = only_error(&obj);
    assert_eq!(kind, SplitErrorKind::UnknownVersion);
    assert!(msg.starts_with("apiVersion: \"split.smi-spec.io/v2\""), "{msg}");
}
