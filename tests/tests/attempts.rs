//! Failed attempts end to end: the real API server, controller and proxy, a stable backend and a
//! canary whose only endpoint is its own process. When that process dies, the proxy retries each
//! refused dial on a fresh pick (usually stable), so clients hardly notice; but every refused dial
//! is a failed trial of the canary, reported in telemetry beside the responses, and the default
//! analysis rolls the canary back within seconds of the death, naming those failures.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use shifter_analysis::{AnalyzerConfig, Target};
use shifter_proxy::Settings;
use shifter_tests::backend_process::BackendProcess;
use shifter_tests::cluster::{ControllerProc, ProxyProc, service_yaml, wait_until};
use shifter_tests::load::Load;
use shifter_tests::{Backend, Cluster};

const AUTHORITY: &str = "web.shop.svc.cluster.local:80";
const TEST_BACKEND: &str = env!("CARGO_BIN_EXE_test-backend");

/// Load through the gateway, requests per second.
const RPS: u64 = 100;
/// The canary's share while it dies.
const CANARY_WEIGHT: u32 = 10;
/// The time a rollback may take after the death, as the requirement puts it.
const REQUIRED: Duration = Duration::from_secs(30);
/// The controller judges telemetry this old and older (it may still be arriving before).
const FLUSH_DELAY: Duration = Duration::from_secs(2);
/// From the controller's status write to this test seeing it through kubectl.
const STATUS_VISIBLE: Duration = Duration::from_secs(2);

/// How long after the death the rollback may take, from the settings it depends on, for a canary
/// already under analysis. The first refused dials land in a telemetry window that closes within
/// one `telemetry_interval`; its second is judged once `FLUSH_DELAY` has passed after it ends (one
/// more second). A tick that catches only the first instants after the death may hold too few
/// failed attempts to decide, but the next one, an `interval` later (each Canary ticks on its own
/// schedule), holds a whole interval of them, far more than the evidence needs (see the analysis test
/// `a_dead_canary_endpoint_fails_on_its_first_tick_by_its_failed_attempts`). Then the status
/// write has to become visible.
fn rollback_bound() -> Duration {
    let telemetry = Settings::default().telemetry_interval;
    let target =
        Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() };
    let interval = Duration::from_secs(AnalyzerConfig::defaults(target).interval_s as u64);
    telemetry + Duration::from_secs(1) + FLUSH_DELAY + 2 * interval + STATUS_VISIBLE
}

fn canary_json(cluster: &Cluster) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", "canary", "web", "-n", "shop", "-o", "json"])).unwrap()
}

fn condition<'a>(canary: &'a Value, type_: &str) -> &'a Value {
    canary["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Sum of the samples of `name` on a proxy's `/metrics` whose labels contain all of `labels`.
async fn proxy_metric(proxy: &ProxyProc, name: &str, labels: &[&str]) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", proxy.admin)).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_only_endpoint_dies_at_10_percent_is_rolled_back_on_its_failed_attempts() {
    let bound = rollback_bound();
    assert!(bound <= REQUIRED, "the default settings allow {bound:?}, more than the {REQUIRED:?} required");

    let stable = Backend::start("web-v1").await;
    let dir = tempfile::tempdir().unwrap();
    let mut canary = BackendProcess::start(dir.path(), Path::new(TEST_BACKEND), "web-v2");
    let cluster = Cluster::start().await;
    let mut objects = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    for (name, port) in [("web", stable.port()), ("web-v1", stable.port()), ("web-v2", canary.port)] {
        objects.push_str(&format!("---\n{}", service_yaml("shop", name, &[port])));
    }
    cluster.apply(&objects);
    let controller: ControllerProc = cluster.start_controller("controller");
    let proxy = cluster.start_proxy("proxy", AUTHORITY, &controller);
    let load = Load::start(&[proxy.gateway], RPS);
    // The default analysis; the step holds long enough for the canary to die during it.
    cluster.apply(&format!(
        "apiVersion: shifter.dev/v1alpha1\nkind: Canary\nmetadata: {{name: web, namespace: shop}}\nspec:\n  service: web\n  stable: web-v1\n  canary: web-v2\n  steps: [{{weight: {CANARY_WEIGHT}, pause: 10m}}]\n  progressDeadline: 15m\n"
    ));
    let diagnostics = || {
        format!(
            "canary status (with its verdict history): {}\ncontroller log (end):\n{}",
            canary_json(&cluster)["status"],
            tail(&controller.proc.output(), 40)
        )
    };
    // The canary serves its share and is being judged (a verdict at this step) when it dies.
    wait_until(
        Duration::from_secs(90),
        || {
            let status = &canary_json(&cluster)["status"];
            status["canaryWeight"] == CANARY_WEIGHT
                && status["lastVerdict"].is_object()
                && load.answered_by("web-v2") >= 20
        },
        || format!("the canary was never judged while taking traffic: {:?}\n{}", load.answers(), diagnostics()),
    );

    canary.crash();
    let died = Instant::now();
    let mut rolled_back = None;
    while rolled_back.is_none() {
        let c = canary_json(&cluster);
        if c["status"]["phase"] == "RolledBack" {
            rolled_back = Some((died.elapsed(), c));
        } else {
            assert!(died.elapsed() < bound, "not rolled back {bound:?} after the canary died\n{}", diagnostics());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let (took, c) = rolled_back.unwrap();
    println!(
        "rolled back {:.1} s after the canary's only endpoint died (bound {:.1} s): {}",
        took.as_secs_f64(),
        bound.as_secs_f64(),
        c["status"]["lastVerdict"]["reason"]
    );

    let rolled = condition(&c, "RolledBack");
    assert_eq!(rolled["reason"], "AnalysisFailed", "{rolled}");
    let message = rolled["message"].as_str().unwrap_or_default();
    assert!(message.contains("success-rate: canary "), "{message}");
    assert!(
        message.contains("attempts that failed before reaching the backend and were retried elsewhere"),
        "{message}"
    );
    // The proxy counted the refused dials as the canary's, apart from the responses clients got.
    let refused =
        proxy_metric(&proxy, "request_attempt_failures_total", &["dst_service=\"web-v2\"", "reason=\"refused\""]).await;
    assert!(refused > 0, "no refused attempt counted for web-v2");
    // Clients barely noticed: a request failed only when every attempt landed on the dead canary
    // (or was on its connections when it died).
    let failed = load.failures().into_iter().filter(|f| f.sent > died).count() as f64;
    let served = load.answered_by("web-v1") as f64;
    assert!(failed <= 0.01 * served.max(1.0) + 5.0, "{failed} of {served} requests failed after the death");
}
