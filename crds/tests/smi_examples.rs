//! The SMI spec's published TrafficSplit and HTTPRouteGroup shapes, at every version, are accepted
//! exactly as written and mean what the spec says they mean.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use shifter_crds::route_group;
use shifter_crds::traffic_split::{v1alpha1, v1alpha2, v1alpha3, v1alpha4};
use support::{documents, mk_split, shares};

fn smi(version: &str) -> Vec<Value> {
    documents(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/smi/{version}.yaml")))
}

fn deserialises(doc: &Value) {
    let api_version = doc["apiVersion"].as_str().unwrap();
    let kind = doc["kind"].as_str().unwrap();
    let result = match (kind, api_version) {
        ("TrafficSplit", "split.smi-spec.io/v1alpha1") => {
            serde_json::from_value::<v1alpha1::TrafficSplit>(doc.clone()).map(drop)
        }
        ("TrafficSplit", "split.smi-spec.io/v1alpha2") => {
            serde_json::from_value::<v1alpha2::TrafficSplit>(doc.clone()).map(drop)
        }
        ("TrafficSplit", "split.smi-spec.io/v1alpha3") => {
            serde_json::from_value::<v1alpha3::TrafficSplit>(doc.clone()).map(drop)
        }
        ("TrafficSplit", "split.smi-spec.io/v1alpha4") => {
            serde_json::from_value::<v1alpha4::TrafficSplit>(doc.clone()).map(drop)
        }
        ("HTTPRouteGroup", "specs.smi-spec.io/v1alpha3") => {
            serde_json::from_value::<route_group::v1alpha3::HTTPRouteGroup>(doc.clone()).map(drop)
        }
        ("HTTPRouteGroup", "specs.smi-spec.io/v1alpha4") => {
            serde_json::from_value::<route_group::v1alpha4::HTTPRouteGroup>(doc.clone()).map(drop)
        }
        other => panic!("unexpected document {other:?}"),
    };
    result.unwrap_or_else(|e| panic!("{kind} {api_version} {}: {e}", doc["metadata"]["name"]));
}

#[test]
fn every_published_example_deserialises_and_normalises() {
    let mut splits = 0;
    for version in ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"] {
        for doc in smi(version) {
            deserialises(&doc);
            if doc["kind"] == "TrafficSplit" {
                let n = shifter_crds::normalise(&doc)
                    .unwrap_or_else(|e| panic!("{version} {}: {e}", doc["metadata"]["name"]));
                let total: f64 = n.backends.iter().map(|b| b.percent).sum();
                assert!((total - 100.0).abs() < 1e-9, "{version}: shares add up to {total}");
                splits += 1;
            }
        }
    }
    assert_eq!(splits, 10, "every published split was read");
}

#[test]
fn published_examples_mean_what_the_spec_says() {
    let v1 = smi("v1alpha1");
    assert_eq!(shares(&v1[0]), vec![("website-v1".into(), 50.0), ("website-v2".into(), 50.0)]);
    assert_eq!(shares(&v1[1]), vec![("foobar-v1".into(), 100.0), ("foobar-v2".into(), 0.0)]);
    let v2 = smi("v1alpha2");
    assert_eq!(shares(&v2[1]), vec![("foobar-v1".into(), 66.67), ("foobar-v2".into(), 33.33)]);
    let v4 = smi("v1alpha4");
    assert_eq!(shares(&v4[0]), vec![("website-v1".into(), 90.0), ("website-v2".into(), 10.0)]);
    let ab = shifter_crds::normalise(&v4[1]).unwrap();
    assert_eq!(ab.route_groups, vec!["ab-test".to_string()]);
    // The self-referencing example: the apex itself is a valid backend.
    assert_eq!(shares(&v4[2]), vec![("foobar-next".into(), 10.0), ("foobar".into(), 90.0)]);
}

#[test]
fn header_matches_read_the_same_as_a_map_or_a_list() {
    let groups: Vec<route_group::HTTPRouteGroup> = smi("v1alpha4")
        .into_iter()
        .filter(|d| d["kind"] == "HTTPRouteGroup")
        .map(|mut d| {
            d["apiVersion"] = json!("specs.smi-spec.io/v1alpha4");
            serde_json::from_value(d).unwrap()
        })
        .collect();
    let android = &groups[0].spec.matches[0];
    assert_eq!(
        android.headers.as_ref().unwrap().pairs(),
        vec![
            ("cookie".to_string(), "^(.*?;)?(type=insider)(;.*)?$".to_string()),
            ("user-agent".to_string(), ".*Android.*".to_string())
        ]
    );
    let listed = &groups[1].spec.matches[1];
    assert_eq!(
        listed.headers.as_ref().unwrap().pairs(),
        vec![
            ("user-agent".to_string(), ".*-http-client/*.*".to_string()),
            ("client-app".to_string(), "bookbuyer".to_string())
        ]
    );
}

#[test]
fn quantity_weights_give_the_same_shares_as_their_integer_twin() {
    type Backends<'a> = &'a [(&'a str, Value)];
    let cases: [(Backends, Backends); 4] = [
        (&[("v1", json!("500m")), ("v2", json!("500m"))], &[("v1", json!(50)), ("v2", json!(50))]),
        (&[("v1", json!("900m")), ("v2", json!("100m"))], &[("v1", json!(9)), ("v2", json!(1))]),
        (&[("v1", json!(1)), ("v2", json!("500m"))], &[("v1", json!(1000)), ("v2", json!(500))]),
        (&[("v1", json!("90")), ("v2", json!("10"))], &[("v1", json!(90)), ("v2", json!(10))]),
    ];
    for (quantities, integers) in cases {
        assert_eq!(
            shares(&mk_split("v1alpha1", quantities)),
            shares(&mk_split("v1alpha2", integers)),
            "{quantities:?}"
        );
    }
}
