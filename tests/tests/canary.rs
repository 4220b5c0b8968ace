//! Canaries end to end: real API server, controller and proxy processes, real HTTP backends with
//! injected faults, load through the proxy, and the mesh's own telemetry judging the canary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use shifter_tests::cluster::{ControllerProc, ProxyProc, wait_until};
use shifter_tests::{Backend, Cluster};

const AUTHORITY: &str = "web.shop.svc.cluster.local:80";

struct Rollout {
    cluster: Cluster,
    controller: ControllerProc,
    proxy: ProxyProc,
    stable: Backend,
    canary: Backend,
    load: Option<(Arc<AtomicBool>, tokio::task::JoinHandle<()>)>,
}

/// A Canary judged by an absolute success-rate guard only: for tests about the rollout's mechanics
/// (gates, restarts), which should not wait for the comparative test to gather evidence.
fn success_rate_only(yaml: String) -> String {
    format!("{yaml}    metrics: [{{name: success-rate, type: successRate, mode: absolute, minSuccessRate: 99}}]\n")
}

fn canary_yaml(steps: &str, deadline: &str) -> String {
    format!(
        "apiVersion: shifter.dev/v1alpha1\nkind: Canary\nmetadata: {{name: web, namespace: shop}}\nspec:\n  service: web\n  stable: web-v1\n  canary: web-v2\n  steps: {steps}\n  progressDeadline: {deadline}\n  analysis:\n    interval: 1s\n    minRequests: 50\n    minDuration: 2s\n"
    )
}

async fn rollout(steps: &str, deadline: &str) -> Rollout {
    rollout_of(canary_yaml(steps, deadline)).await
}

async fn rollout_of(manifest: String) -> Rollout {
    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let (stable, canary) = (Backend::start("web-v1").await, Backend::start("web-v2").await);
    cluster.service("shop", "web", Some(stable.port()));
    cluster.service("shop", "web-v1", Some(stable.port()));
    cluster.service("shop", "web-v2", Some(canary.port()));
    let controller = cluster.start_controller("controller");
    let proxy = cluster.start_proxy("proxy", AUTHORITY, &controller);
    cluster.apply(&manifest);
    Rollout { cluster, controller, proxy, stable, canary, load: None }
}

impl Rollout {
    /// Sends about `rps` requests per second through the proxy until stopped.
    fn start_load(&mut self, rps: u64) {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, gateway) = (stop.clone(), self.proxy.gateway);
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps));
            // Bounded: at most ten minutes of load whatever the test does.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                tick.tick().await;
                let c = client.clone();
                tokio::spawn(async move {
                    let _ = c.get(format!("http://{gateway}/")).send().await;
                });
            }
        });
        self.load = Some((stop, task));
    }

    fn canary_json(&self) -> Value {
        serde_json::from_str(&self.cluster.kubectl_ok(&["get", "canary", "web", "-n", "shop", "-o", "json"])).unwrap()
    }

    fn phase(&self) -> String {
        self.canary_json()["status"]["phase"].as_str().unwrap_or_default().to_string()
    }

    /// Waits for a terminal phase and returns it with the canary JSON.
    fn wait_for_end(&self, timeout: Duration) -> (String, Value) {
        self.cluster.wait_for_canary_end("shop", "web", timeout, || self.controller.proc.output())
    }

    fn split_weights(&self) -> String {
        split(&self.cluster)
    }

    fn events(&self) -> Vec<String> {
        self.cluster.canary_events("shop")
    }
}

/// Unix seconds of the last verdict in `canary`'s status, 0 when none.
fn last_verdict_at(canary: &Value) -> i64 {
    canary["status"]["lastVerdict"]["time"]
        .as_str()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map_or(0, |t| t.as_second())
}

/// Waits until the controller has given `n` more verdicts (each tick's is stamped with its own
/// second) — the positive sign that it looked at the Canary again — and returns the latest JSON.
fn wait_for_verdicts(cluster: &Cluster, n: usize, timeout: Duration) -> Value {
    let get = || -> Value {
        serde_json::from_str(&cluster.kubectl_ok(&["get", "canary", "web", "-n", "shop", "-o", "json"])).unwrap()
    };
    let mut last = last_verdict_at(&get());
    let mut seen = 0;
    let deadline = Instant::now() + timeout;
    loop {
        let c = get();
        let at = last_verdict_at(&c);
        if at > last {
            (last, seen) = (at, seen + 1);
            if seen >= n {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "only {seen} of {n} new verdicts in {timeout:?}: {}", c["status"]);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn condition<'a>(canary: &'a Value, type_: &str) -> &'a Value {
    canary["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_promoted_through_every_step() {
    // Both default metrics (success rate and latency) must show the canary safe at each step, which
    // takes a few thousand canary requests: generous time, as the machine is shared.
    let mut r = rollout("[{weight: 30}, {weight: 60}]", "6m").await;
    r.start_load(200);
    let promoted =
        r.cluster.kubectl(&["wait", "canary/web", "-n", "shop", "--for=condition=Promoted", "--timeout=400s"]);
    let (phase, c) = r.wait_for_end(Duration::from_secs(30));
    assert_eq!(phase, "Succeeded", "{}", c["status"]);
    assert!(
        promoted.status.success(),
        "kubectl wait --for=condition=Promoted: {}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    assert_eq!(c["status"]["stable"], "web-v2");
    let steps: Vec<String> = r.events().into_iter().filter(|e| e.starts_with("StepStarted")).collect();
    assert!(steps.iter().any(|e| e.contains("30%")) && steps.iter().any(|e| e.contains("60%")), "{steps:?}");
    wait_until(
        Duration::from_secs(10),
        || r.split_weights().trim() == "web-v2=100",
        || format!("split: {}", r.split_weights()),
    );
    assert!(r.canary.served() > 100, "the canary served real traffic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answering_5_percent_errors_is_rolled_back() {
    let mut r = rollout("[{weight: 20}, {weight: 50}]", "2m").await;
    r.canary.set_failure_rate(0.05);
    r.start_load(150);
    let (phase, c) = r.wait_for_end(Duration::from_secs(150));
    assert_eq!(phase, "RolledBack", "{}", c["status"]);
    let rolled = condition(&c, "RolledBack");
    assert_eq!(rolled["reason"], "AnalysisFailed", "{rolled}");
    assert!(rolled["message"].as_str().unwrap().contains("web-v1 serves 100%"), "{rolled}");
    wait_until(
        Duration::from_secs(10),
        || r.split_weights().trim() == "web-v1=100 web-v2=0",
        || format!("split: {}", r.split_weights()),
    );
    assert!(r.stable.served() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_300ms_slower_is_rolled_back() {
    let mut r = rollout("[{weight: 20}, {weight: 50}]", "2m").await;
    r.canary.set_delay(Duration::from_millis(300));
    r.start_load(150);
    let (phase, c) = r.wait_for_end(Duration::from_secs(150));
    assert_eq!(phase, "RolledBack", "{}", c["status"]);
    let reason = condition(&c, "RolledBack")["message"].as_str().unwrap_or_default().to_string();
    assert!(reason.to_lowercase().contains("latency") || reason.contains("slower"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_traffic_it_holds_then_rolls_back_at_the_deadline() {
    let r = rollout("[{weight: 20}, {weight: 50}]", "10s").await;
    wait_until(Duration::from_secs(20), || r.phase() == "Progressing", || "never started".into());
    // Three ticks judged the step (interval 1s) and none moved it.
    let c = wait_for_verdicts(&r.cluster, 3, Duration::from_secs(20));
    assert_eq!(
        (c["status"]["phase"].as_str(), c["status"]["currentStep"].as_u64()),
        (Some("Progressing"), Some(0)),
        "holds"
    );
    assert_eq!(c["status"]["lastVerdict"]["result"], "Inconclusive", "{}", c["status"]);
    let (phase, c) = r.wait_for_end(Duration::from_secs(30));
    assert_eq!(phase, "RolledBack");
    let rolled = condition(&c, "RolledBack");
    assert_eq!(rolled["reason"], "ProgressDeadlineExceeded");
    assert!(rolled["message"].as_str().unwrap().contains("no progress for 10s"), "{rolled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_holds_until_promote_and_abort_rolls_back_at_once() {
    let mut r = rollout_of(success_rate_only(canary_yaml("[{weight: 20, gate: true}, {weight: 50}]", "5m"))).await;
    r.start_load(150);
    wait_until(
        Duration::from_secs(120),
        || r.phase() == "WaitingConfirmation",
        || format!("no gate: {}", r.canary_json()["status"]),
    );
    let c = wait_for_verdicts(&r.cluster, 2, Duration::from_secs(20));
    assert_eq!(c["status"]["phase"], "WaitingConfirmation", "the gate holds while ticks go on");
    let id = "promote@2026-01-01T00:00:00Z";
    r.cluster.kubectl_ok(&[
        "annotate",
        "canary",
        "web",
        "-n",
        "shop",
        &format!("shifter.dev/command={id}"),
        "--overwrite",
    ]);
    wait_until(
        Duration::from_secs(20),
        || r.canary_json()["status"]["currentStep"] == 1,
        || format!("promote ignored: {}", r.canary_json()["status"]),
    );
    assert_eq!(r.canary_json()["status"]["lastCommand"], id);
    r.cluster.kubectl_ok(&[
        "annotate",
        "canary",
        "web",
        "-n",
        "shop",
        "shifter.dev/command=abort@2026-01-01T00:00:01Z",
        "--overwrite",
    ]);
    let (phase, c) = r.wait_for_end(Duration::from_secs(20));
    assert_eq!(phase, "RolledBack");
    assert_eq!(condition(&c, "RolledBack")["reason"], "Aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_rollout_resumes_at_the_same_step() {
    let mut r =
        rollout_of(success_rate_only(canary_yaml("[{weight: 20}, {weight: 40, pause: 20s}, {weight: 60}]", "5m")))
            .await;
    r.start_load(150);
    wait_until(
        Duration::from_secs(120),
        || r.canary_json()["status"]["currentStep"] == 1,
        || format!("{}", r.canary_json()["status"]),
    );
    let before = r.canary_json()["status"].clone();
    r.controller.proc.kill();
    let killed_at = k8s_openapi::jiff::Timestamp::now().as_second();
    assert_eq!(
        r.split_weights().trim(),
        "web-v1=60 web-v2=40",
        "the split keeps the step's weight while the controller is down"
    );
    // Same identity and address, as a restarted pod behind the controller Service would have.
    let restarted = r.cluster.start_controller_on("controller", r.controller.grpc.port(), r.controller.admin.port());
    // The new process's own tick: a verdict stamped after the old process was gone.
    wait_until(
        Duration::from_secs(30),
        || last_verdict_at(&r.canary_json()) > killed_at,
        || format!("the restarted controller never judged: {}", r.canary_json()["status"]),
    );
    let after = r.canary_json()["status"].clone();
    assert_eq!(after["currentStep"], before["currentStep"], "{after}");
    assert_eq!(after["canaryWeight"], 40);
    assert_eq!(after["rolloutStartedAt"], before["rolloutStartedAt"], "the same rollout continues");
    assert!(after["history"].as_array().unwrap().len() >= before["history"].as_array().unwrap().len(), "history kept");
    let (phase, _) = r.wait_for_end(Duration::from_secs(150));
    assert_eq!(phase, "Succeeded");
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_called_once_and_a_failing_pre_rollout_hook_rolls_back() {
    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let (stable, canary) = (Backend::start("web-v1").await, Backend::start("web-v2").await);
    let (good_hook, bad_hook) = (Backend::start("smoke").await, Backend::start("broken").await);
    bad_hook.set_failure_rate(1.0);
    for (svc, port) in [("web", stable.port()), ("web-v1", stable.port()), ("web-v2", canary.port())] {
        cluster.service("shop", svc, Some(port));
    }
    let _controller = cluster.start_controller("controller");
    let hooks = |url: SocketAddrLike| {
        format!("  webhooks:\n  - {{name: smoke, type: pre-rollout, url: 'http://{url}/', timeout: 2s}}\n")
    };
    // A pre-rollout hook that answers 200 runs once and lets the first step take traffic.
    cluster.apply(&format!("{}{}", canary_yaml("[{weight: 20}]", "5m"), hooks(good_hook.addr)));
    wait_until(
        Duration::from_secs(30),
        || split(&cluster).contains("web-v2=20"),
        || format!("split: {}", split(&cluster)),
    );
    wait_for_verdicts(&cluster, 2, Duration::from_secs(20));
    assert_eq!(good_hook.served(), 1, "a pre-rollout hook that succeeded is never called again");

    // A new canary whose pre-rollout hook answers 500 (retried, then a failed check) rolls back
    // without ever sending it traffic.
    cluster.apply(&format!(
        "{}{}",
        canary_yaml("[{weight: 20}]", "5m").replace("canary: web-v2", "canary: web-v1-broken"),
        hooks(bad_hook.addr)
    ));
    cluster.service("shop", "web-v1-broken", Some(canary.port()));
    wait_until(
        Duration::from_secs(40),
        || canary_phase(&cluster) == "RolledBack",
        || format!("phase {}", canary_phase(&cluster)),
    );
    let c: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "canary", "web", "-n", "shop", "-o", "json"])).unwrap();
    let rolled = condition(&c, "RolledBack");
    assert!(rolled["message"].as_str().unwrap().contains("smoke: HTTP 500"), "{rolled}");
    assert!(bad_hook.served() >= 3, "retried before counting a failure: {}", bad_hook.served());
    assert!(!split(&cluster).contains("web-v1-broken=20"), "no traffic moved: {}", split(&cluster));
}

type SocketAddrLike = std::net::SocketAddr;

fn split(cluster: &Cluster) -> String {
    let out = cluster.kubectl(&[
        "get",
        "ts",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={range .spec.backends[*]}{.service}={.weight} {end}",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn canary_phase(cluster: &Cluster) -> String {
    cluster.kubectl_ok(&["get", "canary", "web", "-n", "shop", "-o", "jsonpath={.status.phase}"])
}
