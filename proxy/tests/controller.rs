//! Configuration from a real (test) controller over gRPC: snapshot swaps, fail-static while the
//! controller is away, reconnection, lazy watches on the outbound listener, telemetry windows and
//! the failed attempts reported in them.

mod support;

use shifter_proxy::{ConfigSource, ControllerConfig};
use support::controller::TestController;
use support::*;

fn source(c: &TestController) -> ConfigSource {
    let identity =
        shifter_proto::v1::ProxyIdentity { id: "test".into(), namespace: "shop".into(), kind: "gateway".into() };
    ConfigSource::Controller(ControllerConfig { uri: c.uri(), ca_pem: None, token: None, identity })
}

#[tokio::test]
async fn a_new_snapshot_applies_to_the_next_request() {
    let (v1, v2) = (http_backend("web-v1").await, http_backend("web-v2").await);
    let controller = TestController::start().await;
    controller.set(split(1, &[("web-v1", 100, &[v1.addr]), ("web-v2", 0, &[v2.addr])]));
    let proxy = start_proxy(source(&controller), test_settings()).await;
    let (gw, admin, client) = (proxy.gateway_addrs()[0], proxy.admin_addr().unwrap(), http1_client());
    eventually("proxy ready", || async { admin_get(admin, "/ready").await.0 == 200 }).await;
    for _ in 0..20 {
        assert_eq!(get(&client, gw, "/", &[]).await.1, "web-v1");
    }
    controller.set(split(2, &[("web-v1", 0, &[v1.addr]), ("web-v2", 100, &[v2.addr])]));
    eventually("version 2 applied", || async { applied_version(admin).await == 2 }).await;
    for _ in 0..20 {
        assert_eq!(get(&client, gw, "/", &[]).await.1, "web-v2");
    }
    assert_eq!(v1.hits(), 20);
}

#[tokio::test]
async fn traffic_survives_the_controller_and_a_snapshot_after_it_returns_applies() {
    let (v1, v2) = (http_backend("web-v1").await, http_backend("web-v2").await);
    let mut controller = TestController::start().await;
    controller.set(split(7, &[("web-v1", 1, &[v1.addr])]));
    let proxy = start_proxy(source(&controller), test_settings()).await;
    let (gw, admin, client) = (proxy.gateway_addrs()[0], proxy.admin_addr().unwrap(), http1_client());
    eventually("version 7 applied", || async { applied_version(admin).await == 7 }).await;
    assert_eq!(config_entry(admin).await["controller_stream"], "up");

    controller.stop().await;
    eventually("the dump shows the stream down", || async { config_entry(admin).await["controller_stream"] == "down" })
        .await;
    let seen = spread(&client, gw, 200, 4).await;
    assert_eq!(seen.get("200 web-v1"), Some(&200), "fail-static: {seen:?}");
    assert_eq!(applied_version(admin).await, 7);

    // The controller comes back with a lower version (say, a fresh replica): it still replaces all.
    controller.set(split(1, &[("web-v2", 1, &[v2.addr])]));
    controller.restart().await;
    eventually("snapshot after reconnect applied", || async { applied_version(admin).await == 1 }).await;
    assert_eq!(config_entry(admin).await["controller_stream"], "up");
    let seen = spread(&client, gw, 50, 2).await;
    assert_eq!(seen.get("200 web-v2"), Some(&50), "{seen:?}");
}

#[tokio::test]
async fn outbound_watches_authorities_lazily() {
    let api = http_backend("api-v1").await;
    let controller = TestController::start().await;
    let api_authority = "api.shop.svc.cluster.local:8080";
    controller.set(snapshot(api_authority, 3, vec![default_route(vec![backend("api-v1", 1, &[api.addr])])]));
    let proxy = start_proxy(source(&controller), test_settings()).await;
    let (outbound, client) = (proxy.outbound_addr().unwrap(), http1_client());
    let (status, name, _) = get(&client, outbound, "/", &[("host", api_authority)]).await;
    assert_eq!((status, name.as_str()), (200, "api-v1"));
    let (status, _, error) = get(&client, outbound, "/", &[("host", "missing.shop:80")]).await;
    assert_eq!((status, error.as_str()), (503, "service not found"));
    let watched = controller.watched();
    assert!(watched.contains(&api_authority.to_string()) && watched.contains(&"missing.shop:80".to_string()));
    assert_eq!(watched.iter().filter(|a| a.as_str() == api_authority).count(), 1, "one watch per authority");
}

#[tokio::test]
async fn telemetry_windows_reach_the_controller() {
    let (ok, bad) = (http_backend("web-v1").await, http_backend_with("web-v2", 503, Default::default()).await);
    let controller = TestController::start().await;
    controller.set(split(4, &[("web-v1", 1, &[ok.addr]), ("web-v2", 1, &[bad.addr])]));
    let proxy = start_proxy(source(&controller), test_settings()).await;
    let seen = spread(&http1_client(), proxy.gateway_addrs()[0], 100, 2).await;
    let n_bad = seen.get("503 web-v2").copied().unwrap_or(0) as u64;
    let totals = |c: &TestController| {
        let windows = c.windows();
        let sum = |f: &dyn Fn(&shifter_proto::v1::BackendWindow) -> u64| {
            windows.iter().flat_map(|w| &w.backends).map(f).sum::<u64>()
        };
        (sum(&|b| b.requests), sum(&|b| b.failures), sum(&|b| b.failures_by_class.get("5xx").copied().unwrap_or(0)))
    };
    eventually("all requests reported", || async { totals(&controller).0 == 100 }).await;
    assert_eq!(totals(&controller), (100, n_bad, n_bad));
    let windows = controller.windows();
    let applied = windows.last().unwrap().applied.clone();
    assert!(applied.iter().any(|a| a.authority == AUTHORITY && a.version == 4 && a.digest == "d4"), "{applied:?}");
    let b = windows.iter().flat_map(|w| &w.backends).next().unwrap();
    assert_eq!((b.namespace.as_str(), b.service.as_str(), b.snapshot_version), ("shop", "web", 4));
    assert_eq!(b.latency_counts.len(), b.latency_bounds_ms.len() + 1);
}

#[tokio::test]
async fn controller_over_tls_with_a_given_ca() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &Issuer::from_params(&ca_params, &ca_key)).unwrap();

    let v1 = http_backend("web-v1").await;
    let controller = TestController::start_tls(server_cert.pem(), server_key.serialize_pem()).await;
    controller.set(split(9, &[("web-v1", 1, &[v1.addr])]));
    assert!(controller.uri().starts_with("https://"));
    let identity = shifter_proto::v1::ProxyIdentity::default();
    let ca_pem = Some(ca_cert.pem().into_bytes());
    let cfg = ControllerConfig { uri: controller.uri(), ca_pem, token: None, identity };
    let proxy = start_proxy(ConfigSource::Controller(cfg), test_settings()).await;
    let admin = proxy.admin_addr().unwrap();
    eventually("version 9 applied over TLS", || async { applied_version(admin).await == 9 }).await;
    assert_eq!(get(&http1_client(), proxy.gateway_addrs()[0], "/", &[]).await.1, "web-v1");
}

#[tokio::test]
async fn a_bearer_token_is_presented_when_the_controller_requires_one() {
    let v1 = http_backend("web-v1").await;
    let mut controller = TestController::start().await;
    controller.stop().await;
    controller.token = Some("s3cret".into());
    controller.restart().await;
    controller.set(split(5, &[("web-v1", 1, &[v1.addr])]));
    let identity = shifter_proto::v1::ProxyIdentity::default();
    let cfg = ControllerConfig { uri: controller.uri(), ca_pem: None, token: Some("s3cret".into()), identity };
    let proxy = start_proxy(ConfigSource::Controller(cfg), test_settings()).await;
    let admin = proxy.admin_addr().unwrap();
    eventually("version 5 applied with the token", || async { applied_version(admin).await == 5 }).await;
    assert_eq!(get(&http1_client(), proxy.gateway_addrs()[0], "/", &[]).await.1, "web-v1");
    eventually("telemetry accepted with the token", || async { !controller.windows().is_empty() }).await;
}

#[tokio::test]
async fn failed_attempts_on_a_dead_backend_are_reported_beside_the_responses() {
    let live = http_backend("web-v1").await;
    let dead = dead_addr().await;
    let controller = TestController::start().await;
    controller.set(split(3, &[("web-v1", 9, &[live.addr]), ("web-v2", 1, &[dead])]));
    let proxy = start_proxy(source(&controller), test_settings()).await;
    let admin = proxy.admin_addr().unwrap();
    eventually("version 3 applied", || async { applied_version(admin).await == 3 }).await;
    let seen = spread(&http1_client(), proxy.gateway_addrs()[0], 300, 3).await;
    // Dials to web-v2 are refused and retried on a fresh pick; only a request whose every
    // attempt landed on web-v2 (one in a thousand) reaches the client as a 502.
    let answered = seen.get("200 web-v1").copied().unwrap_or(0) as u64;
    let refused = 300 - answered;
    assert_eq!(seen.get("502 ").copied().unwrap_or(0) as u64, refused, "{seen:?}");

    let text = admin_get(admin, "/metrics").await.1;
    let attempts = metric(&text, "request_attempt_failures_total", &[("dst_service", "web-v2"), ("reason", "refused")]);
    assert!(attempts > 0, "{text}");
    // response_total keeps its meaning: one per response a client got.
    assert_eq!(metric(&text, "response_total", &[]), 300);
    assert_eq!(metric(&text, "response_total", &[("dst_service", "web-v2")]), refused);

    let reported = |c: &TestController, backend: &str| {
        let windows = c.windows();
        let mine =
            windows.iter().flat_map(|w| &w.backends).filter(|b| b.backend == backend).cloned().collect::<Vec<_>>();
        let sum = |f: &dyn Fn(&shifter_proto::v1::BackendWindow) -> u64| mine.iter().map(f).sum::<u64>();
        let by_reason = sum(&|b| b.failed_attempts_by_reason.get("refused").copied().unwrap_or(0));
        (sum(&|b| b.requests), sum(&|b| b.failures), sum(&|b| b.failed_attempts), by_reason)
    };
    eventually("every attempt reported", || async { reported(&controller, "web-v2").2 == attempts }).await;
    assert_eq!(reported(&controller, "web-v2"), (refused, refused, attempts, attempts));
    eventually("every response reported", || async { reported(&controller, "web-v1").0 == answered }).await;
    assert_eq!(reported(&controller, "web-v1"), (answered, 0, 0, 0));
}
