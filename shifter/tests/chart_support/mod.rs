//! Renders `charts/shifter` with the real Helm engine (PyPI `helm-python-sdk`) and checks rendered
//! objects against their k8s-openapi types.

pub mod pod;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub const NAMESPACE: &str = "shifter-system";

/// Loads the chart and renders it; prints `{"manifests": {path: yaml}, "crds": [...], "lint": {...}}`
/// or `{"error": message}`.
const RENDER: &str = r#"
import json, sys
try:
    import helm_python as helm
except ImportError as e:
    print(json.dumps({"missing": str(e)}))
    sys.exit(0)
req = json.load(sys.stdin)
try:
    chart = helm.Chart.load(req["chart"])
    manifests = chart.render(req["values"], name=req["name"], namespace=req["namespace"], is_install=True)
    lint = helm.lint(req["chart"], req["values"], strict=True, namespace=req["namespace"])
    print(json.dumps({"manifests": manifests, "crds": chart.crds, "lint": lint}))
except helm.HelmError as e:
    print(json.dumps({"error": str(e)}))
"#;

pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/shifter")
}

/// What one `helm install` would create.
pub struct Render {
    pub objects: Vec<Value>,
    pub crds: Vec<Value>,
    pub lint: Value,
}

impl Render {
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", self.names()))
    }

    pub fn typed<T: DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        serde_json::from_value(self.get(kind, name).clone()).expect("typed object")
    }

    pub fn names(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
            .collect()
    }
}

/// Runs the Helm engine; `Err` carries the engine's message when rendering fails.
pub fn try_render(values: Value) -> Result<Render, String> {
    let request = json!({"chart": chart_dir(), "values": values, "name": "shifter", "namespace": NAMESPACE});
    try_render_request(request)
}

pub fn try_render_request(request: Value) -> Result<Render, String> {
    let mut child = Command::new("python3")
        .args(["-c", RENDER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs the Helm engine; install Python 3");
    serde_json::to_writer(child.stdin.take().unwrap(), &request).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Helm engine failed: {}", String::from_utf8_lossy(&out.stderr));
    let reply: Value = serde_json::from_slice(&out.stdout).expect("JSON from the Helm engine");
    if let Some(missing) = reply.get("missing") {
        panic!(
            "the Helm engine is not installed ({missing}); run scripts/install-test-tools.sh \
             (it runs `python3 -m pip install helm-python-sdk`)"
        );
    }
    if let Some(error) = reply.get("error") {
        return Err(error.as_str().unwrap().to_string());
    }
    let mut objects = Vec::new();
    for (template, yaml) in reply["manifests"].as_object().unwrap() {
        if template.ends_with("NOTES.txt") {
            continue;
        }
        objects.extend(documents(yaml.as_str().unwrap()).into_iter().map(|o| {
            assert!(o.is_object(), "{template} renders a non-object document: {o}");
            o
        }));
    }
    let crds = reply["crds"].as_array().unwrap().iter().flat_map(|c| documents(c["data"].as_str().unwrap())).collect();
    Ok(Render { objects, crds, lint: reply["lint"].clone() })
}

pub fn render(values: Value) -> Render {
    try_render(values).unwrap_or_else(|e| panic!("the chart does not render: {e}"))
}

pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Deserialising into the k8s-openapi type and serialising back must give the same JSON; a field
/// the type does not know (a typo in a template) or a value of the wrong shape shows up as a difference.
pub fn round_trips<T: DeserializeOwned + Serialize>(object: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).unwrap();
    match first_difference(object, &back, "") {
        None => Ok(()),
        Some(path) => Err(format!("{path} is not a field of this kind (or has the wrong shape)")),
    }
}

pub fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => first_difference(p, q, &format!("{path}.{k}")),
                _ => Some(format!("{path}.{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]")))
        }
        _ if a == b => None,
        _ => Some(path.to_string()),
    }
}
