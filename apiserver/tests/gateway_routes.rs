//! The Gateway API route CRDs shifter installs where a cluster has none, served by the embedded
//! API server: a full GAMMA route is accepted with upstream's defaults filled in, fields from
//! other channels or releases are kept, and the schema refuses what upstream's refuses, naming
//! the field.

mod support;

use kube::Api;
use kube::api::PostParams;
use reqwest::Method;
use serde_json::{Value, json};
use shifter_crds::gateway::{HTTPRoute, RouteParentStatus, RouteStatus};
use support::{TestServer, send};

const ROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes";

async fn server_with_gateway_crds() -> TestServer {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let t = TestServer::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(t.client().await);
    for crd in shifter_crds::gateway_crds() {
        crds.create(&PostParams::default(), &crd).await.expect("Gateway API CRD accepted");
    }
    t
}

fn route(name: &str, weight: Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}, {"name": "edge"}],
            "hostnames": ["web.default.svc.cluster.local"],
            "rules": [{
                "name": "split",
                "matches": [{"path": {"type": "PathPrefix", "value": "/api"},
                             "headers": [{"name": "x-beta", "value": "1"}], "method": "GET"},
                            {"queryParams": [{"name": "v", "value": "2"}]}],
                "filters": [{"type": "RequestHeaderModifier",
                             "requestHeaderModifier": {"set": [{"name": "x-route", "value": "split"}]}}],
                "backendRefs": [{"name": "web-v1", "port": 8080, "weight": weight},
                                {"name": "web-v2", "port": 8080, "retryBudget": {"percent": 20}}],
                "timeouts": {"request": "10s", "backendRequest": "2s"},
                "retry": {"attempts": 2}
            }]
        }
    })
}

async fn send_json(t: &TestServer, method: Method, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
    send(t, method, path, "application/json", body.to_string()).await
}

#[tokio::test]
async fn a_full_route_is_stored_with_defaults_and_unknown_fields_kept() {
    let t = server_with_gateway_crds().await;
    let (code, stored) = send_json(&t, Method::POST, ROUTES, route("web", json!(90))).await;
    assert_eq!(code, 201, "{stored}");

    let spec = &stored["spec"];
    assert_eq!(spec["parentRefs"][0]["group"], "", "an explicit core group stays");
    assert_eq!(spec["parentRefs"][1]["group"], "gateway.networking.k8s.io", "upstream's default");
    assert_eq!(spec["parentRefs"][1]["kind"], "Gateway");
    let rule = &spec["rules"][0];
    assert_eq!(rule["matches"][0]["headers"][0]["type"], "Exact");
    assert_eq!(rule["matches"][1]["path"], json!({"type": "PathPrefix", "value": "/"}));
    assert_eq!(rule["backendRefs"][1]["weight"], 1);
    assert_eq!(rule["retry"], json!({"attempts": 2}), "an Experimental field is kept");
    assert_eq!(rule["backendRefs"][1]["retryBudget"], json!({"percent": 20}), "so is a nested unknown field");

    let typed: Api<HTTPRoute> = Api::namespaced(t.client().await, "default");
    let mut read = typed.get("web").await.expect("reads as shifter's type");
    assert!(read.spec.parent_refs()[0].is_service());
    assert_eq!(read.spec.rules()[0].extra["retry"], json!({"attempts": 2}));

    let parent_ref = read.spec.parent_refs()[0].clone();
    let condition = shifter_crds::conditions::condition("Accepted", true, "Accepted", "routed by shifter", None);
    read.status = Some(RouteStatus {
        parents: vec![RouteParentStatus {
            parent_ref,
            controller_name: "shifter.dev/controller".into(),
            conditions: vec![condition],
            ..Default::default()
        }],
        ..Default::default()
    });
    let written = typed
        .replace_status("web", &PostParams::default(), &read)
        .await
        .expect("status written through the subresource");
    let status = written.status.expect("status");
    assert_eq!(status.parents[0].conditions[0].type_, "Accepted");
    assert_eq!(written.spec.rules()[0].extra["retry"], json!({"attempts": 2}), "the status write left spec alone");
}

#[tokio::test]
async fn the_schema_refuses_what_upstreams_does_naming_the_field() {
    let t = server_with_gateway_crds().await;
    let (code, status) = send_json(&t, Method::POST, ROUTES, route("negative", json!(-1))).await;
    assert_eq!(code, 422, "{status}");
    let causes: Vec<&str> =
        status["details"]["causes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
    assert_eq!(causes, ["spec.rules[0].backendRefs[0].weight"]);
    assert!(status["message"].as_str().unwrap().contains("spec.rules[0].backendRefs[0].weight"), "{status}");

    let mut bad = route("bad", json!(1));
    bad["spec"]["rules"][0]["matches"][0]["path"]["type"] = json!("Glob");
    bad["spec"]["rules"][0]["timeouts"]["request"] = json!("ten seconds");
    bad["spec"]["parentRefs"][0]["port"] = json!(70000);
    let (code, status) = send_json(&t, Method::POST, ROUTES, bad).await;
    assert_eq!(code, 422, "{status}");
    let mut causes: Vec<&str> =
        status["details"]["causes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
    causes.sort();
    assert_eq!(
        causes,
        ["spec.parentRefs[0].port", "spec.rules[0].matches[0].path.type", "spec.rules[0].timeouts.request"]
    );
}
