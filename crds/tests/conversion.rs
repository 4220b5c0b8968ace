//! A TrafficSplit written at any served version reads back at every other with weights that mean
//! the same shares, and a round trip returns exactly what was written.

mod support;

use serde_json::{Value, json};
use shifter_crds::convert::{MATCHES_ANNOTATION, convert};
use support::{mk_split, shares};

const VERSIONS: [&str; 4] = ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"];

fn api(version: &str) -> String {
    format!("split.smi-spec.io/{version}")
}

fn written_at_each_version() -> Vec<Value> {
    let mut ab = mk_split("v1alpha4", &[("web-v1", json!(0)), ("web-v2", json!(100))]);
    ab["spec"]["matches"] = json!([{"kind": "HTTPRouteGroup", "name": "beta"}]);
    vec![
        mk_split("v1alpha1", &[("web-v1", json!("900m")), ("web-v2", json!("100m"))]),
        mk_split("v1alpha1", &[("web-v1", json!(1)), ("web-v2", json!("500m"))]),
        mk_split("v1alpha2", &[("web-v1", json!(1000)), ("web-v2", json!(500))]),
        mk_split("v1alpha3", &[("web-v1", json!(90)), ("web-v2", json!(10))]),
        ab,
    ]
}

#[test]
fn every_version_reads_back_at_every_other_with_the_same_shares() {
    for original in written_at_each_version() {
        let expected = shares(&original);
        for target in VERSIONS {
            let converted = convert(original.clone(), &api(target)).unwrap();
            assert_eq!(converted["apiVersion"], json!(api(target)));
            assert_eq!(shares(&converted), expected, "{} → {target}", original["apiVersion"]);
            let back = convert(converted, original["apiVersion"].as_str().unwrap()).unwrap();
            assert_eq!(back, original, "round trip through {target}");
        }
    }
}

#[test]
fn stored_form_has_integer_weights() {
    let stored =
        convert(mk_split("v1alpha1", &[("web-v1", json!(1)), ("web-v2", json!("500m"))]), &api("v1alpha4")).unwrap();
    assert_eq!(stored["spec"]["backends"][0]["weight"], json!(1000));
    assert_eq!(stored["spec"]["backends"][1]["weight"], json!(500));
}

#[test]
fn matches_survive_a_trip_through_versions_without_them() {
    let original = written_at_each_version().pop().unwrap();
    let old = convert(original.clone(), &api("v1alpha2")).unwrap();
    assert!(old["spec"].get("matches").is_none(), "v1alpha2 has no matches field");
    assert!(old["metadata"]["annotations"][MATCHES_ANNOTATION].is_string());
    assert_eq!(convert(old, &api("v1alpha4")).unwrap(), original);
}

#[test]
fn edits_at_the_stored_version_show_at_v1alpha1() {
    let mut stored =
        convert(mk_split("v1alpha1", &[("web-v1", json!("500m")), ("web-v2", json!("500m"))]), &api("v1alpha4"))
            .unwrap();
    stored["spec"]["backends"][0]["weight"] = json!(900);
    stored["spec"]["backends"][1]["weight"] = json!(100);
    let old = convert(stored, &api("v1alpha1")).unwrap();
    assert_eq!(old["spec"]["backends"][0]["weight"], json!("900"));
    assert_eq!(shares(&old), vec![("web-v1".into(), 90.0), ("web-v2".into(), 10.0)]);
}

#[test]
fn unknown_versions_are_refused() {
    let err = convert(mk_split("v1alpha4", &[("a", json!(1))]), "split.smi-spec.io/v9").unwrap_err();
    assert!(err.to_string().contains("v9"), "{err}");
}
