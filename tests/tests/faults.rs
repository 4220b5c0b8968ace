//! Faults end to end. A real Prometheus scraping the proxies judges canaries: it promotes a healthy
//! one and rolls back a failing one; when it stops mid-analysis the verdicts turn to Error and the
//! canary is rolled back at its failure limit, never promoted. A crashed canary endpoint process is
//! avoided by the proxy (dialled in the background, not with requests), so clients see no failure
//! and the step still passes; with every canary endpoint dead it is rolled back on the connection
//! failures the proxy counted. An
//! API server stopped or crashed mid-rollout loses nothing it acknowledged, and the rollout and
//! kubectl changes carry on.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use shifter_tests::backend_process::BackendProcess;
use shifter_tests::cluster::{ControllerProc, ProxyProc, service_yaml, wait_until};
use shifter_tests::load::Load;
use shifter_tests::{Backend, Cluster, Prometheus};

const AUTHORITY: &str = "web.shop.svc.cluster.local:80";
const API_AUTHORITY: &str = "api.shop.svc.cluster.local:80";
const TEST_BACKEND: &str = env!("CARGO_BIN_EXE_test-backend");

/// The API server, one controller and `proxies` proxies with a gateway for `web`, in namespace `shop`.
struct Shop {
    cluster: Cluster,
    controller: ControllerProc,
    proxies: Vec<ProxyProc>,
}

impl Shop {
    /// Starts everything, with a Service per `(name, endpoint ports)`.
    async fn start(services: &[(&str, &[u16])], proxies: usize) -> Shop {
        let cluster = Cluster::start().await;
        let mut objects = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
        for (name, ports) in services {
            objects.push_str(&format!("---\n{}", service_yaml("shop", name, ports)));
        }
        cluster.apply(&objects);
        let controller = cluster.start_controller("controller");
        let proxies =
            (0..proxies).map(|i| cluster.start_proxy(&format!("proxy-{i}"), AUTHORITY, &controller)).collect();
        Shop { cluster, controller, proxies }
    }

    fn gateways(&self) -> Vec<SocketAddr> {
        self.proxies.iter().map(|p| p.gateway).collect()
    }

    /// Prometheus scraping every proxy's admin port, once each has been scraped.
    async fn prometheus(&self) -> Prometheus {
        let admins: Vec<SocketAddr> = self.proxies.iter().map(|p| p.admin).collect();
        let prometheus = Prometheus::start(self.cluster.dir.path(), &admins);
        prometheus.wait_for_targets_up(Duration::from_secs(30)).await;
        prometheus
    }

    fn canary_json(&self) -> Value {
        serde_json::from_str(&self.cluster.kubectl_ok(&["get", "canary", "web", "-n", "shop", "-o", "json"])).unwrap()
    }

    fn status(&self) -> Value {
        self.canary_json()["status"].clone()
    }

    /// What a failed wait prints: the canary's status and the end of the controller's log.
    fn diagnostics(&self) -> String {
        format!("canary status: {}\ncontroller log (end):\n{}", self.status(), tail(&self.controller.proc.output(), 60))
    }

    /// Waits until the canary's status satisfies `ok`, polling gently (each poll runs kubectl).
    fn wait_for_status(&self, timeout: Duration, what: &str, ok: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ok(&self.status()) {
            assert!(Instant::now() < deadline, "expected {what} within {timeout:?}\n{}", self.diagnostics());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for a terminal phase and returns it with the whole canary.
    fn wait_for_end(&self, timeout: Duration) -> (String, Value) {
        self.wait_for_status(timeout, "the rollout ended", |s| s["phase"] == "Succeeded" || s["phase"] == "RolledBack");
        let canary = self.canary_json();
        (canary["status"]["phase"].as_str().unwrap_or_default().to_string(), canary)
    }

    fn split(&self, name: &str) -> String {
        split_weights(&self.cluster, name)
    }

    /// `reason: note` of every Event about the canary.
    fn canary_events(&self) -> Vec<String> {
        self.cluster.canary_events("shop")
    }
}

/// A Canary `web` moving traffic from `web-v1` to `web-v2`, analysed every second; `analysis` holds
/// further lines of `spec.analysis`, indented by four spaces.
fn canary_yaml(steps: &str, deadline: &str, analysis: &str) -> String {
    format!(
        "apiVersion: shifter.dev/v1alpha1\nkind: Canary\nmetadata: {{name: web, namespace: shop}}\nspec:\n  service: web\n  stable: web-v1\n  canary: web-v2\n  steps: {steps}\n  progressDeadline: {deadline}\n  analysis:\n    interval: 1s\n    minRequests: 50\n    minDuration: 2s\n{analysis}"
    )
}

/// The test Prometheus scrapes every second, so windows of four scrapes are four seconds long.
fn prometheus_provider(prometheus: &Prometheus) -> String {
    format!("    provider: {{type: prometheus, address: '{}', scrapeInterval: 1s}}\n", prometheus.url())
}

/// Absolute guards: judged on each window alone, so one window of Prometheus data can pass a step.
const ABSOLUTE_METRICS: &str = "    metrics:\n    - {name: success-rate, type: successRate, mode: absolute, minSuccessRate: 99}\n    - {name: p99, type: latency, mode: absolute, quantile: 0.99, maxLatencyMs: 500}\n";

fn condition<'a>(canary: &'a Value, type_: &str) -> &'a Value {
    canary["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// `(result, reason)` of each verdict in the canary's history, oldest first.
fn history(canary: &Value) -> Vec<(String, String)> {
    canary["status"]["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["result"].as_str().unwrap_or_default().into(), v["reason"].as_str().unwrap_or_default().into()))
        .collect()
}

fn split_weights(cluster: &Cluster, name: &str) -> String {
    let out = cluster.kubectl(&[
        "get",
        "ts",
        name,
        "-n",
        "shop",
        "-o",
        "jsonpath={range .spec.backends[*]}{.service}={.weight} {end}",
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sum of `response_total` samples on a proxy's admin `/metrics` whose labels contain all of `labels`.
async fn proxy_responses(proxy: &ProxyProc, labels: &[&str]) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", proxy.admin)).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("response_total{") && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scraping_two_proxies_promotes_a_healthy_canary() {
    let (stable, canary) = (Backend::start("web-v1").await, Backend::start("web-v2").await);
    let shop =
        Shop::start(&[("web", &[stable.port()]), ("web-v1", &[stable.port()]), ("web-v2", &[canary.port()])], 2).await;
    let prometheus = shop.prometheus().await;
    let load = Load::start(&shop.gateways(), 150);
    shop.cluster.apply(&canary_yaml(
        "[{weight: 50}]",
        "3m",
        &format!("{}{ABSOLUTE_METRICS}", prometheus_provider(&prometheus)),
    ));

    // Prometheus is asked only once a window holds enough scrapes.
    shop.wait_for_status(Duration::from_secs(30), "analysis waited for a full Prometheus window", |s| {
        s["lastVerdict"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("waiting for a full window") && r.contains("of 4s"))
    });
    let (phase, c) = shop.wait_for_end(Duration::from_secs(150));
    assert_eq!(phase, "Succeeded", "{}", shop.diagnostics());
    assert_eq!(c["status"]["stable"], "web-v2");
    assert_eq!(condition(&c, "Promoted")["status"], "True", "{}", c["status"]);
    let (_, reason) = history(&c).into_iter().rev().find(|(r, _)| r == "Pass").expect("a passing verdict");
    assert!(reason.contains("success-rate: canary success rate 100") && reason.contains("p99: canary p99"), "{reason}");
    wait_until(Duration::from_secs(10), || shop.split("web") == "web-v2=100", || shop.split("web"));

    // What Prometheus scraped from the two proxies is exactly what the canary served.
    load.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let served = canary.served();
    let query = "sum(response_total{dst_namespace=\"shop\",dst_service=\"web-v2\",classification=\"success\"})";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let scraped = prometheus.query_value(query).await;
        if scraped == Some(served as f64) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus has {scraped:?} canary responses; web-v2 served {served}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(served > 200, "the canary served real traffic: {served}");
    assert!(load.failures().is_empty(), "no request failed: {:?}", load.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_shows_a_canary_failing_10_percent_and_it_is_rolled_back() {
    let (stable, canary) = (Backend::start("web-v1").await, Backend::start("web-v2").await);
    canary.set_failure_rate(0.10);
    let shop =
        Shop::start(&[("web", &[stable.port()]), ("web-v1", &[stable.port()]), ("web-v2", &[canary.port()])], 2).await;
    let prometheus = shop.prometheus().await;
    let load = Load::start(&shop.gateways(), 150);
    // The default judges: success rate and latency, each compared with stable's.
    shop.cluster.apply(&canary_yaml("[{weight: 50}]", "3m", &prometheus_provider(&prometheus)));

    let (phase, c) = shop.wait_for_end(Duration::from_secs(150));
    assert_eq!(phase, "RolledBack", "{}", shop.diagnostics());
    let rolled = condition(&c, "RolledBack");
    assert_eq!(rolled["reason"], "AnalysisFailed", "{rolled}");
    let message = rolled["message"].as_str().unwrap_or_default();
    assert!(message.contains("success-rate") && message.contains("failures"), "{message}");
    assert!(message.contains("web-v1 serves 100%"), "{message}");
    assert_eq!(c["status"]["lastVerdict"]["result"], "Fail");
    assert!(shop.canary_events().iter().any(|e| e.starts_with("RolledBack: ")), "{:?}", shop.canary_events());
    wait_until(
        Duration::from_secs(10),
        || shop.split("web") == "web-v1=100 web-v2=0",
        || format!("split: {}", shop.split("web")),
    );

    // Prometheus saw the failures the judge acted on; after the rollback clients see none.
    let failed = "sum(response_total{dst_service=\"web-v2\",classification=\"failure\",status_code=\"500\"})";
    assert!(prometheus.query_value(failed).await.is_some_and(|n| n > 0.0), "no canary failures in Prometheus");
    let settled = Instant::now() + Duration::from_secs(2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let late: Vec<_> = load.failures().into_iter().filter(|f| f.sent > settled).collect();
    assert!(late.is_empty(), "requests failed after the rollback: {late:?}");
    assert!(load.answered_by("web-v1") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stopping_mid_analysis_gives_error_verdicts_and_a_rollback_at_the_failure_limit() {
    let (stable, canary) = (Backend::start("web-v1").await, Backend::start("web-v2").await);
    let shop =
        Shop::start(&[("web", &[stable.port()]), ("web-v1", &[stable.port()]), ("web-v2", &[canary.port()])], 1).await;
    let mut prometheus = shop.prometheus().await;
    let load = Load::start(&shop.gateways(), 150);
    shop.cluster.apply(&canary_yaml(
        "[{weight: 50}]",
        "3m",
        &format!("    failureLimit: 2\n{}{ABSOLUTE_METRICS}", prometheus_provider(&prometheus)),
    ));

    // The canary is healthy and Prometheus has its traffic; then Prometheus goes away.
    shop.wait_for_status(Duration::from_secs(30), "the canary took traffic", |s| s["canaryWeight"] == 50);
    let query = "sum(response_total{dst_service=\"web-v2\"})";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !prometheus.query_value(query).await.is_some_and(|n| n > 0.0) {
        assert!(Instant::now() < deadline, "Prometheus never scraped canary traffic\n{}", prometheus.proc.output());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    prometheus.stop();

    let (phase, c) = shop.wait_for_end(Duration::from_secs(150));
    assert_eq!(phase, "RolledBack", "{}", shop.diagnostics());
    assert_ne!(c["status"]["stable"], "web-v2", "never promoted");
    assert_eq!(condition(&c, "Promoted")["status"], "False");
    let rolled = condition(&c, "RolledBack");
    assert_eq!(rolled["reason"], "AnalysisFailed", "{rolled}");
    let message = rolled["message"].as_str().unwrap_or_default();
    assert!(message.contains("2 failed check(s) at step 1 (limit 2)"), "{message}");
    assert!(message.contains(&prometheus.url()) && message.contains("unreachable"), "{message}");

    // Blips hold the rollout (Inconclusive); from the third error in a row each verdict is an
    // Error and counts as a failed check, up to the limit of two.
    let verdicts = history(&c);
    let blips: Vec<_> =
        verdicts.iter().filter(|(r, why)| r == "Inconclusive" && why.contains("metrics source error")).collect();
    assert!(
        blips.iter().any(|(_, why)| why.contains("error 1/3"))
            && blips.iter().any(|(_, why)| why.contains("error 2/3")),
        "{verdicts:?}"
    );
    let errors = verdicts.iter().filter(|(r, _)| r == "Error").count();
    assert_eq!(errors, 2, "{verdicts:?}");
    assert_eq!(c["status"]["lastVerdict"]["result"], "Error");
    let events = shop.canary_events();
    assert!(events.iter().any(|e| e.starts_with("RolledBack: ") && e.contains("unreachable")), "{events:?}");
    wait_until(
        Duration::from_secs(10),
        || shop.split("web") == "web-v1=100 web-v2=0",
        || format!("split: {}", shop.split("web")),
    );
    // Only the metrics source failed: no client saw an error.
    assert!(load.failures().is_empty(), "{:?}", load.failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_canary_endpoint_is_avoided_and_losing_every_one_rolls_back() {
    let stable = Backend::start("web-v1").await;
    let dir = tempfile::tempdir().unwrap();
    let program = Path::new(TEST_BACKEND);
    let mut a = BackendProcess::start(dir.path(), program, "web-v2-a");
    let mut b = BackendProcess::start(dir.path(), program, "web-v2-b");
    let shop =
        Shop::start(&[("web", &[stable.port()]), ("web-v1", &[stable.port()]), ("web-v2", &[a.port, b.port])], 1).await;
    let load = Load::start(&shop.gateways(), 150);
    // Step 2 holds long enough for its endpoints to be crashed while it is judged.
    shop.cluster.apply(&canary_yaml(
        "[{weight: 30}, {weight: 60, pause: 90s}]",
        "3m",
        "    metrics: [{name: success-rate, type: successRate}]\n",
    ));

    // Both canary endpoints serve; then one crashes with its connections open.
    wait_until(
        Duration::from_secs(30),
        || load.answered_by("web-v2-a") > 20 && load.answered_by("web-v2-b") > 20,
        || format!("both canary endpoints never served: {:?}\n{}", load.answers(), shop.diagnostics()),
    );
    a.crash();
    let crashed = Instant::now();
    let b_before = load.answered_by("web-v2-b");

    // The proxy routes around it: clients keep getting answers and the canary passes its step.
    shop.wait_for_status(Duration::from_secs(90), "the first step passed with one canary endpoint dead", |s| {
        s["currentStep"] == 1
    });
    let settled = crashed + Duration::from_secs(1);
    let late: Vec<_> = load.failures().into_iter().filter(|f| f.sent > settled).collect();
    assert!(late.is_empty(), "requests failed after the crash: {late:?}");
    assert!(
        load.answered_by("web-v2-b") > b_before + 100,
        "the survivor took the canary's share: {:?}",
        load.answers()
    );

    // The last canary endpoint crashes: the proxy counts connection failures for web-v2 and the
    // canary is rolled back on them.
    b.crash();
    let (phase, c) = shop.wait_for_end(Duration::from_secs(60));
    assert_eq!(phase, "RolledBack", "{}", shop.diagnostics());
    let rolled = condition(&c, "RolledBack");
    assert_eq!(rolled["reason"], "AnalysisFailed", "{rolled}");
    assert!(rolled["message"].as_str().unwrap_or_default().contains("failures"), "{rolled}");
    let refused = proxy_responses(
        &shop.proxies[0],
        &["dst_service=\"web-v2\"", "classification=\"failure\"", "status_code=\"502\""],
    )
    .await;
    assert!(refused > 0, "the proxy counted no connection failures for web-v2");
    wait_until(
        Duration::from_secs(10),
        || shop.split("web") == "web-v1=100 web-v2=0",
        || format!("split: {}", shop.split("web")),
    );
    let rolled_back = Instant::now() + Duration::from_secs(1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let late: Vec<_> = load.failures().into_iter().filter(|f| f.sent > rolled_back).collect();
    assert!(late.is_empty(), "requests failed after the rollback: {late:?}");
}

/// `(name, uid, data.n)` of every ConfigMap in `shop` named `cm-*`, sorted.
fn config_maps(cluster: &Cluster) -> Vec<(String, String, String)> {
    let list: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "configmaps", "-n", "shop", "-o", "json"])).unwrap();
    let mut items: Vec<_> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|cm| cm["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("cm-")))
        .map(|cm| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (s(&cm["metadata"]["name"]), s(&cm["metadata"]["uid"]), s(&cm["data"]["n"]))
        })
        .collect();
    items.sort();
    items
}

/// Creates `cm-<batch>-0` … `cm-<batch>-19` with one kubectl apply, which returns once the API
/// server acknowledged every write.
fn write_config_maps(cluster: &Cluster, batch: &str) {
    let yaml: String = (0..20)
        .map(|i| {
            format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{batch}-{i}, namespace: shop}}\ndata: {{n: '{i}'}}\n")
        })
        .collect();
    cluster.apply(&yaml);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_restarted_or_crashed_mid_rollout_loses_nothing_and_everything_carries_on() {
    let (stable, canary) = (Backend::start("web-v1").await, Backend::start("web-v2").await);
    let (api_v1, api_v2) = (Backend::start("api-v1").await, Backend::start("api-v2").await);
    let mut shop = Shop::start(
        &[
            ("web", &[stable.port()]),
            ("web-v1", &[stable.port()]),
            ("web-v2", &[canary.port()]),
            ("api", &[api_v1.port()]),
            ("api-v1", &[api_v1.port()]),
            ("api-v2", &[api_v2.port()]),
        ],
        1,
    )
    .await;
    shop.cluster.apply(
        "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: api, namespace: shop}\nspec:\n  service: api\n  backends:\n  - {service: api-v1, weight: 100}\n  - {service: api-v2, weight: 0}\n",
    );
    let api_proxy = shop.cluster.start_proxy("proxy-api", API_AUTHORITY, &shop.controller);
    // Two requests to web for each one to api.
    let load = Load::start(&[shop.proxies[0].gateway, shop.proxies[0].gateway, api_proxy.gateway], 150);
    // The second step holds long enough for the API server to crash during it.
    shop.cluster.apply(&canary_yaml(
        "[{weight: 20}, {weight: 50, pause: 15s}]",
        "3m",
        "    metrics: [{name: success-rate, type: successRate, mode: absolute, minSuccessRate: 99}]\n",
    ));
    shop.wait_for_status(Duration::from_secs(30), "the first step started", |s| s["canaryWeight"] == 20);
    let started = shop.status()["rolloutStartedAt"].clone();

    // Stopped and started during the first step: what it acknowledged is all there.
    write_config_maps(&shop.cluster, "a");
    let written = config_maps(&shop.cluster);
    assert_eq!(written.len(), 20);
    shop.cluster.restart_apiserver();
    assert_eq!(config_maps(&shop.cluster), written, "every acknowledged write survived the restart");
    assert_eq!(shop.split("api"), "api-v1=100 api-v2=0");

    // The controller carries the rollout on to the second step; there the API server crashes.
    shop.wait_for_status(Duration::from_secs(60), "the second step started after the restart", |s| {
        s["canaryWeight"] == 50
    });
    write_config_maps(&shop.cluster, "b");
    let written = config_maps(&shop.cluster);
    assert_eq!(written.len(), 40);
    shop.cluster.crash_apiserver();
    assert_eq!(config_maps(&shop.cluster), written, "every acknowledged write survived the crash");

    // The same rollout goes on to its end.
    let (phase, c) = shop.wait_for_end(Duration::from_secs(120));
    assert_eq!(phase, "Succeeded", "{}", shop.diagnostics());
    assert_eq!(c["status"]["rolloutStartedAt"], started, "the same rollout continued");
    wait_until(Duration::from_secs(10), || shop.split("web") == "web-v2=100", || shop.split("web"));

    // A kubectl patch afterwards is followed by routed traffic and reported in status.
    shop.cluster.kubectl_ok(&[
        "patch",
        "ts",
        "api",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"spec":{"backends":[{"service":"api-v1","weight":20},{"service":"api-v2","weight":80}]}}"#,
    ]);
    let (mut v1_before, mut v2_before) = (api_v1.served(), api_v2.served());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (v1, v2) = (api_v1.served() - v1_before, api_v2.served() - v2_before);
        let share = v2 as f64 * 100.0 / (v1 + v2).max(1) as f64;
        if v1 + v2 >= 100 && (share - 80.0).abs() < 10.0 {
            break;
        }
        assert!(Instant::now() < deadline, "api traffic never followed the patch: api-v1 {v1}, api-v2 {v2}");
        (v1_before, v2_before) = (api_v1.served(), api_v2.served());
    }
    wait_until(
        Duration::from_secs(20),
        || {
            let split: Value =
                serde_json::from_str(&shop.cluster.kubectl_ok(&["get", "ts", "api", "-n", "shop", "-o", "json"]))
                    .unwrap();
            split["status"]["split"] == "api-v1=20% api-v2=80%"
        },
        || format!("status never showed the patch\n{}", tail(&shop.controller.proc.output(), 60)),
    );
    // The proxies served from their routing tables throughout: no client saw an error.
    assert!(load.failures().is_empty(), "{:?}", load.failures());
    drop(api_proxy);
}
