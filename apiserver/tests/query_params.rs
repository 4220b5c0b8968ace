//! Query parameters over the wire: every malformed value a verb reads is a 400 Status naming the
//! parameter and the fix, and nothing is written; resourceVersion semantics a client can rely on
//! (a future version is not silently served from the past); DeleteOptions bodies checked the same.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{TestServer, send};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> String {
    json!({"metadata": {"name": name}, "data": {"k": "v"}}).to_string()
}

#[tokio::test]
async fn malformed_parameters_get_400_naming_the_parameter_and_write_nothing() {
    let t = TestServer::start().await;
    let (code, _) = send(&t, Method::POST, CMS, "application/json", cm("app")).await;
    assert_eq!(code, 201);
    let one = format!("{CMS}/app");
    let merge = "application/merge-patch+json";
    let cases: Vec<(Method, String, &str, String, &str)> = vec![
        (Method::GET, format!("{CMS}?limit=ten"), "", String::new(), "limit"),
        (Method::GET, format!("{CMS}?limit=-5"), "", String::new(), "limit"),
        (Method::GET, format!("{CMS}?watch=yes"), "", String::new(), "watch"),
        (Method::GET, format!("{CMS}?watch=true&timeoutSeconds=soon"), "", String::new(), "timeoutSeconds"),
        (Method::GET, format!("{CMS}?watch=true&resourceVersion=latest"), "", String::new(), "resourceVersion"),
        (Method::GET, format!("{CMS}?watch=true&allowWatchBookmarks=please"), "", String::new(), "allowWatchBookmarks"),
        (Method::GET, format!("{CMS}?resourceVersion=x1"), "", String::new(), "resourceVersion"),
        (Method::GET, format!("{one}?resourceVersion=-1"), "", String::new(), "resourceVersion"),
        (Method::GET, format!("{CMS}?resourceVersionMatch=Exact"), "", String::new(), "resourceVersionMatch"),
        (Method::GET, format!("{CMS}?sendInitialEvents=true"), "", String::new(), "sendInitialEvents"),
        (Method::GET, format!("{CMS}?labelSelector=app%20in%20web"), "", String::new(), "labelSelector"),
        (Method::GET, format!("{CMS}?fieldSelector=metadata.name"), "", String::new(), "fieldSelector"),
        (Method::GET, format!("{one}?timeout=forever"), "", String::new(), "timeout"),
        (Method::POST, format!("{CMS}?dryRun=true"), "application/json", cm("dry"), "dryRun"),
        (Method::POST, format!("{CMS}?fieldValidation=strict"), "application/json", cm("fv"), "fieldValidation"),
        (Method::POST, format!("{CMS}?fieldManager={}", "m".repeat(200)), "application/json", cm("fm"), "fieldManager"),
        (Method::PUT, format!("{one}?dryRun=Yes"), "application/json", cm("app"), "dryRun"),
        (Method::PATCH, format!("{one}?force=true"), merge, json!({"data": {"k": "x"}}).to_string(), "force"),
        (
            Method::PATCH,
            format!("{one}?fieldManager=ci&force=maybe"),
            "application/apply-patch+yaml",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"k": "x"}})
                .to_string(),
            "force",
        ),
        (
            Method::PATCH,
            one.clone(),
            "application/apply-patch+yaml",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"k": "x"}})
                .to_string(),
            "fieldManager",
        ),
        (Method::DELETE, format!("{one}?gracePeriodSeconds=later"), "", String::new(), "gracePeriodSeconds"),
        (Method::DELETE, format!("{one}?propagationPolicy=Cascade"), "", String::new(), "propagationPolicy"),
        (Method::DELETE, format!("{one}?orphanDependents=nope"), "", String::new(), "orphanDependents"),
        (
            Method::DELETE,
            one.clone(),
            "application/json",
            json!({"propagationPolicy": "Eventually"}).to_string(),
            "DeleteOptions.propagationPolicy",
        ),
        (Method::DELETE, format!("{CMS}?limit=all"), "", String::new(), "limit"),
    ];
    for (method, path, ct, body, param) in cases {
        let (code, status) = send(&t, method.clone(), &path, ct, body).await;
        assert_eq!(code, 400, "{method} {path}: {status}");
        assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some("BadRequest")));
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains(param), "{method} {path}: the message names {param}: {message}");
    }
    let (_, list) = send(&t, Method::GET, CMS, "", String::new()).await;
    let names: Vec<&str> =
        list["items"].as_array().unwrap().iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["app"], "no rejected request wrote anything");
    let (_, app) = send(&t, Method::GET, &one, "", String::new()).await;
    assert_eq!(app["data"]["k"], "v", "no rejected patch or update changed the object");
}

#[tokio::test]
async fn reads_honour_resource_version_rules_instead_of_ignoring_them() {
    let t = TestServer::start().await;
    let (_, created) = send(&t, Method::POST, CMS, "application/json", cm("a")).await;
    let first: u64 = created["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let (_, later) = send(&t, Method::POST, CMS, "application/json", cm("b")).await;
    let current: u64 = later["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();

    // Not older than a version the server has not reached: 504, as Kubernetes answers.
    let (code, status) =
        send(&t, Method::GET, &format!("{CMS}?resourceVersion={}", current + 100), "", String::new()).await;
    assert_eq!(code, 504, "{status}");
    assert!(status["message"].as_str().unwrap().contains("Too large resource version"), "{status}");
    // Exactly a past version: only the current state is kept, so 410 and the client relists.
    let exact = format!("{CMS}?resourceVersion={first}&resourceVersionMatch=Exact");
    let (code, status) = send(&t, Method::GET, &exact, "", String::new()).await;
    assert_eq!(code, 410, "{status}");
    // Exactly the current version, or not older than a past one, is served.
    let (code, _) = send(
        &t,
        Method::GET,
        &format!("{CMS}?resourceVersion={current}&resourceVersionMatch=Exact"),
        "",
        String::new(),
    )
    .await;
    assert_eq!(code, 200);
    let (code, list) =
        send(&t, Method::GET, &format!("{CMS}?resourceVersion={first}&limit=1"), "", String::new()).await;
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "limit is applied");
    assert!(list["metadata"]["continue"].is_string());
}

#[tokio::test]
async fn delete_options_in_the_body_are_honoured() {
    let t = TestServer::start().await;
    send(&t, Method::POST, CMS, "application/json", cm("keep")).await;
    let dry = json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]}).to_string();
    let (code, _) = send(&t, Method::DELETE, &format!("{CMS}/keep"), "application/json", dry).await;
    assert_eq!(code, 200);
    let (code, _) = send(&t, Method::GET, &format!("{CMS}/keep"), "", String::new()).await;
    assert_eq!(code, 200, "a dry-run delete from the body leaves the object");
    let dry = json!({"dryRun": ["All"]}).to_string();
    let (code, gone) = send(&t, Method::DELETE, CMS, "application/json", dry).await;
    assert_eq!((code, gone["items"][0]["metadata"]["name"].as_str()), (StatusCode::OK, Some("keep")));
    let (code, _) = send(&t, Method::GET, &format!("{CMS}/keep"), "", String::new()).await;
    assert_eq!(code, 200, "so does a dry-run delete of the collection");
    let wrong = json!({"preconditions": {"uid": "not-its-uid"}}).to_string();
    let (code, _) = send(&t, Method::DELETE, &format!("{CMS}/keep"), "application/json", wrong).await;
    assert_eq!(code, 409);
    let (code, _) = send(&t, Method::DELETE, &format!("{CMS}/keep?gracePeriodSeconds=0"), "", String::new()).await;
    assert_eq!(code, 200);
    let (code, _) = send(&t, Method::GET, &format!("{CMS}/keep"), "", String::new()).await;
    assert_eq!(code, 404);
}
