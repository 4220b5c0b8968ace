//! CRD schemas as the server's only line of defence: a CRD whose schema cannot be enforced (an
//! invalid `pattern`) is refused at the path of the bad keyword; every bound a CRD declares is
//! enforced on its objects; and with shifter's admission turned off, the schema alone still
//! rejects what it describes, as on a cluster without shifter.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shifter_apiserver::AdmissionChain;
use support::{TestServer, install_crds, split};

async fn send(t: &TestServer, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let resp = t
        .http()
        .request(method, t.url(path))
        .bearer_auth(t.server.token())
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let code = resp.status();
    (code, resp.json().await.unwrap_or(Value::Null))
}

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const WIDGETS: &str = "/apis/test.shifter.dev/v1/namespaces/default/widgets";

fn widget_crd(x: Value) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.shifter.dev"},
        "spec": {"group": "test.shifter.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {"x": x}}}}}}]}})
}

fn causes(status: &Value) -> Vec<String> {
    status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["field"].as_str())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_crd_with_an_invalid_pattern_is_refused_naming_the_schema_path() {
    let t = TestServer::start().await;
    let (code, status) =
        send(&t, Method::POST, CRDS, widget_crd(json!({"type": "string", "pattern": "^[a-z+$"}))).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(causes(&status), ["spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.x.pattern"]);
    assert!(status["message"].as_str().unwrap().contains("regular expression"), "{status}");
    let (code, _) = send(&t, Method::GET, WIDGETS, Value::Null).await;
    assert_eq!(code, 404, "the refused CRD is not served");
    // The same CRD with a valid pattern is accepted, and the pattern enforced.
    let (code, _) = send(&t, Method::POST, CRDS, widget_crd(json!({"type": "string", "pattern": "^[a-z]+$"}))).await;
    assert_eq!(code, 201);
    let (code, status) =
        send(&t, Method::POST, WIDGETS, json!({"metadata": {"name": "w"}, "spec": {"x": "ABC"}})).await;
    assert_eq!(code, 422);
    assert_eq!(causes(&status), ["spec.x"]);
}

#[tokio::test]
async fn every_bound_a_crd_declares_is_enforced_on_its_objects() {
    let t = TestServer::start().await;
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 8},
        "weight": {"type": "integer", "minimum": 0, "maximum": 100},
        "mode": {"type": "string", "enum": ["fast", "safe"]},
        "steps": {"type": "array", "maxItems": 3, "items": {"type": "integer"}},
        "interval": {"type": "string", "pattern": "^[0-9]+(s|m)$"}}});
    let (code, status) = send(&t, Method::POST, CRDS, widget_crd(schema)).await;
    assert_eq!(code, 201, "{status}");
    let good = json!({"name": "web", "weight": 50, "mode": "safe", "steps": [1, 2], "interval": "30s"});
    let (code, status) =
        send(&t, Method::POST, WIDGETS, json!({"metadata": {"name": "ok"}, "spec": {"x": good}})).await;
    assert_eq!(code, 201, "{status}");
    for (i, (field, value)) in [
        ("name", json!("much-too-long")),
        ("weight", json!(-1)),
        ("weight", json!(101)),
        ("mode", json!("reckless")),
        ("steps", json!([1, 2, 3, 4])),
        ("interval", json!("soon")),
    ]
    .into_iter()
    .enumerate()
    {
        let mut x = good.clone();
        x[field] = value.clone();
        let (code, status) =
            send(&t, Method::POST, WIDGETS, json!({"metadata": {"name": format!("bad-{i}")}, "spec": {"x": x}})).await;
        assert_eq!(code, 422, "{field}={value}: {status}");
        assert_eq!(causes(&status), [format!("spec.x.{field}")], "{status}");
    }
}

#[tokio::test]
async fn with_admission_off_the_schema_alone_rejects_what_it_describes() {
    let bare = TestServer::start_with(|c| c.admission = AdmissionChain::none()).await;
    install_crds(&bare.client().await).await;
    let path = "/apis/split.smi-spec.io/v1alpha4/namespaces/default/trafficsplits";
    // The schema's own rule (a weight is a non-negative quantity) still holds.
    let (code, status) = send(&bare, Method::POST, path, split("negative", &[("web-v1", -1)])).await;
    assert_eq!(code, 422, "{status}");
    assert!(causes(&status).contains(&"spec.backends[0].weight".to_string()), "{status}");
    // A cross-field rule only shifter's admission knows (not every weight zero) does not.
    let zero = split("zero", &[("web-v1", 0), ("web-v2", 0)]);
    let (code, status) = send(&bare, Method::POST, path, zero.clone()).await;
    assert_eq!(code, 201, "{status}");

    let guarded = TestServer::start().await;
    install_crds(&guarded.client().await).await;
    let (code, status) = send(&guarded, Method::POST, path, zero).await;
    assert_eq!(code, 422, "shifter's admission is on by default: {status}");
}
