//! Gateway API (GAMMA) routes end to end: the real API server, controller and proxy processes,
//! real HTTP backends and the real kubectl. An HTTPRoute whose parentRef is a Service splits and
//! matches that Service's traffic as the spec says, and its `status.parents` is what `kubectl wait`
//! and rollout tools wait on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use shifter_tests::grpc::{grpc_backend, grpc_call, grpc_client};
use shifter_tests::{Backend, Cluster};

const AUTHORITY: &str = "web.shop.svc.cluster.local:80";

/// One request through the proxy: the answering backend (`x-backend`), or `<status>` when the
/// proxy or a backend answered with an error.
async fn ask(
    client: &reqwest::Client,
    gateway: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut req = client.request(method.parse().unwrap(), format!("http://{gateway}{target}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => {
            r.headers().get("x-backend").map_or("?".into(), |v| v.to_str().unwrap().to_string())
        }
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) => format!("error:{e}"),
    }
}

async fn tally(gateway: SocketAddr, n: usize, target: &str) -> BTreeMap<String, usize> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        *seen.entry(ask(&client, gateway, "GET", target, &[]).await).or_default() += 1;
    }
    seen
}

fn share(seen: &BTreeMap<String, usize>, key: &str) -> f64 {
    let total: usize = seen.values().sum();
    *seen.get(key).unwrap_or(&0) as f64 * 100.0 / total as f64
}

/// Waits until every one of 40 requests to `target` lands on `expected` (each seen at least once).
async fn wait_for(gateway: SocketAddr, target: &str, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = tally(gateway, 40, target).await;
        if seen.keys().all(|k| expected.contains(&k.as_str())) && expected.iter().all(|e| seen.contains_key(*e)) {
            return;
        }
        assert!(Instant::now() < deadline, "{target} never settled on {expected:?}; last saw {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kubectl wait` until shifter's entry in the route's `status.parents` has condition `type_` True.
fn wait_for_condition(cluster: &Cluster, route: &str, ns: &str, type_: &str) {
    let jsonpath = format!(r#"--for=jsonpath={{.status.parents[0].conditions[?(@.type=="{type_}")].status}}=True"#);
    cluster.kubectl_ok(&["wait", route, "-n", ns, "--timeout=30s", &jsonpath]);
}

fn route_json(cluster: &Cluster) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", "httproute", "web", "-n", "shop", "-o", "json"])).unwrap()
}

const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs:
  - {group: "", kind: Service, name: web, port: 80}
  rules:
  - matches:
    - path: {type: PathPrefix, value: /shop}
    backendRefs:
    - {name: web-v1, port: 80, weight: 70}
    - {name: web-v2, port: 80, weight: 30}
  - matches:
    - path: {type: Exact, value: /shop/beta}
    backendRefs:
    - {name: web-v2, port: 80}
  - matches:
    - path: {type: PathPrefix, value: /shop}
      headers: [{name: x-version, value: v2}]
    - path: {type: PathPrefix, value: /shop}
      queryParams: [{name: tier, value: gold}]
    - path: {type: PathPrefix, value: /shop}
      method: DELETE
    backendRefs:
    - {name: web-v2, port: 80}
  - matches:
    - path: {type: PathPrefix, value: /half}
    backendRefs:
    - {name: web-v1, port: 80}
    - {name: web-gone, port: 80}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_httproute_on_a_service_splits_matches_and_reports_accepted() {
    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let (web, v1, v2) = (Backend::start("web").await, Backend::start("web-v1").await, Backend::start("web-v2").await);
    cluster.service("shop", "web", Some(web.port()));
    cluster.service("shop", "web-v1", Some(v1.port()));
    cluster.service("shop", "web-v2", Some(v2.port()));
    let controller = cluster.start_controller("controller-a");
    let proxy = cluster.start_proxy("proxy-a", AUTHORITY, &controller);
    wait_for(proxy.gateway, "/shop", &["web"]).await;

    cluster.apply(ROUTE);
    // `kubectl wait` on the condition rollout tools wait on, from shifter's entry.
    wait_for_condition(&cluster, "httproute/web", "shop", "Accepted");
    let route = route_json(&cluster);
    let parent = &route["status"]["parents"][0];
    assert_eq!(parent["controllerName"], "shifter.dev/controller");
    assert_eq!(parent["parentRef"]["name"], "web");
    for c in parent["conditions"].as_array().unwrap() {
        assert_eq!(c["observedGeneration"], route["metadata"]["generation"], "{c}");
    }
    let resolved = parent["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "ResolvedRefs").unwrap();
    assert_eq!((resolved["status"].as_str(), resolved["reason"].as_str()), (Some("False"), Some("BackendNotFound")));
    assert!(resolved["message"].as_str().unwrap().contains("web-gone"), "{resolved}");

    // 70/30 over 500 requests within the Gateway API mesh weight test's ±5 points: the proxy
    // draws from a low-discrepancy sequence, so every run of requests splits to within a point or
    // two (independent random draws would miss ±5 in 1.5% of correct runs).
    wait_for(proxy.gateway, "/shop", &["web-v1", "web-v2"]).await;
    let served_by_web = web.served();
    let seen = tally(proxy.gateway, 500, "/shop/cart").await;
    let (p1, p2) = (share(&seen, "web-v1"), share(&seen, "web-v2"));
    assert!((65.0..=75.0).contains(&p1) && (25.0..=35.0).contains(&p2), "70/30 expected, saw {seen:?}");
    assert_eq!(seen.values().sum::<usize>(), seen.get("web-v1").unwrap_or(&0) + seen.get("web-v2").unwrap_or(&0));

    // Precedence: Exact beats every prefix; a header, query or method match beats the bare prefix.
    let client = reqwest::Client::new();
    let gw = proxy.gateway;
    for _ in 0..20 {
        assert_eq!(ask(&client, gw, "GET", "/shop/beta", &[]).await, "web-v2", "Exact path");
        assert_eq!(ask(&client, gw, "GET", "/shop/x", &[("x-version", "v2")]).await, "web-v2", "header");
        assert_eq!(ask(&client, gw, "GET", "/shop/x?tier=gold", &[]).await, "web-v2", "query parameter");
        assert_eq!(ask(&client, gw, "DELETE", "/shop/x", &[]).await, "web-v2", "method");
    }
    // No rule matches: 404, and the Service's own endpoints are not used.
    assert_eq!(ask(&client, gw, "GET", "/other", &[]).await, "404");
    assert_eq!(ask(&client, gw, "GET", "/shopping", &[]).await, "404", "a prefix matches whole segments");
    assert_eq!(web.served(), served_by_web, "once the route is attached the Service's own endpoints get nothing");

    // A backendRef to a missing Service answers 500 for its share, and nothing else changes.
    let seen = tally(gw, 200, "/half").await;
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), ["500", "web-v1"], "{seen:?}");
    assert!((35.0..=65.0).contains(&share(&seen, "500")), "about half: {seen:?}");

    // A weight patched with kubectl is followed.
    cluster.kubectl_ok(&[
        "patch",
        "httproute",
        "web",
        "-n",
        "shop",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/rules/0/backendRefs/0/weight","value":0}]"#,
    ]);
    wait_for(gw, "/shop", &["web-v2"]).await;
    let seen = tally(gw, 100, "/shop").await;
    assert_eq!(seen.get("web-v2"), Some(&100), "{seen:?}");
    // Status follows the new generation.
    let generation = route_json(&cluster)["metadata"]["generation"].clone();
    cluster.kubectl_ok(&[
        "wait",
        "httproute/web",
        "-n",
        "shop",
        "--timeout=30s",
        &format!(
            r#"--for=jsonpath={{.status.parents[0].conditions[?(@.type=="Accepted")].observedGeneration}}={generation}"#
        ),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcroute_splits_real_grpc_calls_by_weight() {
    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let (web, v1, v2) = (grpc_backend("grpc-web").await, grpc_backend("grpc-v1").await, grpc_backend("grpc-v2").await);
    cluster.service("shop", "web", Some(web.port()));
    cluster.service("shop", "web-v1", Some(v1.port()));
    cluster.service("shop", "web-v2", Some(v2.port()));
    let controller = cluster.start_controller("controller-a");
    let proxy = cluster.start_proxy("proxy-a", AUTHORITY, &controller);
    cluster.apply(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs:
  - {group: "", kind: Service, name: web, port: 80}
  rules:
  - matches:
    - method: {service: shifter.proxy.v1.Destinations, method: Watch}
    backendRefs:
    - {name: web-v1, port: 80, weight: 70}
    - {name: web-v2, port: 80, weight: 30}
"#,
    );
    wait_for_condition(&cluster, "grpcroute/web", "shop", "Accepted");
    let mut client = grpc_client(proxy.gateway);
    // Routing settles on the route's backends (the proxy picks the route up after `Accepted`).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen = BTreeMap::<String, usize>::new();
        for _ in 0..40 {
            *seen.entry(grpc_call(&mut client).await).or_default() += 1;
        }
        if seen.keys().all(|k| k == "grpc-v1" || k == "grpc-v2") && seen.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "gRPC routing never settled on the route; last saw {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen = BTreeMap::<String, usize>::new();
    for _ in 0..500 {
        *seen.entry(grpc_call(&mut client).await).or_default() += 1;
    }
    let (p1, p2) = (share(&seen, "grpc-v1"), share(&seen, "grpc-v2"));
    assert!((65.0..=75.0).contains(&p1) && (25.0..=35.0).contains(&p2), "70/30 expected, saw {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_route_applies_only_to_clients_in_its_namespace() {
    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: checkout}\n");
    let web = Backend::start("web").await;
    cluster.service("shop", "web", Some(web.port()));
    let controller = cluster.start_controller("controller-a");
    let shop_proxy = cluster.start_proxy("proxy-shop", AUTHORITY, &controller);
    let gateway = std::net::SocketAddr::from(([127, 0, 0, 1], shifter_tests::cluster::free_port()));
    let listener = ["--gateway".to_string(), format!("{gateway}={AUTHORITY}"), "--namespace".into(), "checkout".into()];
    let (_checkout_proxy, _) = cluster.spawn_proxy("proxy-checkout", &controller, &listener, "info");
    // The checkout team only calls /api on web: anything else is a mistake it wants to see.
    cluster.apply(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-from-checkout, namespace: checkout}
spec:
  parentRefs:
  - {group: "", kind: Service, name: web, namespace: shop, port: 80}
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api}
    backendRefs:
    - {name: web, namespace: shop, port: 80}
"#,
    );
    wait_for_condition(&cluster, "httproute/web-from-checkout", "checkout", "ResolvedRefs");
    wait_for(gateway, "/other", &["404"]).await;
    wait_for(gateway, "/api/cart", &["web"]).await;
    // Clients in the Service's own namespace are not affected.
    wait_for(shop_proxy.gateway, "/other", &["web"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_gateway_api_crds_the_controller_is_ready_and_splits_traffic() {
    let cluster = Cluster::start_without_gateway_api().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let (web, v2) = (Backend::start("web").await, Backend::start("web-v2").await);
    cluster.service("shop", "web", Some(web.port()));
    cluster.service("shop", "web-v2", Some(v2.port()));
    cluster.apply(
        "apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {name: web, namespace: shop}\nspec:\n  service: web\n  backends:\n  - {service: web-v2, weight: 1}\n",
    );
    let mut controller = cluster.start_controller("controller-a");
    controller.proc.wait_for_line("does not serve HTTPRoute", Duration::from_secs(30));
    let ready = format!("http://{}/readyz", controller.admin);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = reqwest::get(&ready).await.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
        if status == Ok(200) {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never answered 200 without the route CRDs: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let proxy = cluster.start_proxy("proxy-a", AUTHORITY, &controller);
    wait_for(proxy.gateway, "/", &["web-v2"]).await;
}
