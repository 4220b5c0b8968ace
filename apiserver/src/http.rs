//! The HTTP boundary: authentication, URL routing to discovery, OpenAPI and resource verbs,
//! body limits and decoding, content negotiation (JSON or Table), and every failure rendered as
//! a Kubernetes `Status`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};

use crate::app::{App, Query, Scope};
use crate::error::ApiError;
use crate::params::{self, Verb};
use crate::patch::PatchType;
use crate::selectors::Selector;
use crate::table::{self, Include};
use crate::watch::{self, WatchRequest};
use crate::{discovery, openapi};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How long a watch runs when the client does not say.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub token: String,
    pub max_body_bytes: usize,
    /// `host:port` clients reach the server at.
    pub address: String,
    pub bookmark_every: Duration,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

fn json_response(code: StatusCode, body: &Value, warnings: &[String]) -> Response<Body> {
    let mut resp = Response::builder().status(code).header(CONTENT_TYPE, "application/json");
    for w in warnings {
        resp = resp.header("Warning", format!("299 - {}", json!(w)));
    }
    resp.body(full(body.to_string())).expect("valid response")
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code(), &e.to_status(), &[])
}

/// Constant-time comparison, so response timing does not leak the token.
fn token_ok(headers: &HeaderMap, token: &str) -> bool {
    let Some(got) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (got.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves one request.
pub async fn serve(
    app: Arc<App>,
    settings: Arc<HttpSettings>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return Ok(Response::new(full("ok")));
    }
    if !token_ok(req.headers(), &settings.token) {
        return Ok(error_response(&ApiError::Unauthorized));
    }
    // A bug must cost one request a 500, never the connection or the server.
    let routed = std::panic::AssertUnwindSafe(route(app, &settings, req)).catch_unwind().await;
    let resp = match routed {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => error_response(&e),
        Err(_) => {
            tracing::error!(%method, %path, "request handler panicked");
            error_response(&ApiError::Internal(format!("internal error serving {method} {path}")))
        }
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "request");
    Ok(resp)
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<(HeaderMap, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = Limited::new(body, limit).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ApiError::TooLarge(limit)
        } else {
            ApiError::BadRequest(format!("reading the request body: {e}"))
        }
    })?;
    Ok((parts.headers, bytes.to_bytes()))
}

/// Decodes a JSON or YAML body into an object.
fn decode(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if ct.contains("protobuf") {
        return crate::proto::decode(bytes);
    }
    if ct.contains("cbor") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {ct})"
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("the request body is empty: send a JSON or YAML object".into()));
    }
    let parsed: Result<Value, String> = if ct.contains("yaml") {
        serde_yaml::from_slice(bytes).map_err(|e| format!("error converting YAML to JSON: {e}"))
    } else {
        serde_json::from_slice(bytes).map_err(|e| format!("couldn't decode the request body as JSON: {e}"))
    };
    parsed.map_err(ApiError::BadRequest)
}

fn manager(query: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager") {
        return m.to_string();
    }
    let agent = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
    agent.split('/').next().unwrap_or("unknown").to_string()
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers.get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("as=Table"))
}

async fn route(app: Arc<App>, settings: &HttpSettings, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get_only = |doc: Option<Value>| -> Result<Response<Body>, ApiError> {
        if req.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed(format!("{} is not supported on {path}", req.method())));
        }
        doc.map(|d| json_response(StatusCode::OK, &d, &[])).ok_or_else(not_found)
    };
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if req.method() == Method::GET
        && discovery::wants_aggregated(accept)
        && matches!(segments.as_slice(), ["api"] | ["apis"])
    {
        let doc = discovery::aggregated(&app.registry, segments == ["api"]);
        let mut resp = json_response(StatusCode::OK, &doc, &[]);
        resp.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static(discovery::AGGREGATED));
        return Ok(resp);
    }
    match segments.as_slice() {
        ["version"] => get_only(Some(discovery::version())),
        ["api"] => get_only(Some(discovery::core_versions(&settings.address))),
        ["api", "v1"] => get_only(discovery::resource_list(&app.registry, "", "v1")),
        ["apis"] => get_only(Some(discovery::group_list(&app.registry))),
        ["apis", g] => get_only(discovery::group(&app.registry, g)),
        ["apis", g, v] => get_only(discovery::resource_list(&app.registry, g, v)),
        ["openapi", "v3"] => get_only(Some(openapi::index(&app.registry))),
        ["openapi", "v3", "apis", g, v] => get_only(openapi::document(&app.registry, g, v)),
        ["openapi", "v3", "api", v] => get_only(openapi::document(&app.registry, "", v)),
        ["api", "v1", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource(app, settings, req, "", "v1", &rest).await
        }
        ["apis", g, v, rest @ ..] => {
            let (g, v) = (g.to_string(), v.to_string());
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource(app, settings, req, &g, &v, &rest).await
        }
        _ => Err(not_found()),
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound {
        subject: Default::default(),
        message: "the server could not find the requested resource".into(),
    }
}

async fn resource(
    app: Arc<App>,
    settings: &HttpSettings,
    req: Request<Incoming>,
    group: &str,
    version: &str,
    rest: &[String],
) -> Result<Response<Body>, ApiError> {
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    // `/namespaces/{ns}/status` is the Namespace's own subresource, not a resource called status.
    let (namespace, plural, tail) = match r.as_slice() {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
            (Some(*ns), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Err(not_found()),
    };
    let (name, sub) = match tail {
        [] => (None, None),
        [name] => (Some(*name), None),
        [name, sub] => (Some(*name), Some(*sub)),
        _ => return Err(not_found()),
    };
    let res = app.registry.lookup(group, version, plural).ok_or_else(not_found)?;
    if namespace.is_some() && !res.namespaced {
        return Err(not_found());
    }
    let status = match sub {
        None => false,
        Some("status") if res.status_subresource => true,
        Some(_) => return Err(not_found()),
    };
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    let table = wants_table(req.headers());
    let not_allowed = || {
        ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource: {method} {}",
            req.uri().path()
        ))
    };
    if namespace.is_none() && res.namespaced && !(name.is_none() && method == Method::GET) {
        return Err(not_allowed());
    }
    let verb = match (name, &method) {
        (None, &Method::GET) if query.bool("watch")? == Some(true) => Verb::Watch,
        (None, &Method::GET) => Verb::List,
        (None, &Method::POST) => Verb::Create,
        (None, &Method::DELETE) => Verb::DeleteCollection,
        (Some(_), &Method::GET) => Verb::Get,
        (Some(_), &Method::PUT) => Verb::Update,
        (Some(_), &Method::PATCH) => Verb::Patch(patch_type(req.headers())?),
        (Some(_), &Method::DELETE) if !status => Verb::Delete,
        _ => return Err(not_allowed()),
    };
    params::check(&query, verb)?;
    let scope = Scope {
        res: res.clone(),
        version: version.to_string(),
        namespace: namespace.map(str::to_string),
        query: &query,
        manager: manager(&query, req.headers()),
    };
    let name = name.unwrap_or_default().to_string();
    let include = || Include::parse(query.get("includeObject"));
    match verb {
        Verb::Watch => watch_response(app, settings, scope, table),
        Verb::List => {
            let (items, meta) = app.list(&scope)?;
            let doc = if table {
                table::table(&res, version, &items, include(), meta)
            } else {
                App::list_doc(&scope, items, meta)
            };
            Ok(json_response(StatusCode::OK, &doc, &[]))
        }
        Verb::Create => {
            let (headers, bytes) = read_body(req, settings.max_body_bytes).await?;
            let body = decode(&headers, &bytes)?;
            let parts = scope_parts(&scope);
            let written = blocking(move || app.create(&scope_owned(&parts), body)).await?;
            Ok(json_response(StatusCode::CREATED, &written.object, &written.warnings))
        }
        Verb::DeleteCollection => {
            let options = delete_body(req, settings, &query).await?;
            let parts = scope_parts(&scope);
            let doc = blocking(move || app.delete_collection(&scope_owned(&parts), &options)).await?;
            Ok(json_response(StatusCode::OK, &doc, &[]))
        }
        Verb::Get => {
            let obj = app.get(&scope, &name)?;
            let doc = if table {
                let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
                table::table(&res, version, &[obj], include(), meta)
            } else {
                obj
            };
            Ok(json_response(StatusCode::OK, &doc, &[]))
        }
        Verb::Update => {
            let (headers, bytes) = read_body(req, settings.max_body_bytes).await?;
            let body = decode(&headers, &bytes)?;
            let parts = scope_parts(&scope);
            let written = blocking(move || app.update(&scope_owned(&parts), &name, status, body)).await?;
            Ok(json_response(StatusCode::OK, &written.object, &written.warnings))
        }
        Verb::Patch(kind) => {
            let (headers, bytes) = read_body(req, settings.max_body_bytes).await?;
            let body = decode(&headers, &bytes)?;
            let parts = scope_parts(&scope);
            let written = blocking(move || app.patch(&scope_owned(&parts), &name, status, kind, body)).await?;
            let code = if written.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(json_response(code, &written.object, &written.warnings))
        }
        Verb::Delete => {
            let options = delete_body(req, settings, &query).await?;
            let parts = scope_parts(&scope);
            let obj = blocking(move || app.delete(&scope_owned(&parts), &name, &options)).await?;
            Ok(json_response(StatusCode::OK, &obj, &[]))
        }
    }
}

/// The `DeleteOptions` a delete carries in its body (none is `{}`), with its query.
async fn delete_body(
    req: Request<Incoming>,
    settings: &HttpSettings,
    query: &Query,
) -> Result<params::DeleteOptions, ApiError> {
    let (headers, bytes) = read_body(req, settings.max_body_bytes).await?;
    let body = if bytes.iter().all(u8::is_ascii_whitespace) { json!({}) } else { decode(&headers, &bytes)? };
    params::delete_options(&body, query)
}

fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    PatchType::from_content_type(ct).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format ({ct:?}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
        ))
    })
}

/// The owned parts of a [`Scope`], to move a write onto a blocking thread (commits fsync).
struct ScopeParts {
    res: Arc<crate::resources::ResourceInfo>,
    version: String,
    namespace: Option<String>,
    query: Query,
    manager: String,
}

fn scope_parts(s: &Scope<'_>) -> ScopeParts {
    ScopeParts {
        res: s.res.clone(),
        version: s.version.clone(),
        namespace: s.namespace.clone(),
        query: s.query.clone(),
        manager: s.manager.clone(),
    }
}

fn scope_owned(p: &ScopeParts) -> Scope<'_> {
    Scope {
        res: p.res.clone(),
        version: p.version.clone(),
        namespace: p.namespace.clone(),
        query: &p.query,
        manager: p.manager.clone(),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("write task failed: {e}")))?
}

fn watch_response(
    app: Arc<App>,
    settings: &HttpSettings,
    scope: Scope<'_>,
    table: bool,
) -> Result<Response<Body>, ApiError> {
    let q = scope.query;
    // As Kubernetes: no timeoutSeconds (or 0) means the server's default.
    let timeout = q.count("timeoutSeconds")?.filter(|t| *t > 0).map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let initial = q.flag("sendInitialEvents");
    let from = if initial { None } else { q.resource_version()?.filter(|rv| *rv != 0) };
    let req = WatchRequest {
        res: scope.res.clone(),
        version: scope.version.clone(),
        namespace: scope.namespace.clone(),
        selector: Selector::parse(q.get("labelSelector"), q.get("fieldSelector"))?,
        from,
        bookmarks: q.flag("allowWatchBookmarks"),
        initial_events_end: initial && q.flag("allowWatchBookmarks"),
        timeout,
        table: table.then(|| Include::parse(q.get("includeObject"))),
        bookmark_every: settings.bookmark_every,
    };
    let rx = watch::start(app, req);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let body = StreamBody::new(stream).boxed_unsync();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .expect("valid response"))
}
