//! Every manifest in `examples/` is valid: it uses only fields the CRD schema knows, and it passes
//! the same validation shifter applies to live objects.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use shifter_crds::{Canary, HTTPRouteGroup, all_crds};
use support::documents;

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

fn schema_for(api_version: &str, kind: &str) -> Option<Value> {
    let (group, version) = api_version.split_once('/')?;
    let crd = all_crds().into_iter().find(|c| c.spec.group == group && c.spec.names.kind == kind)?;
    let v = crd.spec.versions.into_iter().find(|v| v.name == version)?;
    serde_json::to_value(v.schema?.open_api_v3_schema?).ok()
}

/// Fields in `value` the schema does not declare, and required fields it lacks, as JSON paths.
fn schema_problems(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if !map.contains_key(required.as_str().unwrap()) {
                    out.push(format!("{path}.{} is required", required.as_str().unwrap()));
                }
            }
            for (key, child) in map {
                if path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
                    continue;
                }
                match props.and_then(|p| p.get(key)) {
                    Some(s) => schema_problems(child, s, &format!("{path}.{key}"), out),
                    None if schema.get("additionalProperties").is_some() => {}
                    None => out.push(format!("{path}.{key} is not a known field")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    schema_problems(item, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn every_example_is_valid() {
    let files = example_files();
    assert!(files.len() >= 5, "examples/ holds a split per SMI version and a Canary");
    let mut kinds = Vec::new();
    for file in files {
        for doc in documents(&file) {
            let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            let at = format!("{} ({kind} {})", file.display(), doc["metadata"]["name"]);
            let schema =
                schema_for(&api_version, &kind).unwrap_or_else(|| panic!("{at}: no CRD serves {api_version} {kind}"));
            let mut problems = Vec::new();
            schema_problems(&doc, &schema, "", &mut problems);
            assert!(problems.is_empty(), "{at}: {problems:?}");
            match kind.as_str() {
                "TrafficSplit" => {
                    shifter_crds::normalise(&doc).unwrap_or_else(|e| panic!("{at}: {e}"));
                }
                "HTTPRouteGroup" => {
                    let mut stored = doc.clone();
                    stored["apiVersion"] = Value::String("specs.smi-spec.io/v1alpha4".into());
                    let group: HTTPRouteGroup = serde_json::from_value(stored).unwrap_or_else(|e| panic!("{at}: {e}"));
                    for m in &group.spec.matches {
                        let regexes = m
                            .path_regex
                            .iter()
                            .cloned()
                            .chain(m.headers.iter().flat_map(|h| h.pairs().into_iter().map(|p| p.1)));
                        for r in regexes {
                            regex::Regex::new(&r).unwrap_or_else(|e| panic!("{at}: {e}"));
                        }
                    }
                }
                "Canary" => {
                    let canary: Canary = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
                    let errors = shifter_crds::canary::validate(&canary.spec);
                    assert!(errors.is_empty(), "{at}: {errors:?}");
                }
                other => panic!("{at}: unexpected kind {other}"),
            }
            kinds.push(format!("{api_version} {kind}"));
        }
    }
    for version in ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"] {
        assert!(kinds.contains(&format!("split.smi-spec.io/{version} TrafficSplit")), "an example at {version}");
    }
    assert!(kinds.iter().any(|k| k.ends_with("HTTPRouteGroup")));
    assert!(kinds.iter().any(|k| k.ends_with("Canary")));
}

#[test]
fn the_schema_check_catches_a_typo() {
    let doc: Value = serde_json::json!({
        "apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "metadata": {"name": "x"},
        "spec": {"service": "web", "backend": [{"service": "a", "weight": 1}]}
    });
    let mut problems = Vec::new();
    schema_problems(&doc, &schema_for("split.smi-spec.io/v1alpha4", "TrafficSplit").unwrap(), "", &mut problems);
    assert_eq!(
        problems,
        vec![".spec.backends is required".to_string(), ".spec.backend is not a known field".to_string()]
    );
}
