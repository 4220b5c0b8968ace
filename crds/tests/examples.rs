//! Every manifest in `examples/` is valid: it passes every check the CRD schema lets a plain
//! Kubernetes API server make (known fields, types, enums, patterns, lengths, bounds), and the same
//! validation shifter applies to live objects.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use shifter_crds::{Canary, HTTPRouteGroup};
use support::documents;
use support::schema::{schema_for, schema_problems};

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

fn example_files() -> Vec<PathBuf> {
    yaml_files("../examples")
}

#[test]
fn the_walk_through_canary_passes_the_schema_and_validation() {
    let mut canaries = 0;
    for file in yaml_files("../examples/cluster/app") {
        for doc in documents(&file).into_iter().filter(|d| d["kind"] == "Canary") {
            let mut problems = Vec::new();
            schema_problems(&doc, &schema_for("shifter.dev/v1alpha1", "Canary").unwrap(), "", &mut problems);
            assert!(problems.is_empty(), "{}: {problems:?}", file.display());
            let canary: Canary = serde_json::from_value(doc).unwrap();
            assert_eq!(shifter_crds::canary::validate(&canary.spec), Vec::<String>::new(), "{}", file.display());
            canaries += 1;
        }
    }
    assert_eq!(canaries, 1, "examples/cluster/app holds the walk-through's Canary");
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

#[test]
fn the_canary_driving_a_route_passes_the_schema_and_validation() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gateway-api/canary-httproute.yaml");
    let docs: Vec<Value> = documents(&file).into_iter().filter(|d| d["kind"] == "Canary").collect();
    assert_eq!(docs.len(), 1, "{}", file.display());
    let mut problems = Vec::new();
    schema_problems(&docs[0], &schema_for("shifter.dev/v1alpha1", "Canary").unwrap(), "", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let canary: Canary = serde_json::from_value(docs[0].clone()).unwrap();
    assert_eq!(shifter_crds::canary::validate(&canary.spec), Vec::<String>::new());
    let route = canary.spec.route_ref.expect("the example names a route");
    assert_eq!(route.name_or(&canary.spec.service), "web");
}
