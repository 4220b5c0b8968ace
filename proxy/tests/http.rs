//! HTTP/1.1 through the gateway and outbound listeners, against real local hyper servers.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_90_10_hold_within_1_5_points_over_10000_requests() {
    let (v1, v2) = (http_backend("web-v1").await, http_backend("web-v2").await);
    let proxy = static_proxy(vec![split(1, &[("web-v1", 90, &[v1.addr]), ("web-v2", 10, &[v2.addr])])]).await;
    let seen = spread(&http1_client(), proxy.gateway_addrs()[0], 10_000, 16).await;
    let (a, b) = (seen["200 web-v1"], seen.get("200 web-v2").copied().unwrap_or(0));
    assert_eq!(a + b, 10_000, "{seen:?}");
    let share = b as f64 / 100.0;
    assert!((8.5..=11.5).contains(&share), "web-v2 got {share}% of traffic");
    assert_eq!((v1.hits() as usize, v2.hits() as usize), (a, b));
    assert!(v1.conns() + v2.conns() <= 160, "upstream HTTP/1 connections are pooled: {}", v1.conns() + v2.conns());
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let v1 = http_backend("web-v1").await;
    let proxy = static_proxy(vec![split(1, &[("web-v1", 1, &[v1.addr])])]).await;
    let seen = spread(&http1_client(), proxy.gateway_addrs()[0], 300, 1).await;
    assert_eq!(seen.get("200 web-v1"), Some(&300), "{seen:?}");
    assert_eq!(v1.conns(), 1, "each response frees its upstream connection for the next request");
}

#[tokio::test]
async fn zero_weight_backend_receives_nothing() {
    let (v1, v2) = (http_backend("web-v1").await, http_backend("web-v2").await);
    let proxy = static_proxy(vec![split(1, &[("web-v1", 0, &[v1.addr]), ("web-v2", 100, &[v2.addr])])]).await;
    let seen = spread(&http1_client(), proxy.gateway_addrs()[0], 500, 4).await;
    assert_eq!(seen.get("200 web-v2"), Some(&500), "{seen:?}");
    assert_eq!(v1.hits(), 0);
}

#[tokio::test]
async fn header_match_routes_to_its_split() {
    let (v1, v2, beta) = (http_backend("web-v1").await, http_backend("web-v2").await, http_backend("web-beta").await);
    let routes = vec![
        header_route("insiders", "x-user", "insider", vec![backend("web-beta", 1, &[beta.addr])]),
        default_route(vec![backend("web-v1", 1, &[v1.addr]), backend("web-v2", 0, &[v2.addr])]),
    ];
    let proxy = static_proxy(vec![snapshot(AUTHORITY, 1, routes)]).await;
    let (gw, client) = (proxy.gateway_addrs()[0], http1_client());
    for _ in 0..50 {
        assert_eq!(get(&client, gw, "/", &[("x-user", "insider")]).await.1, "web-beta");
        assert_eq!(get(&client, gw, "/", &[("x-user", "insider-not")]).await.1, "web-v1");
        assert_eq!(get(&client, gw, "/", &[]).await.1, "web-v1");
    }
    assert_eq!((beta.hits(), v1.hits(), v2.hits()), (50, 100, 0));
}

#[tokio::test]
async fn backend_without_endpoints_is_skipped_and_counted() {
    let v1 = http_backend("web-v1").await;
    let proxy = static_proxy(vec![split(1, &[("web-v1", 50, &[v1.addr]), ("web-v2", 50, &[])])]).await;
    let seen = spread(&http1_client(), proxy.gateway_addrs()[0], 200, 4).await;
    assert_eq!(seen.get("200 web-v1"), Some(&200), "{seen:?}");
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    let skipped = metric(&text, "route_backend_unready_total", &[("dst_service", "web-v2")]);
    assert!(skipped > 0 && skipped < 200, "skipped {skipped}");
}

#[tokio::test]
async fn dead_endpoint_is_avoided() {
    let live = http_backend("web-v1").await;
    let dead = dead_addr().await;
    let proxy = static_proxy(vec![split(1, &[("web-v1", 1, &[dead, live.addr])])]).await;
    let seen = spread(&http1_client(), proxy.gateway_addrs()[0], 300, 4).await;
    assert_eq!(seen.get("200 web-v1"), Some(&300), "{seen:?}");
    assert_eq!(live.hits(), 300);
    // Finding it dead cost at most one attempt per request in flight at the time; after that it is
    // dialled in the background, not with requests.
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    let attempts = metric(&text, "request_attempt_failures_total", &[("dst_service", "web-v1"), ("reason", "refused")]);
    assert!((1..=4).contains(&attempts), "{attempts} failed attempts");
}

#[tokio::test]
async fn nothing_to_serve_answers_with_a_named_proxy_error() {
    let dead = dead_addr().await;
    let proxy = static_proxy(vec![
        split(1, &[("web-v1", 1, &[dead])]),
        snapshot("gone.shop.svc.cluster.local:80", 1, vec![]),
        snapshot("empty.shop.svc.cluster.local:80", 1, vec![default_route(vec![backend("x", 1, &[])])]),
    ])
    .await;
    let client = http1_client();
    let (status, _, error) = get(&client, proxy.gateway_addrs()[0], "/", &[]).await;
    assert_eq!((status, error.as_str()), (502, "upstream connect failed"));
    let outbound = proxy.outbound_addr().unwrap();
    let (status, _, error) = get(&client, outbound, "/", &[("host", "nowhere.example:80")]).await;
    assert_eq!((status, error.as_str()), (503, "unknown authority"));
    let mut gone = snapshot("gone.shop.svc.cluster.local:80", 2, vec![]);
    gone.exists = false;
    proxy.apply_snapshot(gone).unwrap();
    let (status, _, error) = get(&client, outbound, "/", &[("host", "gone.shop:80")]).await;
    assert_eq!((status, error.as_str()), (503, "service not found"));
    let (status, _, error) = get(&client, outbound, "/", &[("host", "empty.shop")]).await;
    assert_eq!((status, error.as_str()), (503, "no ready endpoints"));
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    let failures = [("dst_service", "web-v1"), ("classification", "failure"), ("status_code", "502")];
    assert_eq!(metric(&text, "response_total", &failures), 1);
    // Client-chosen authorities never become label values; tracked ones use their canonical form.
    assert!(!text.contains("nowhere.example"), "{text}");
    let unknown = [("authority", "unknown"), ("reason", "unknown authority")];
    assert_eq!(metric(&text, "proxy_unrouted_total", &unknown), 1);
    let empty = [("authority", "empty.shop.svc.cluster.local:80"), ("reason", "no ready endpoints")];
    assert_eq!(metric(&text, "proxy_unrouted_total", &empty), 1);
}

#[tokio::test]
async fn outbound_routes_by_host_and_absolute_form() {
    let (v1, v2) = (http_backend("web-v1").await, http_backend("api-v1").await);
    let api =
        snapshot("api.shop.svc.cluster.local:8080", 1, vec![default_route(vec![backend("api-v1", 1, &[v2.addr])])]);
    let proxy = static_proxy(vec![split(1, &[("web-v1", 1, &[v1.addr])]), api]).await;
    let outbound = proxy.outbound_addr().unwrap();
    let client = http1_client();
    assert_eq!(get(&client, outbound, "/", &[("host", "web.shop")]).await.1, "web-v1");
    assert_eq!(get(&client, outbound, "/", &[("host", "api.shop.svc:8080")]).await.1, "api-v1");
    // HTTP_PROXY style: the request target is absolute.
    let mut raw = TcpStream::connect(outbound).await.unwrap();
    raw.write_all(b"GET http://api.shop.svc.cluster.local:8080/x HTTP/1.1\r\nHost: api.shop.svc.cluster.local:8080\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    raw.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("x-backend: api-v1"), "{response}");
}

#[tokio::test]
async fn malformed_http_gets_400_and_close() {
    let v1 = http_backend("web-v1").await;
    let proxy = static_proxy(vec![split(1, &[("web-v1", 1, &[v1.addr])])]).await;
    let mut raw = TcpStream::connect(proxy.gateway_addrs()[0]).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").await.unwrap();
    let mut response = String::new();
    raw.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert_eq!(v1.hits(), 0);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let v1 = http_backend("web-v1").await;
    let proxy = static_proxy(vec![split(1, &[("web-v1", 1, &[v1.addr])])]).await;
    let mut raw = TcpStream::connect(proxy.gateway_addrs()[0]).await.unwrap();
    let big = "a".repeat(100 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: web\r\nx-big: {big}\r\n\r\n");
    let _ = raw.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = raw.read_to_end(&mut response).await;
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 431"), "{}", String::from_utf8_lossy(&response));
    assert_eq!(v1.hits(), 0);
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let v1 = http_backend("web-v1").await;
    let settings = shifter_proxy::Settings { header_read_timeout: Duration::from_millis(300), ..test_settings() };
    let cfg = shifter_proxy::StaticConfig { snapshots: vec![split(1, &[("web-v1", 1, &[v1.addr])])] };
    let proxy = start_proxy(shifter_proxy::ConfigSource::Static(cfg), settings).await;
    let mut raw = TcpStream::connect(proxy.gateway_addrs()[0]).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n").await.unwrap();
    // Never finish the head: the proxy must close the connection on its own.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), raw.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "connection still open");
    assert_eq!(v1.hits(), 0);
}

#[tokio::test]
async fn metrics_count_every_request_per_backend_and_classification() {
    let ok = http_backend("web-v1").await;
    let bad = http_backend_with("web-v2", 500, Duration::ZERO).await;
    let proxy = static_proxy(vec![split(1, &[("web-v1", 1, &[ok.addr]), ("web-v2", 1, &[bad.addr])])]).await;
    let seen = spread(&http1_client(), proxy.gateway_addrs()[0], 400, 4).await;
    let (n_ok, n_bad) = (seen["200 web-v1"] as u64, seen["500 web-v2"] as u64);
    assert_eq!(n_ok + n_bad, 400);
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    let v1 = ("dst_service", "web-v1");
    let v2 = ("dst_service", "web-v2");
    let base = [("direction", "outbound"), ("authority", AUTHORITY), ("dst_namespace", "shop")];
    assert_eq!(metric(&text, "request_total", &[base[0], base[1], base[2], v1]), n_ok);
    assert_eq!(metric(&text, "request_total", &[v2]), n_bad);
    assert_eq!(metric(&text, "response_total", &[v1, ("classification", "success"), ("status_code", "200")]), n_ok);
    assert_eq!(metric(&text, "response_total", &[v1, ("classification", "failure")]), 0);
    assert_eq!(metric(&text, "response_total", &[v2, ("classification", "failure"), ("status_code", "500")]), n_bad);
    assert_eq!(metric(&text, "response_total", &[v2, ("classification", "success")]), 0);
    assert_eq!(metric(&text, "response_latency_ms_count", &[v1]), n_ok);
    assert_eq!(metric(&text, "response_latency_ms_bucket", &[v2, ("le", "+Inf")]), n_bad);
    assert!(text.contains("le=\"50000\""), "Linkerd bucket bounds");
}

#[tokio::test]
async fn static_config_file_runs_the_proxy() {
    let v1 = http_backend("web-v1").await;
    let yaml = format!(
        "authorities:\n  - authority: {AUTHORITY}\n    routes:\n      - name: default\n        backends:\n          - {{ service: web-v1, weight: 1, endpoints: [\"{}\"] }}\n",
        v1.addr
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let cfg = shifter_proxy::StaticConfig::load(file.path().to_str().unwrap()).unwrap();
    let proxy = start_proxy(shifter_proxy::ConfigSource::Static(cfg), test_settings()).await;
    assert_eq!(get(&http1_client(), proxy.gateway_addrs()[0], "/", &[]).await.1, "web-v1");
    let admin = proxy.admin_addr().unwrap();
    assert_eq!(admin_get(admin, "/ready").await.0, 200);
    assert_eq!(admin_get(admin, "/live").await.0, 200);
    assert_eq!(applied_version(admin).await, 1);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let slow = http_backend_with("web-v1", 200, Duration::from_millis(500)).await;
    let proxy = static_proxy(vec![split(1, &[("web-v1", 1, &[slow.addr])])]).await;
    let gw = proxy.gateway_addrs()[0];
    let client = http1_client();
    let in_flight = tokio::spawn(async move { get(&client, gw, "/", &[]).await });
    eventually("request reached the backend", || async { slow.hits() == 1 }).await;
    assert!(proxy.shutdown().await, "drain finished");
    assert_eq!(in_flight.await.unwrap().0, 200);
    assert!(TcpStream::connect(gw).await.is_err(), "listener closed after drain");
}

#[tokio::test]
async fn slow_backend_gets_504_with_reason() {
    let slow = http_backend_with("web-v1", 200, Duration::from_secs(3)).await;
    let settings = shifter_proxy::Settings { request_timeout: Duration::from_millis(200), ..test_settings() };
    let cfg = shifter_proxy::StaticConfig { snapshots: vec![split(1, &[("web-v1", 1, &[slow.addr])])] };
    let proxy = start_proxy(shifter_proxy::ConfigSource::Static(cfg), settings).await;
    let (status, _, error) = get(&http1_client(), proxy.gateway_addrs()[0], "/", &[]).await;
    assert_eq!((status, error.as_str()), (504, "response timeout"));
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    let timeouts = [("dst_service", "web-v1"), ("classification", "failure"), ("status_code", "504")];
    assert_eq!(metric(&text, "response_total", &timeouts), 1);
}

#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let v1 = http_backend("web-v1").await;
    let settings = shifter_proxy::Settings { max_connections: 2, ..test_settings() };
    let cfg = shifter_proxy::StaticConfig { snapshots: vec![split(1, &[("web-v1", 1, &[v1.addr])])] };
    let proxy = start_proxy(shifter_proxy::ConfigSource::Static(cfg), settings).await;
    let gw = proxy.gateway_addrs()[0];
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(gw).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(c);
    }
    let mut extra = TcpStream::connect(gw).await.unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n").await;
    let mut reply = Vec::new();
    let _ = extra.read_to_end(&mut reply).await;
    assert!(reply.is_empty(), "extra connection was served: {}", String::from_utf8_lossy(&reply));
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    assert_eq!(metric(&text, "proxy_connections_rejected_total", &[]), 1);
    // Finishing a held request frees its slot for new connections.
    drop(held);
    eventually("a slot frees up", || async {
        let mut c = TcpStream::connect(gw).await.unwrap();
        let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n").await;
        let mut reply = Vec::new();
        let _ = c.read_to_end(&mut reply).await;
        reply.starts_with(b"HTTP/1.1 200")
    })
    .await;
}
