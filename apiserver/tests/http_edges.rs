//! The HTTP boundary seen by a raw client: authentication, Status bodies for bad input, discovery
//! documents, Tables and the OpenAPI document `kubectl explain` reads.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestServer, install_crds, send, split};

fn assert_status(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let t = TestServer::start().await;
    let none = t.http().get(t.url("/api/v1/namespaces")).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let wrong = t.http().get(t.url("/api/v1/namespaces")).bearer_auth("not-the-token").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_status(&wrong.json().await.unwrap(), 401, "Unauthorized");
    let ok = t.http().get(t.url("/api/v1/namespaces")).bearer_auth(t.server.token()).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // Plain HTTP is not served at all.
    let plain = reqwest::Client::new().get(t.url("/version").replace("https://", "http://")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test]
async fn bad_input_gets_a_kubernetes_status_and_writes_nothing() {
    let t = TestServer::start().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, body) = send(&t, reqwest::Method::POST, cms, "application/json", "{\"metadata\": ").await;
    assert_eq!(code, 400);
    assert_status(&body, 400, "BadRequest");
    let (code, body) = send(&t, reqwest::Method::POST, cms, "application/yaml", "metadata: [unclosed").await;
    assert_eq!(code, 400);
    assert_status(&body, 400, "BadRequest");
    let (code, body) =
        send(&t, reqwest::Method::GET, "/api/v1/namespaces/default/widgets", "application/json", "").await;
    assert_eq!(code, 404);
    assert_status(&body, 404, "NotFound");
    let (code, body) = send(&t, reqwest::Method::POST, &format!("{cms}/some-name"), "application/json", "{}").await;
    assert_eq!(code, 405);
    assert_status(&body, 405, "MethodNotAllowed");
    let (code, body) = send(
        &t,
        reqwest::Method::POST,
        cms,
        "application/json",
        json!({"metadata": {"name": "Not_A_DNS_Name"}}).to_string(),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
    let (code, body) = send(
        &t,
        reqwest::Method::POST,
        "/api/v1/namespaces/nowhere/configmaps",
        "application/json",
        json!({"metadata": {"name": "x"}}).to_string(),
    )
    .await;
    assert_eq!(code, 404, "{body}");
    let huge = json!({"metadata": {"name": "big"}, "data": {"x": "a".repeat(4 * 1024 * 1024)}}).to_string();
    let (code, body) = send(&t, reqwest::Method::POST, cms, "application/json", huge).await;
    assert_eq!(code, 413);
    assert_status(&body, 413, "RequestEntityTooLarge");
    // Well-formed JSON of the wrong shape is a 422 naming the field, never a crash.
    for (path, body, field) in [
        (cms, json!({"metadata": {"name": "x", "labels": "app=web"}}), "metadata.labels"),
        ("/api/v1/namespaces/default/secrets", json!({"metadata": {"name": "x"}, "data": "c2VjcmV0"}), "data"),
        (
            "/api/v1/namespaces/default/services",
            json!({"metadata": {"name": "x"}, "spec": {"ports": [80]}}),
            "spec.ports[0]",
        ),
        ("/api/v1/namespaces", json!({"metadata": {"name": "x", "finalizers": "kubernetes"}}), "metadata.finalizers"),
    ] {
        let (code, body) = send(&t, reqwest::Method::POST, path, "application/json", body.to_string()).await;
        assert_eq!(code, 422, "{path}: {body}");
        assert_eq!(body["details"]["causes"][0]["field"], field, "{body}");
    }
    let (_, list) = send(&t, reqwest::Method::GET, cms, "application/json", "").await;
    assert_eq!(list["items"], json!([]), "none of the bad requests wrote anything");
    // YAML bodies are accepted when declared.
    let (code, _) =
        send(&t, reqwest::Method::POST, cms, "application/yaml", "metadata:\n  name: from-yaml\ndata:\n  k: v\n").await;
    assert_eq!(code, 201);
}

#[tokio::test]
async fn discovery_lists_crd_resources_at_every_served_version() {
    let t = TestServer::start().await;
    install_crds(&t.client().await).await;
    let (_, groups) = send(&t, reqwest::Method::GET, "/apis", "application/json", "").await;
    let split =
        groups["groups"].as_array().unwrap().iter().find(|g| g["name"] == "split.smi-spec.io").expect("split group");
    assert_eq!(split["preferredVersion"]["version"], "v1alpha4");
    assert_eq!(split["versions"].as_array().unwrap().len(), 4);
    for v in ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"] {
        let (code, list) =
            send(&t, reqwest::Method::GET, &format!("/apis/split.smi-spec.io/{v}"), "application/json", "").await;
        assert_eq!(code, 200);
        let ts = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "trafficsplits").unwrap();
        assert_eq!(ts["shortNames"], json!(["ts"]));
        assert_eq!(ts["namespaced"], true);
        assert!(ts["verbs"].as_array().unwrap().contains(&json!("watch")));
        assert!(list["resources"].as_array().unwrap().iter().any(|r| r["name"] == "trafficsplits/status"));
    }
    // Aggregated discovery, as kubectl asks for it first: everything in one document.
    let resp = t
        .http()
        .get(t.url("/apis"))
        .bearer_auth(t.server.token())
        .header("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
        .send()
        .await
        .unwrap();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.contains("as=APIGroupDiscoveryList"), "{ct}");
    let agg: Value = resp.json().await.unwrap();
    let group = agg["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "split.smi-spec.io").unwrap();
    assert_eq!(group["versions"][0]["version"], "v1alpha4", "preferred version first");
    let ts = &group["versions"][0]["resources"][0];
    assert_eq!((ts["resource"].as_str(), ts["scope"].as_str()), (Some("trafficsplits"), Some("Namespaced")));
    assert_eq!(ts["shortNames"], json!(["ts"]));
    assert_eq!(ts["subresources"][0]["subresource"], "status");
    // kube-rs discovery agrees.
    let discovery = kube::Discovery::new(t.client().await).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk("split.smi-spec.io", "v1alpha2", "TrafficSplit"))
        .unwrap();
    assert_eq!(ar.plural, "trafficsplits");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
}

#[tokio::test]
async fn tables_show_printer_columns_and_openapi_describes_fields() {
    let t = TestServer::start().await;
    install_crds(&t.client().await).await;
    let path = "/apis/split.smi-spec.io/v1alpha4/namespaces/default/trafficsplits";
    let (code, _) = send(
        &t,
        reqwest::Method::POST,
        path,
        "application/json",
        split("web", &[("web-v1", 90), ("web-v2", 10)]).to_string(),
    )
    .await;
    assert_eq!(code, 201);
    let status = json!({"status": {"split": "web-v1=90% web-v2=10%", "proxies": "2/2", "conditions": [
        {"type": "Accepted", "status": "True", "reason": "Valid", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Programmed", "status": "False", "reason": "Pending", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let (code, _) = send(
        &t,
        reqwest::Method::PATCH,
        &format!("{path}/web/status"),
        "application/merge-patch+json",
        status.to_string(),
    )
    .await;
    assert_eq!(code, 200);
    let table: Value = t
        .http()
        .get(t.url(path))
        .bearer_auth(t.server.token())
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(table["kind"], "Table");
    let names: Vec<&str> =
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Name", "Service", "Split", "Programmed", "Proxies", "Age"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "web");
    assert_eq!(cells[2], "web-v1=90% web-v2=10%");
    assert_eq!(cells[3], "False", "the condition filter picks Programmed, not Accepted");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");

    let (_, index) = send(&t, reqwest::Method::GET, "/openapi/v3", "application/json", "").await;
    let url = index["paths"]["apis/split.smi-spec.io/v1alpha4"]["serverRelativeURL"].as_str().unwrap().to_string();
    let (_, doc) = send(&t, reqwest::Method::GET, &url, "application/json", "").await;
    let schema = &doc["components"]["schemas"]["io.smi-spec.split.v1alpha4.TrafficSplit"];
    assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], "TrafficSplit");
    assert!(schema["properties"]["spec"]["properties"]["backends"]["description"].is_string());
}

#[tokio::test]
async fn field_validation_strict_warn_and_ignore() {
    let t = TestServer::start().await;
    install_crds(&t.client().await).await;
    let path = "/apis/split.smi-spec.io/v1alpha4/namespaces/default/trafficsplits";
    let post = |name: &str, mode: &str| {
        let mut body = split(name, &[("web-v1", 1)]);
        body["spec"]["colour"] = json!("blue");
        t.http()
            .post(t.url(&format!("{path}?fieldValidation={mode}")))
            .bearer_auth(t.server.token())
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
    };
    let strict = post("strict", "Strict").await.unwrap();
    assert_eq!(strict.status(), 400);
    let body: Value = strict.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("unknown field \"spec.colour\""), "{body}");

    let warn = post("warn", "Warn").await.unwrap();
    assert_eq!(warn.status(), 201);
    let warning = warn.headers().get("warning").expect("a Warning header").to_str().unwrap().to_string();
    assert!(warning.starts_with("299 - ") && warning.contains("spec.colour"), "{warning}");
    let stored: Value = warn.json().await.unwrap();
    assert!(stored["spec"].get("colour").is_none(), "unknown fields are pruned");

    let ignore = post("ignore", "Ignore").await.unwrap();
    assert_eq!(ignore.status(), 201);
    assert!(ignore.headers().get("warning").is_none());
}
