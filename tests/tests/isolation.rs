//! One bad object, one slow dependency or one stale leader must not stop shifter for everyone:
//! real API server, controller and proxy processes, with the fault made real — an object stored
//! past every check, a webhook that never answers, a leader frozen with SIGSTOP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use shifter_tests::cluster::{ControllerProc, wait_until};
use shifter_tests::load::Load;
use shifter_tests::{Backend, Cluster};

const OVERFLOW: &str = "9999999999999999999999s";

/// A Canary for apex `service` (stable `<service>-v1`, canary `<service>-v2`) judged by an
/// absolute success-rate guard, so a healthy one is promoted as soon as its steps allow.
fn canary(ns: &str, service: &str, interval: &str, steps: &str, extra: &str) -> String {
    format!(
        "apiVersion: shifter.dev/v1alpha1\nkind: Canary\nmetadata: {{name: {service}, namespace: {ns}}}\nspec:\n  service: {service}\n  stable: {service}-v1\n  canary: {service}-v2\n  steps: {steps}\n  progressDeadline: 10m\n  analysis:\n    interval: {interval}\n    minRequests: 20\n    minDuration: 2s\n    metrics: [{{name: success-rate, type: successRate, mode: absolute, minSuccessRate: 99}}]\n{extra}"
    )
}

/// An app with a stable and a canary version behind apex `service` in `ns`.
struct App {
    _stable: Backend,
    _canary: Backend,
}

async fn app(cluster: &Cluster, ns: &str, service: &str) -> App {
    let (stable, canary) =
        (Backend::start(&format!("{service}-v1")).await, Backend::start(&format!("{service}-v2")).await);
    cluster.service(ns, service, Some(stable.port()));
    cluster.service(ns, &format!("{service}-v1"), Some(stable.port()));
    cluster.service(ns, &format!("{service}-v2"), Some(canary.port()));
    App { _stable: stable, _canary: canary }
}

fn get(cluster: &Cluster, kind: &str, ns: &str, name: &str) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", kind, name, "-n", ns, "-o", "json"])).expect("JSON")
}

fn condition<'a>(object: &'a Value, type_: &str) -> &'a Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn seconds(time: &Value) -> i64 {
    time.as_str().and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok()).map_or(0, |t| t.as_second())
}

/// `kubectl apply` that must fail; returns what kubectl said.
fn apply_rejected(cluster: &Cluster, yaml: &str) -> String {
    let file = cluster.dir.path().join(format!("rejected-{}.yaml", rand_suffix()));
    std::fs::write(&file, yaml).expect("write manifest");
    let out = cluster.kubectl(&["apply", "-f", file.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "accepted: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_duration_is_rejected_by_the_server_and_by_the_schema_and_never_stops_other_canaries() {
    // 1. Through the embedded server's API: 422, naming the field.
    let mut cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let bad = canary("shop", "bad", OVERFLOW, "[{weight: 50}]", "");
    let said = apply_rejected(&cluster, &bad);
    assert!(said.contains("spec.analysis.interval"), "{said}");
    let client = cluster.client().await;
    let canaries: kube::Api<shifter_crds::Canary> = kube::Api::namespaced(client, "shop");
    let object: shifter_crds::Canary = serde_yaml::from_str(&bad).expect("manifest parses");
    match canaries.create(&kube::api::PostParams::default(), &object).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains("spec.analysis.interval"), "{status:?}");
        }
        other => panic!("expected 422, got {other:?}"),
    }

    // 2. With shifter's admission off, as on a real cluster: the CRD schema alone rejects it. A rule
    //    only admission knows (stable == canary) passes there, which shows admission is off.
    let schema_only = Cluster::start_with(&["--admission=none"]).await;
    schema_only.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let said = apply_rejected(&schema_only, &bad);
    assert!(said.contains("spec.analysis.interval"), "{said}");
    schema_only
        .apply(&canary("shop", "same", "10s", "[{weight: 50}]", "").replace("canary: same-v2", "canary: same-v1"));
    drop(schema_only);

    // 3. Stored past every check, it reaches the controller: reported on that Canary, while a
    //    healthy Canary beside it is promoted on schedule.
    let _bad_app = app(&cluster, "shop", "bad").await;
    cluster.apply(&canary("shop", "bad", "1s", "[{weight: 50}]", ""));
    cluster.edit_stored("shifter.dev/canaries", "shop", "bad", |c| {
        c["spec"]["analysis"]["interval"] = OVERFLOW.into();
        let generation = c["metadata"]["generation"].as_i64().unwrap_or(1);
        c["metadata"]["generation"] = (generation + 1).into();
    });
    assert_eq!(get(&cluster, "canary", "shop", "bad")["spec"]["analysis"]["interval"], OVERFLOW);
    let _good_app = app(&cluster, "shop", "good").await;
    let controller = cluster.start_controller("controller");
    let proxy = cluster.start_proxy("proxy", "good.shop.svc.cluster.local:80", &controller);
    let load = Load::start(&[proxy.gateway], 100);
    let started = Instant::now();
    cluster.apply(&canary("shop", "good", "1s", "[{weight: 20}, {weight: 50}]", ""));

    wait_until(
        Duration::from_secs(60),
        || condition(&get(&cluster, "canary", "shop", "bad"), "Progressing")["reason"] == "InvalidSpec",
        || format!("bad: {}\n{}", get(&cluster, "canary", "shop", "bad")["status"], controller.proc.output()),
    );
    let bad_now = get(&cluster, "canary", "shop", "bad");
    let message = condition(&bad_now, "Progressing")["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("spec.analysis.interval"), "{message}");
    let events = cluster.canary_events("shop");
    assert!(
        events.iter().any(|e| e.starts_with("InvalidSpec: ") && e.contains("spec.analysis.interval")),
        "{events:?}"
    );

    // Two steps of at least minDuration (2 s) each, judged every second: well inside a minute.
    wait_until(
        Duration::from_secs(60),
        || get(&cluster, "canary", "shop", "good")["status"]["phase"] == "Succeeded",
        || format!("good: {}\n{}", get(&cluster, "canary", "shop", "good")["status"], controller.proc.output()),
    );
    println!("healthy Canary promoted {:?} after it was applied", started.elapsed());
    load.stop();
    let health = reqwest::get(format!("http://{}/healthz", controller.admin)).await.expect("healthz");
    assert!(health.status().is_success(), "{:?}", health.text().await);
    let metrics = reqwest::get(format!("http://{}/metrics", controller.admin)).await.unwrap().text().await.unwrap();
    assert!(
        !metrics.lines().any(|l| l.starts_with("shifter_controller_task_panics_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// Accepts connections and reads requests, but never answers; counts connections.
async fn black_hole() -> (SocketAddr, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _held = socket;
                std::future::pending::<()>().await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_never_answers_delays_no_other_canary() {
    let cluster = Cluster::start().await;
    for ns in ["team-a", "team-b"] {
        cluster.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"));
    }
    let (_a, _b) = (app(&cluster, "team-a", "web").await, app(&cluster, "team-b", "api").await);
    let controller = cluster.start_controller("controller");
    let proxy = cluster.start_proxy("proxy", "api.team-b.svc.cluster.local:80", &controller);
    let load = Load::start(&[proxy.gateway], 100);

    // Team A's pre-rollout hook never answers; its budget is the longest allowed.
    let (hole, accepted) = black_hole().await;
    let hook = format!("  webhooks:\n  - {{name: smoke, type: pre-rollout, url: 'http://{hole}/', timeout: 60s}}\n");
    cluster.apply(&canary("team-a", "web", "2s", "[{weight: 50}]", &hook));
    wait_until(Duration::from_secs(30), || accepted.load(Ordering::SeqCst) > 0, || "the hook was never called".into());

    // Team B's Canary ticks on its own 2 s schedule the whole time the hook hangs.
    let interval = Duration::from_secs(2);
    cluster.apply(&canary("team-b", "api", "2s", "[{weight: 20}, {weight: 50}]", ""));
    wait_until(
        Duration::from_secs(90),
        || get(&cluster, "canary", "team-b", "api")["status"]["phase"] == "Succeeded",
        || {
            format!(
                "team B not promoted: {}\n{}",
                get(&cluster, "canary", "team-b", "api")["status"],
                controller.proc.output()
            )
        },
    );
    load.stop();
    // Every verdict of the rollout, from its history (kept in status, stamped by the tick).
    let b = get(&cluster, "canary", "team-b", "api");
    let verdicts: Vec<i64> =
        b["status"]["history"].as_array().into_iter().flatten().map(|v| seconds(&v["time"])).collect();
    let a = get(&cluster, "canary", "team-a", "web");
    assert_ne!(a["status"]["canaryWeight"], 50, "team A is still held by its hook: {}", a["status"]);
    assert!(verdicts.len() >= 3, "team B was judged on its way: {verdicts:?}");
    // Verdict times are whole seconds: one interval late at most, plus the rounding.
    let allowed = 2 * interval.as_secs() as i64 + 1;
    let worst = verdicts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(worst <= allowed, "team B waited {worst}s between verdicts (allowed {allowed}s): {verdicts:?}");
}

fn signal(controller: &ControllerProc, sig: &str) {
    let status = std::process::Command::new("kill").args([sig, &controller.proc.pid().to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill {sig} failed");
}

/// What shows writes: the Canary's and its split's resourceVersions and managedFields, and the
/// Events from `instance`.
struct Writes {
    versions: (Value, Value),
    canary_fields: Value,
    split_fields: Value,
    events: Vec<String>,
}

fn writes_seen(cluster: &Cluster, instance: &str) -> Writes {
    let (canary, split) = (get(cluster, "canary", "shop", "web"), get(cluster, "ts", "shop", "web"));
    let events: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "events.events.k8s.io", "-n", "shop", "-o", "json"]))
            .expect("JSON");
    let from_instance = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reportingInstance"] == instance)
        .map(|e| e["metadata"]["name"].as_str().unwrap_or_default().to_string())
        .collect();
    Writes {
        versions: (canary["metadata"]["resourceVersion"].clone(), split["metadata"]["resourceVersion"].clone()),
        canary_fields: canary["metadata"]["managedFields"].clone(),
        split_fields: split["metadata"]["managedFields"].clone(),
        events: from_instance,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_writes_nothing_when_it_wakes() {
    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let _app = app(&cluster, "shop", "web").await;
    let mut a = cluster.start_controller("controller-a");
    wait_until(
        Duration::from_secs(20),
        || cluster.lease_holder() == "controller-a",
        || "controller-a never led".into(),
    );
    let b = cluster.start_controller("controller-b");
    let proxy = cluster.start_proxy("proxy", "web.shop.svc.cluster.local:80", &b);
    let load = Load::start(&[proxy.gateway], 50);
    // A long pause keeps the rollout in one step; every 1 s tick writes a fresh verdict to status,
    // so a leader that believed it led would write within a second of waking.
    cluster.apply(&canary("shop", "web", "1s", "[{weight: 20, pause: 10m}]", ""));
    wait_until(
        Duration::from_secs(60),
        || get(&cluster, "canary", "shop", "web")["status"]["lastVerdict"]["time"].is_string(),
        || format!("no verdict from controller-a: {}", get(&cluster, "canary", "shop", "web")["status"]),
    );
    let a_events = writes_seen(&cluster, "controller-a").events.len();
    assert!(a_events > 0, "controller-a recorded the rollout's start");

    signal(&a, "-STOP");
    let lease = shifter_controller::lease::LeaseConfig::new("default", "x");
    wait_until(
        lease.duration + lease.retry + Duration::from_secs(10),
        || cluster.lease_holder() == "controller-b",
        || "controller-b never took over".into(),
    );
    // The new leader acts: a verdict stamped after it took over.
    let took_over = k8s_openapi::jiff::Timestamp::now().as_second();
    wait_until(
        Duration::from_secs(30),
        || seconds(&get(&cluster, "canary", "shop", "web")["status"]["lastVerdict"]["time"]) > took_over,
        || format!("controller-b never judged: {}", b.proc.output()),
    );
    // Freeze the new leader too, so that any write from here on can only be controller-a's. The
    // snapshot is taken after a write of our own: anything B had already sent has landed by then.
    signal(&b, "-STOP");
    cluster.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: marker, namespace: shop}\ndata: {at: frozen}\n");
    let before = writes_seen(&cluster, "controller-a");
    assert_eq!(before.events.len(), a_events, "controller-a wrote nothing while frozen");

    signal(&a, "-CONT");
    // The positive signal that A is running again: its elector saw B's lease and stepped down.
    let line = a.proc.wait_for_line("leadership changed leader=false", Duration::from_secs(30));
    let after = writes_seen(&cluster, "controller-a");
    assert_eq!(after.canary_fields, before.canary_fields, "Canary written after waking ({line})");
    assert_eq!(after.split_fields, before.split_fields, "TrafficSplit written after waking ({line})");
    assert_eq!(after.events, before.events, "Events recorded after waking ({line})");
    assert_eq!(after.versions, before.versions, "something was written after waking ({line})");
    println!("controller-a woke, stepped down and wrote nothing: {line}");
    signal(&b, "-CONT");
    load.stop();
}
