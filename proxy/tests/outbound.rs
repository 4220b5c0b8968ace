//! The outbound listener's authority table stays bounded against made-up `Host` headers: names
//! nobody serves are remembered without a watch, a full table makes room instead of refusing,
//! idle authorities are dropped with their watch, and none of it disturbs a request in flight or
//! keeps a real service from routing on its first request.

mod support;

use std::time::Duration;

use shifter_proxy::{ConfigSource, ControllerConfig, Settings};
use support::controller::TestController;
use support::*;

fn source(c: &TestController) -> ConfigSource {
    let identity =
        shifter_proto::v1::ProxyIdentity { id: "test".into(), namespace: "shop".into(), kind: "outbound".into() };
    ConfigSource::Controller(ControllerConfig { uri: c.uri(), ca_pem: None, token: None, identity })
}

/// `name.shop:80` (as clients dial it; the test controller answers for exactly that name) served
/// by one backend.
fn service(name: &str, backend_name: &str, addr: std::net::SocketAddr) -> shifter_proto::v1::Snapshot {
    let authority = format!("{name}.shop:80");
    snapshot(&authority, 1, vec![default_route(vec![backend(backend_name, 1, &[addr])])])
}

/// The `outbound` section of the proxy's config dump.
async fn outbound(admin: std::net::SocketAddr) -> serde_json::Value {
    let (_, body) = admin_get(admin, "/config").await;
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["outbound"].clone()
}

/// Outbound authorities the config dump lists (not pinned).
async fn listed(admin: std::net::SocketAddr) -> Vec<String> {
    let (_, body) = admin_get(admin, "/config").await;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["authorities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["pinned"] == false)
        .map(|a| a["authority"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn made_up_hosts_never_starve_a_real_authority() {
    let api = http_backend("api-v1").await;
    let controller = TestController::start().await;
    controller.set(service("api", "api-v1", api.addr));
    let settings = Settings { max_authorities: 10, ..test_settings() };
    let proxy = start_proxy(source(&controller), settings).await;
    let (out, admin, client) = (proxy.outbound_addr().unwrap(), proxy.admin_addr().unwrap(), http1_client());

    // Ten times the table's size in names nobody serves, half of which cannot even be a Service.
    for i in 0..100 {
        let host = if i % 2 == 0 { format!("junk-{i}.shop:80") } else { format!("junk-{i}") };
        let (status, _, error) = get(&client, out, "/", &[("host", &host)]).await;
        assert_eq!((status, error.as_str()), (503, "service not found"), "{host}");
    }
    // Each was asked about once and holds no watch: they are remembered as unknown.
    let table = outbound(admin).await;
    assert_eq!((table["watched"].as_u64(), table["unknown"].as_u64()), (Some(0), Some(100)), "{table}");
    eventually("no watch left open for made-up names", || async {
        controller.open_watches().keys().all(|a| a == AUTHORITY)
    })
    .await;
    let (status, _, error) = get(&client, out, "/", &[("host", "junk-0.shop:80")]).await;
    assert_eq!((status, error.as_str()), (503, "service not found"));
    assert_eq!(controller.watched().iter().filter(|a| *a == "junk-0.shop:80").count(), 1, "answered from memory");

    // A real service the proxy never saw routes on its first request.
    let (status, name, _) = get(&client, out, "/", &[("host", "API.shop")]).await;
    assert_eq!((status, name.as_str()), (200, "api-v1"));
    // Unknown names are counted under one label, not one series each.
    let metrics = admin_get(admin, "/metrics").await.1;
    assert_eq!(
        metric(&metrics, "proxy_unrouted_total", &[("authority", "unknown"), ("reason", "service not found")]),
        101
    );
    assert!(!metrics.contains("junk-"), "{metrics}");
}

#[tokio::test]
async fn a_full_table_makes_room_for_a_new_service_by_dropping_the_least_recently_used() {
    let backends = [http_backend("a-v1").await, http_backend("b-v1").await, http_backend("c-v1").await];
    let controller = TestController::start().await;
    for (name, b) in ["a", "b", "c"].iter().zip(&backends) {
        controller.set(service(name, b.name, b.addr));
    }
    let settings = Settings { max_authorities: 2, ..test_settings() };
    let proxy = start_proxy(source(&controller), settings).await;
    let (out, admin, client) = (proxy.outbound_addr().unwrap(), proxy.admin_addr().unwrap(), http1_client());

    for (host, want) in [("a.shop:80", "a-v1"), ("b.shop:80", "b-v1"), ("a.shop:80", "a-v1"), ("c.shop:80", "c-v1")] {
        let (status, name, _) = get(&client, out, "/", &[("host", host)]).await;
        assert_eq!((status, name.as_str()), (200, want), "{host}");
    }
    // b was used least recently: it made room for c, and its watch stopped.
    let mut now = listed(admin).await;
    now.sort();
    assert_eq!(now, ["a.shop:80", "c.shop:80"]);
    eventually("b's watch stopped", || async { !controller.open_watches().contains_key("b.shop:80") }).await;
    let metrics = admin_get(admin, "/metrics").await.1;
    assert_eq!(metric(&metrics, "proxy_outbound_authority_evictions_total", &[("reason", "capacity")]), 1);
    // Dropped is not forgotten: b routes again on its next request.
    let (status, name, _) = get(&client, out, "/", &[("host", "b.shop:80")]).await;
    assert_eq!((status, name.as_str()), (200, "b-v1"));
}

#[tokio::test]
async fn an_idle_authority_is_dropped_with_its_watch_and_the_gateway_is_kept() {
    let api = http_backend("api-v1").await;
    let web = http_backend("web-v1").await;
    let controller = TestController::start().await;
    controller.set(service("api", "api-v1", api.addr));
    controller.set(split(1, &[("web-v1", 1, &[web.addr])]));
    let settings = Settings { authority_idle_timeout: Duration::from_millis(200), ..test_settings() };
    let proxy = start_proxy(source(&controller), settings).await;
    let (out, admin, client) = (proxy.outbound_addr().unwrap(), proxy.admin_addr().unwrap(), http1_client());

    let (status, _, _) = get(&client, out, "/", &[("host", "api.shop:80")]).await;
    assert_eq!(status, 200);
    assert_eq!(controller.open_watches().get("api.shop:80"), Some(&1));
    eventually("the idle authority was dropped", || async { listed(admin).await.is_empty() }).await;
    eventually("its watch stopped", || async { !controller.open_watches().contains_key("api.shop:80") }).await;
    let metrics = admin_get(admin, "/metrics").await.1;
    assert_eq!(metric(&metrics, "proxy_outbound_authority_evictions_total", &[("reason", "idle")]), 1);
    // The gateway's authority, idle all along, is pinned.
    assert_eq!(controller.open_watches().get(AUTHORITY), Some(&1));
    assert_eq!(get(&client, proxy.gateway_addrs()[0], "/", &[]).await.1, "web-v1");
    // The dropped authority comes back on demand.
    assert_eq!(get(&client, out, "/", &[("host", "api.shop:80")]).await.1, "api-v1");
}

#[tokio::test]
async fn a_request_in_flight_finishes_when_its_authority_is_dropped() {
    let slow = http_backend_with("slow-v1", 200, Duration::from_millis(500)).await;
    let fast = http_backend("fast-v1").await;
    let controller = TestController::start().await;
    controller.set(service("slow", "slow-v1", slow.addr));
    controller.set(service("fast", "fast-v1", fast.addr));
    let settings = Settings { max_authorities: 1, ..test_settings() };
    let proxy = start_proxy(source(&controller), settings).await;
    let (out, admin, client) = (proxy.outbound_addr().unwrap(), proxy.admin_addr().unwrap(), http1_client());

    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, out, "/", &[("host", "slow.shop:80")]).await })
    };
    eventually("the slow request reached its backend", || async { slow.hits() == 1 }).await;
    // A second authority takes the only slot while the first request is still being answered.
    assert_eq!(get(&client, out, "/", &[("host", "fast.shop:80")]).await.1, "fast-v1");
    assert_eq!(listed(admin).await, ["fast.shop:80"]);
    let (status, name, _) = in_flight.await.unwrap();
    assert_eq!((status, name.as_str()), (200, "slow-v1"));
}

#[tokio::test]
async fn a_host_that_cannot_be_an_authority_is_a_bad_request_and_never_watched() {
    let controller = TestController::start().await;
    let proxy = start_proxy(source(&controller), test_settings()).await;
    let (out, client) = (proxy.outbound_addr().unwrap(), http1_client());
    let long = format!("{}.shop:80", "a".repeat(300));
    for host in ["bad host!", "web.shop:0", long.as_str(), "web.shop:http"] {
        let (status, _, error) = get(&client, out, "/", &[("host", host)]).await;
        assert_eq!((status, error.as_str()), (400, "invalid authority"), "{host}");
    }
    assert!(controller.watched().iter().all(|a| a == AUTHORITY), "{:?}", controller.watched());
}
