//! Real servers and clients for the proxy's integration tests: HTTP/1 + HTTP/2 backends (hyper),
//! gRPC backends and a stand-in controller (tonic), TCP echo servers, and a metrics reader.
//! Everything binds 127.0.0.1:0, so tests run in parallel.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod controller;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use shifter_proto::v1::{Endpoint, HeaderMatch, HttpMatch, Route, Snapshot, WeightedBackend};
use shifter_proxy::{ConfigSource, GatewayListener, Proxy, ProxyConfig, Settings, StaticConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const AUTHORITY: &str = "web.shop.svc.cluster.local:80";

/// A backend server that answers every request with its name.
pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    /// Connections accepted.
    pub conns: Arc<AtomicU64>,
}

impl Backend {
    pub fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    pub fn conns(&self) -> u64 {
        self.conns.load(Relaxed)
    }
}

/// HTTP/1.1 and HTTP/2 (prior knowledge) backend answering `status` with body and `x-backend`
/// header naming it, after `delay`.
pub async fn http_backend_with(name: &'static str, status: u16, delay: Duration) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let conns = Arc::new(AtomicU64::new(0));
    let (counter, accepted) = (hits.clone(), conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            accepted.fetch_add(1, Relaxed);
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let received = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                        counter.fetch_add(1, Relaxed);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let mut response = Response::new(Full::new(Bytes::from(name)));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        response.headers_mut().insert("x-backend", name.parse().unwrap());
                        response.headers_mut().insert("x-body-len", received.into());
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Backend { name, addr, hits, conns }
}

pub async fn http_backend(name: &'static str) -> Backend {
    http_backend_with(name, 200, Duration::ZERO).await
}

/// An address nothing listens on.
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// TCP server that answers each connection with `name:` followed by an echo of what it reads.
pub async fn echo_backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let conns = hits.clone();
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let mut first = true;
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if first {
                        first = false;
                        if stream.write_all(format!("{name}:").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Backend { name, addr, hits, conns }
}

// ----- snapshots

pub fn backend(service: &str, weight: u64, addrs: &[SocketAddr]) -> WeightedBackend {
    WeightedBackend {
        service: service.into(),
        namespace: "shop".into(),
        weight,
        endpoints: addrs
            .iter()
            .map(|a| Endpoint {
                address: a.ip().to_string(),
                port: a.port().into(),
                name: a.to_string(),
                zone: String::new(),
            })
            .collect(),
        ..Default::default()
    }
}

pub fn default_route(backends: Vec<WeightedBackend>) -> Route {
    Route { name: "default".into(), backends, ..Default::default() }
}

pub fn header_route(name: &str, header: &str, value: &str, backends: Vec<WeightedBackend>) -> Route {
    let m = HttpMatch {
        path_regex: String::new(),
        methods: vec![],
        headers: vec![HeaderMatch { name: header.into(), value_regex: value.into() }],
        ..Default::default()
    };
    Route { name: name.into(), matches: vec![m], backends, ..Default::default() }
}

pub fn snapshot(authority: &str, version: u64, routes: Vec<Route>) -> Snapshot {
    Snapshot {
        version,
        authority: authority.into(),
        namespace: "shop".into(),
        service: "web".into(),
        port: 80,
        exists: true,
        routes,
        split: "shop/web".into(),
        digest: format!("d{version}"),
    }
}

/// `web` split across `(service, weight, endpoints)` on one default route.
pub fn split(version: u64, backends: &[(&str, u64, &[SocketAddr])]) -> Snapshot {
    snapshot(AUTHORITY, version, vec![default_route(backends.iter().map(|(s, w, a)| backend(s, *w, a)).collect())])
}

// ----- proxies

pub fn test_settings() -> Settings {
    Settings {
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        telemetry_interval: Duration::from_millis(100),
        ..Settings::default()
    }
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A proxy with a gateway for [`AUTHORITY`], an outbound listener and an admin port.
pub async fn start_proxy(source: ConfigSource, settings: Settings) -> Proxy {
    Proxy::start(ProxyConfig {
        source,
        gateways: vec![GatewayListener { listen: loopback(), authority: AUTHORITY.into() }],
        outbound: Some(loopback()),
        sidecar: false,
        inbound: None,
        admin: Some(loopback()),
        settings,
    })
    .await
    .unwrap()
}

pub async fn static_proxy(snapshots: Vec<Snapshot>) -> Proxy {
    start_proxy(ConfigSource::Static(StaticConfig { snapshots }), test_settings()).await
}

// ----- clients

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// Status, `x-backend` (or empty) and the `shifter-proxy-error` header (or empty).
pub async fn get(client: &HttpClient, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = client.request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let (backend, error) = (header("x-backend"), header(shifter_proxy::PROXY_ERROR_HEADER));
    let _ = response.into_body().collect().await.unwrap();
    (status, backend, error)
}

/// POSTs `body` and returns the status and the length the backend says it received.
pub async fn post(client: &HttpClient, addr: SocketAddr, body: Bytes) -> (u16, usize) {
    let req = Request::post(format!("http://{addr}/upload")).body(Full::new(body)).unwrap();
    let response = client.request(req).await.unwrap();
    let status = response.status().as_u16();
    let len = response.headers().get("x-body-len").map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    let _ = response.into_body().collect().await.unwrap();
    (status, len)
}

/// Sends `total` GETs over `concurrency` tasks and counts responses by `x-backend`.
pub async fn spread(client: &HttpClient, addr: SocketAddr, total: usize, concurrency: usize) -> HashMap<String, usize> {
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let client = client.clone();
        let n = total / concurrency + usize::from(i < total % concurrency);
        tasks.push(tokio::spawn(async move {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for _ in 0..n {
                let (status, backend, _) = get(&client, addr, "/", &[]).await;
                *seen.entry(format!("{status} {backend}")).or_default() += 1;
            }
            seen
        }));
    }
    let mut all = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let response = http1_client()
        .request(Request::get(format!("http://{admin}{path}")).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// Sum of the samples of `name` whose labels include every `(label, value)` given.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().unwrap() as u64)
        })
        .sum()
}

/// Waits (bounded) until `check` holds; panics with `what` if it never does.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting: {what}");
}

/// The proxy's config dump entry for [`AUTHORITY`] (null when absent).
pub async fn config_entry(admin: SocketAddr) -> serde_json::Value {
    let (_, body) = admin_get(admin, "/config").await;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["authorities"].as_array().unwrap().iter().find(|a| a["authority"] == AUTHORITY).cloned().unwrap_or_default()
}

/// The snapshot version the proxy's config dump shows for [`AUTHORITY`].
pub async fn applied_version(admin: SocketAddr) -> u64 {
    config_entry(admin).await["snapshot"]["version"].as_u64().unwrap_or(0)
}

// ----- seeing what crossed the proxy

/// A backend that answers every request with what it received, so rewrites and header edits can
/// be observed: the body is the method and target (path and query), then one `name: value` line
/// per header in arrival order (HTTP/2's authority first, as `:authority`). It answers with `x-backend` naming it and with `cache-control:
/// no-cache`, `x-powered-by: <name>` and `x-build: 42`, for response header edits to change.
pub async fn mirror_backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let conns = Arc::new(AtomicU64::new(0));
    let (counter, accepted) = (hits.clone(), conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            accepted.fetch_add(1, Relaxed);
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Relaxed);
                    let target = req.uri().path_and_query().map_or("/", |t| t.as_str());
                    let mut seen = format!("{} {target}\n", req.method());
                    if let Some(authority) = req.uri().authority() {
                        seen.push_str(&format!(":authority: {authority}\n"));
                    }
                    for (k, v) in req.headers() {
                        seen.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
                    }
                    let response = Response::builder()
                        .header("x-backend", name)
                        .header("cache-control", "no-cache")
                        .header("x-powered-by", name)
                        .header("x-build", "42")
                        .body(Full::new(Bytes::from(seen)))
                        .unwrap();
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Backend { name, addr, hits, conns }
}

/// A response read whole.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The first value of `name`, or empty.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// Every value of `name`, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers.get_all(name).iter().map(|v| v.to_str().unwrap()).collect()
    }

    /// The request a [`mirror_backend`] says it received.
    pub fn seen(&self) -> Seen {
        let mut lines = self.body.lines();
        let (method, target) = lines.next().and_then(|l| l.split_once(' ')).expect("a mirror backend's answer");
        let headers = lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.into(), v.into())).collect();
        Seen { method: method.into(), target: target.into(), headers }
    }
}

/// A request as a [`mirror_backend`] received it.
#[derive(Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// Every value of `name`, in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The host asked for: HTTP/2's authority, else the Host header.
    pub fn host(&self) -> &str {
        self.header(":authority").into_iter().chain(self.header("host")).next().unwrap_or("")
    }
}

/// Sends `method target` with `headers` (a `host` given here replaces the one the client derives
/// from `addr`) and reads the whole response.
pub async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(format!("http://{addr}{target}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = client.request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply { status: parts.status.as_u16(), headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() }
}
