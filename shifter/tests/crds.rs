//! The CRD YAML committed for the Helm chart is exactly what `shifter crds` prints, so the chart can
//! never drift from the Rust types.

use std::path::Path;
use std::process::Command;

#[test]
fn committed_crd_yaml_equals_shifter_crds() {
    let out = Command::new(env!("CARGO_BIN_EXE_shifter")).arg("crds").output().expect("run shifter crds");
    assert!(out.status.success(), "shifter crds failed: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/shifter/crds/crds.yaml");
    let committed = std::fs::read_to_string(&path).expect("charts/shifter/crds/crds.yaml exists");
    assert!(
        printed == committed,
        "charts/shifter/crds/crds.yaml is stale; regenerate it with:\n  cargo run -q -p shifter -- crds > charts/shifter/crds/crds.yaml"
    );
}

#[test]
fn crds_print_every_kind_with_short_names_and_versions() {
    let out = Command::new(env!("CARGO_BIN_EXE_shifter")).arg("crds").output().expect("run shifter crds");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let names: Vec<&str> = docs.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["trafficsplits.split.smi-spec.io", "httproutegroups.specs.smi-spec.io", "canaries.shifter.dev"]);
    let split = &docs[0]["spec"];
    assert_eq!(split["names"]["shortNames"][0], "ts");
    let served: Vec<&str> =
        split["versions"].as_sequence().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(served.len(), 4);
    for v in ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"] {
        assert!(served.contains(&v), "{v} served");
    }
    let stored: Vec<&str> = split["versions"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(stored, ["v1alpha4"]);
    assert_eq!(docs[2]["spec"]["names"]["shortNames"][0], "canary");
}
