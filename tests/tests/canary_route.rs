//! A Canary driving a Gateway API HTTPRoute end to end: the route is the author's (applied with
//! kubectl as another field manager), the Canary moves only the stable and canary weights in it,
//! shifter's proxies route by the same route, and an edit of the route made meanwhile survives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use shifter_tests::cluster::{ControllerProc, ProxyProc, wait_until};
use shifter_tests::{Backend, Cluster};

const AUTHORITY: &str = "web.shop.svc.cluster.local:80";

const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs:
  - {group: "", kind: Service, name: web, port: 80}
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
    backendRefs:
    - {name: web-v1, port: 80}
"#;

/// Steps judged by an absolute success-rate guard: this is about who writes what on the route,
/// not about how much evidence the comparative judge needs.
fn canary_yaml(steps: &str) -> String {
    format!(
        "apiVersion: shifter.dev/v1alpha1\nkind: Canary\nmetadata: {{name: web, namespace: shop}}\nspec:\n  service: web\n  stable: web-v1\n  canary: web-v2\n  routeRef: {{kind: HTTPRoute}}\n  steps: {steps}\n  progressDeadline: 2m\n  analysis:\n    interval: 1s\n    minRequests: 50\n    minDuration: 3s\n    metrics: [{{name: success-rate, type: successRate, mode: absolute, minSuccessRate: 99}}]\n"
    )
}

struct Shop {
    cluster: Cluster,
    controller: ControllerProc,
    proxy: ProxyProc,
    stable: Backend,
    canary: Backend,
}

async fn shop() -> Shop {
    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let (stable, canary) = (Backend::start("web-v1").await, Backend::start("web-v2").await);
    cluster.service("shop", "web", Some(stable.port()));
    cluster.service("shop", "web-v1", Some(stable.port()));
    cluster.service("shop", "web-v2", Some(canary.port()));
    let controller = cluster.start_controller("controller");
    let proxy = cluster.start_proxy("proxy", AUTHORITY, &controller);
    Shop { cluster, controller, proxy, stable, canary }
}

/// Applies `yaml` server-side as the field manager `gitops`, as a GitOps tool would.
fn gitops_apply(cluster: &Cluster, yaml: &str) {
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let file = cluster.dir.path().join(format!("gitops-{n}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    cluster.kubectl_ok(&[
        "apply",
        "--server-side",
        "--field-manager=gitops",
        "--force-conflicts",
        "-f",
        file.to_str().unwrap(),
    ]);
}

/// `web-v1=<w> web-v2=<w>` of the route's first rule (absent refs left out).
fn weights(route: &Value) -> String {
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| format!("{}={}", b["name"].as_str().unwrap_or("?"), b["weight"].as_i64().unwrap_or(1)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn matches(route: &Value) -> usize {
    route["spec"]["rules"][0]["matches"].as_array().map_or(0, Vec::len)
}

fn route_json(cluster: &Cluster) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", "httproute", "web", "-n", "shop", "-o", "json"])).unwrap()
}

/// Sends about `rps` requests a second through the proxy for at most `limit`.
fn load(gateway: std::net::SocketAddr, rps: u64, limit: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps));
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            tick.tick().await;
            let c = client.clone();
            tokio::spawn(async move {
                let _ = c.get(format!("http://{gateway}/")).send().await;
            });
        }
    })
}

fn wait_for_end(s: &Shop, timeout: Duration) -> (String, Value) {
    s.cluster.wait_for_canary_end("shop", "web", timeout, || s.controller.proc.output())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_drives_an_httproute_that_another_manager_edits_meanwhile() {
    let s = shop().await;
    gitops_apply(&s.cluster, ROUTE);

    // Every change of the route's spec, as a watcher sees it: (generation, weights, matches).
    let resource = ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(s.cluster.client().await, "shop", &resource);
    let seen: Arc<Mutex<Vec<(i64, String, usize)>>> = Arc::default();
    let (record, subscribed) = (seen.clone(), Arc::new(tokio::sync::Notify::new()));
    let ready = subscribed.clone();
    let watch = tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = stream.next().await {
            let obj = match event {
                Event::InitDone => {
                    ready.notify_one();
                    continue;
                }
                Event::Apply(obj) | Event::InitApply(obj) => obj,
                _ => continue,
            };
            let value = serde_json::to_value(&obj).unwrap();
            let entry = (obj.metadata.generation.unwrap_or_default(), weights(&value), matches(&value));
            let mut seen = record.lock().unwrap();
            if seen.last().is_none_or(|last| last.0 != entry.0) {
                seen.push(entry);
            }
        }
    });
    subscribed.notified().await;

    s.cluster.apply(&canary_yaml("[{weight: 30}, {weight: 60}]"));
    let traffic = load(s.proxy.gateway, 100, Duration::from_secs(150));

    // At the first step the author adds a match, applying the route with the weights it holds
    // now (as Argo CD does with RespectIgnoreDifferences on the weights).
    wait_until(
        Duration::from_secs(60),
        || weights(&route_json(&s.cluster)) == "web-v1=70 web-v2=30",
        || format!("the first step never reached the route: {}", route_json(&s.cluster)["spec"]),
    );
    let mut edited: Value = route_json(&s.cluster);
    let rules = edited["spec"]["rules"].take();
    let mut mine: Value = serde_yaml::from_str(ROUTE).unwrap();
    mine["spec"]["rules"] = rules;
    mine["spec"]["rules"][0]["matches"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "x-shop", "value": "1"}]}));
    gitops_apply(&s.cluster, &serde_yaml::to_string(&mine).unwrap());

    let (phase, c) = wait_for_end(&s, Duration::from_secs(120));
    assert_eq!(phase, "Succeeded", "{}", c["status"]);
    wait_until(
        Duration::from_secs(10),
        || weights(&route_json(&s.cluster)) == "web-v1=0 web-v2=100",
        || format!("route after promotion: {}", route_json(&s.cluster)["spec"]),
    );
    let route = route_json(&s.cluster);
    assert_eq!(matches(&route), 2, "the author's added match is kept: {}", route["spec"]);
    assert!(s.canary.served() > 100 && s.stable.served() > 100, "the proxy routed by the route's weights");
    traffic.abort();

    // Every write changed something: the author's two (create, add a match) and one per weight
    // change of the Canary's — no write repeats weights, nothing fights.
    // The watcher has seen the promoted weights before its record is read: no fixed wait.
    wait_until(
        Duration::from_secs(10),
        || seen.lock().unwrap().last().is_some_and(|e| e.1 == "web-v1=0 web-v2=100"),
        || format!("the watcher never saw the promoted weights: {:?}", seen.lock().unwrap()),
    );
    watch.abort();
    let seen = seen.lock().unwrap().clone();
    eprintln!("route writes seen: {seen:?}");
    let weight_changes = seen.windows(2).filter(|w| w[0].1 != w[1].1).count();
    let match_changes = seen.windows(2).filter(|w| w[0].2 != w[1].2).count();
    let writes = seen.len() - 1;
    assert_eq!(match_changes, 1, "{seen:?}");
    assert_eq!(writes, weight_changes + match_changes, "a write that changed neither weights nor matches: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].1 == w[1].1 || w[0].2 == w[1].2),
        "the author's write kept the weights: {seen:?}"
    );
    let sequence: Vec<&str> = seen.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(sequence.first(), Some(&"web-v1=1"), "{seen:?}");
    assert_eq!(sequence.last(), Some(&"web-v1=0 web-v2=100"), "{seen:?}");
    for step in ["web-v1=70 web-v2=30", "web-v1=40 web-v2=60"] {
        assert!(sequence.contains(&step), "step {step} was written: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_on_an_httproute_is_rolled_back_to_the_stable_weight() {
    let s = shop().await;
    gitops_apply(&s.cluster, ROUTE);
    s.canary.set_failure_rate(0.2);
    s.cluster.apply(&canary_yaml("[{weight: 30}, {weight: 60}]"));
    let traffic = load(s.proxy.gateway, 100, Duration::from_secs(120));
    let (phase, c) = wait_for_end(&s, Duration::from_secs(100));
    traffic.abort();
    assert_eq!(phase, "RolledBack", "{}", c["status"]);
    wait_until(
        Duration::from_secs(10),
        || weights(&route_json(&s.cluster)) == "web-v1=100 web-v2=0",
        || format!("route after rollback: {}", route_json(&s.cluster)["spec"]),
    );
    assert!(s.canary.served() > 0, "the canary was judged on traffic the route sent it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_creates_the_grpcroute_it_names_and_promotes_over_grpc() {
    use shifter_tests::grpc::{grpc_backend, grpc_call, grpc_client};

    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let (v1, v2) = (grpc_backend("grpc-v1").await, grpc_backend("grpc-v2").await);
    cluster.service("shop", "web", Some(v1.port()));
    cluster.service("shop", "web-v1", Some(v1.port()));
    cluster.service("shop", "web-v2", Some(v2.port()));
    let controller = cluster.start_controller("controller");
    let proxy = cluster.start_proxy("proxy", AUTHORITY, &controller);
    // No route yet: the Canary creates it.
    cluster.apply(&canary_yaml("[{weight: 30}, {weight: 60}]").replace("kind: HTTPRoute", "kind: GRPCRoute"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, gateway) = (stop.clone(), proxy.gateway);
    let calls = tokio::spawn(async move {
        let mut client = grpc_client(gateway);
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            *seen.entry(grpc_call(&mut client).await).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    });
    let (phase, c) = cluster.wait_for_canary_end("shop", "web", Duration::from_secs(100), || controller.proc.output());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = calls.await.unwrap();
    assert_eq!(phase, "Succeeded", "{}", c["status"]);
    let route: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "grpcroute",
        "web",
        "-n",
        "shop",
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "web", "{}", route["spec"]);
    let managers: Vec<&str> =
        route["metadata"]["managedFields"].as_array().unwrap().iter().filter_map(|m| m["manager"].as_str()).collect();
    assert!(managers.contains(&"shifter-canary"), "the Canary wrote the route: {managers:?}");
    wait_until(
        Duration::from_secs(10),
        || {
            let r: Value =
                serde_json::from_str(&cluster.kubectl_ok(&["get", "grpcroute", "web", "-n", "shop", "-o", "json"]))
                    .unwrap();
            weights(&r) == "web-v1=0 web-v2=100"
        },
        || "the GRPCRoute never carried the promoted weights".into(),
    );
    assert!(
        seen.get("grpc-v2").copied().unwrap_or(0) > 50,
        "gRPC calls reached the canary through the route: {seen:?}"
    );
    assert!(seen.keys().all(|k| k == "grpc-v1" || k == "grpc-v2"), "every call was answered by a version: {seen:?}");
}
