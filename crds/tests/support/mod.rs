//! Helpers shared by the crds integration tests.
#![allow(dead_code)]

pub mod schema;

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde::Deserialize;
use serde_json::{Value, json};

/// Every property test runs this many cases in a plain `cargo test`.
pub fn cases() -> Config {
    Config::with_cases(10_000)
}

/// Every YAML document in a file, as JSON values.
pub fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            serde_json::to_value(serde_yaml::Value::deserialize(doc).expect("valid YAML"))
                .expect("JSON-compatible YAML")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// A TrafficSplit at `version` with the given backends; weights are JSON values so tests can
/// write quantities, integers and bad values alike.
pub fn mk_split(version: &str, backends: &[(&str, Value)]) -> Value {
    json!({
        "apiVersion": format!("split.smi-spec.io/{version}"),
        "kind": "TrafficSplit",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "service": "web",
            "backends": backends.iter().map(|(s, w)| json!({"service": s, "weight": w})).collect::<Vec<_>>(),
        }
    })
}

/// Percentages of a normalised split, rounded to 0.01.
pub fn shares(obj: &Value) -> Vec<(String, f64)> {
    shifter_crds::normalise(obj)
        .unwrap_or_else(|e| panic!("{e}"))
        .backends
        .into_iter()
        .map(|b| (b.service, (b.percent * 100.0).round() / 100.0))
        .collect()
}

/// Any JSON value, a few levels deep, for property tests.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
