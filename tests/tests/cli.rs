//! The `kubectl shift` verbs end to end: the real `kubectl-shift` (and `shifter`) executables against
//! the real API server, checked with the real kubectl. No controller runs here: tests write Canary
//! status themselves (`kubectl patch --subresource=status`) to play the controller's part of the
//! command protocol, and check what the CLI wrote for the controller to read.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use shifter_tests::live::{LiveChild, Stream};
use shifter_tests::{Cluster, shifter_bin};

const NS: &str = "shop";

/// A namespace with Services web, web-v1, web-v2, web-v3, the TrafficSplit `web` (90/10) and the
/// Canary `web` (web-v1 → web-v2).
async fn shop() -> Cluster {
    let cluster = Cluster::start().await;
    cluster.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"));
    for svc in ["web", "web-v1", "web-v2", "web-v3"] {
        cluster.service(NS, svc, None);
    }
    cluster.apply(&format!(
        "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {{name: web, namespace: {NS}}}\nspec:\n  service: web\n  backends:\n  - {{service: web-v1, weight: 90}}\n  - {{service: web-v2, weight: 10}}\n"
    ));
    cluster.apply(&format!(
        "apiVersion: shifter.dev/v1alpha1\nkind: Canary\nmetadata: {{name: web, namespace: {NS}}}\nspec: {{service: web, stable: web-v1, canary: web-v2}}\n"
    ));
    cluster
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

fn shift(cluster: &Cluster, args: &[&str]) -> Run {
    cluster.kubectl_shift(args).into()
}

/// `kubectl get KIND NAME -n shop -o json`.
fn get_json(cluster: &Cluster, kind: &str, name: &str) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", kind, name, "-n", NS, "-o", "json"])).expect("kubectl JSON")
}

fn split_weights(cluster: &Cluster) -> Vec<(String, i64)> {
    let split = get_json(cluster, "trafficsplits.v1alpha4.split.smi-spec.io", "web");
    split["spec"]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|b| (b["service"].as_str().unwrap().to_string(), b["weight"].as_i64().unwrap()))
        .collect()
}

fn command_annotation(cluster: &Cluster) -> String {
    let canary = get_json(cluster, "canary", "web");
    canary["metadata"]["annotations"]["shifter.dev/command"].as_str().unwrap_or("").to_string()
}

/// Plays the controller: merge-patches the Canary's status.
fn set_status(cluster: &Cluster, status: Value) {
    let patch = json!({ "status": status }).to_string();
    cluster.kubectl_ok(&["patch", "canary", "web", "-n", NS, "--subresource=status", "--type=merge", "-p", &patch]);
}

fn generation(cluster: &Cluster) -> i64 {
    get_json(cluster, "canary", "web")["metadata"]["generation"].as_i64().expect("generation")
}

/// The controller's status after promoting `canary` at the current generation.
fn succeeded(cluster: &Cluster, canary: &str) -> Value {
    json!({"phase": "Succeeded", "stable": canary, "canary": canary, "canaryWeight": 100,
           "observedGeneration": generation(cluster)})
}

fn assert_time_suffix(value: &str, verb: &str) {
    let time = value.strip_prefix(&format!("{verb}@")).unwrap_or_else(|| panic!("{value:?} is not {verb}@<time>"));
    assert!(time.parse::<k8s_openapi::jiff::Timestamp>().is_ok(), "{time:?} is not an RFC 3339 time");
}

#[tokio::test]
async fn weight_sets_the_split_and_bad_input_is_named() {
    let cluster = shop().await;

    let run = shift(&cluster, &["weight", "web", "web-v1=70", "web-v2=30", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("trafficsplit/web weights: web-v1=70 web-v2=30"), "{run:?}");
    assert_eq!(split_weights(&cluster), [("web-v1".into(), 70), ("web-v2".into(), 30)]);
    // Only the listed backend changes; the write is attributed to kubectl-shift.
    let run = shift(&cluster, &["weight", "web", "web-v2=0", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(split_weights(&cluster), [("web-v1".into(), 70), ("web-v2".into(), 0)]);
    let split: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "trafficsplit",
        "web",
        "-n",
        NS,
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    let managers: Vec<&str> =
        split["metadata"]["managedFields"].as_array().unwrap().iter().filter_map(|m| m["manager"].as_str()).collect();
    assert!(managers.contains(&"kubectl-shift"), "managers: {managers:?}");

    let run = shift(&cluster, &["weight", "web", "web-v9=5", "-n", NS]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("backend web-v9 is not in trafficsplit web (its backends: web-v1, web-v2)"), "{run:?}");

    let run = shift(&cluster, &["weight", "web", "web-v1=abc", "-n", NS]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("web-v1=abc") && run.stderr.contains("\"abc\""), "{run:?}");

    let run = shift(&cluster, &["weight", "nope", "web-v1=1", "-n", NS]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("trafficsplit \"nope\" not found in namespace \"shop\""), "{run:?}");

    // The API server's own validation comes through with its message and code.
    let run = shift(&cluster, &["weight", "web", "web-v1=0", "-n", NS]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("updating trafficsplit web") && run.stderr.contains("422"), "{run:?}");
    assert_eq!(split_weights(&cluster), [("web-v1".into(), 70), ("web-v2".into(), 0)], "unchanged after a refusal");
}

#[tokio::test]
async fn canary_commands_write_the_protocol_fields() {
    let cluster = shop().await;

    let run = shift(&cluster, &["promote", "web", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    let first = command_annotation(&cluster);
    assert_time_suffix(&first, "promote");
    assert!(run.stderr.contains("not in a rollout"), "an idle canary gets a note: {run:?}");

    let run = shift(&cluster, &["promote", "web", "--full", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_time_suffix(&command_annotation(&cluster), "promote-full");

    let run = shift(&cluster, &["abort", "web", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_time_suffix(&command_annotation(&cluster), "abort");

    let run = shift(&cluster, &["pause", "web", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(get_json(&cluster, "canary", "web")["spec"]["paused"], json!(true));

    let run = shift(&cluster, &["resume", "web", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    let canary = get_json(&cluster, "canary", "web");
    assert_ne!(canary["spec"]["paused"], json!(true), "{canary}");
    assert_time_suffix(&command_annotation(&cluster), "resume");

    let run = shift(&cluster, &["start", "web", "--canary", "web-v3", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(get_json(&cluster, "canary", "web")["spec"]["canary"], json!("web-v3"));

    // A command twice is two commands: the values differ.
    shift(&cluster, &["promote", "web", "-n", NS]);
    assert_ne!(command_annotation(&cluster), first);

    let run = shift(&cluster, &["promote", "nope", "-n", NS]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("canary \"nope\" not found in namespace \"shop\""), "{run:?}");

    // The API server refuses a canary equal to stable and says which field.
    let run = shift(&cluster, &["start", "web", "--canary", "web-v1", "-n", NS]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("spec.canary") && run.stderr.contains("422"), "{run:?}");
}

#[tokio::test]
async fn wait_exits_0_promoted_1_rolled_back_2_timeout_and_ignores_stale_results() {
    let cluster = shop().await;

    // The current canary already promoted at the current generation: done at once.
    set_status(&cluster, succeeded(&cluster, "web-v2"));
    let run = shift(&cluster, &["wait", "web", "-n", NS, "--timeout", "20s"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("canary/web promoted"), "{run:?}");

    // A new version: the Succeeded above is about web-v2, so it must not end the wait.
    shift(&cluster, &["start", "web", "--canary", "web-v3", "-n", NS]);
    let run = shift(&cluster, &["wait", "web", "-n", NS, "--timeout", "2s"]);
    assert_eq!(run.code, 2, "stale Succeeded must not satisfy wait: {run:?}");
    assert!(run.stderr.contains("timed out after 2s") && run.stderr.contains("web-v3"), "{run:?}");

    // The controller promotes web-v3 while wait watches. Each change is made only once wait has
    // printed what it saw of the previous state, so it cannot miss the step in between.
    let spawn_wait = || LiveChild::spawn(cluster.kubectl_shift_command(&["wait", "web", "-n", NS, "--timeout", "60s"]));
    let mut waiter = spawn_wait();
    waiter.wait_for(Stream::Stderr, "canary/web", 1, Duration::from_secs(20));
    let gen_now = generation(&cluster);
    set_status(
        &cluster,
        json!({"phase": "Progressing", "canary": "web-v3", "canaryWeight": 20, "currentStep": 1, "observedGeneration": gen_now}),
    );
    waiter.wait_for(Stream::Stderr, "Progressing: web-v3 at 20% (step 2/3)", 1, Duration::from_secs(20));
    set_status(&cluster, succeeded(&cluster, "web-v3"));
    let run: Run = waiter.finish().into();
    assert_eq!(run.code, 0, "{run:?}");

    // The next version is rolled back: exit 1 with the condition's message.
    shift(&cluster, &["start", "web", "--canary", "web-v2", "-n", NS]);
    let mut waiter = spawn_wait();
    waiter.wait_for(Stream::Stderr, "canary/web", 1, Duration::from_secs(20));
    set_status(
        &cluster,
        json!({"phase": "RolledBack", "canary": "web-v2", "stable": "web-v3", "canaryWeight": 0,
               "observedGeneration": generation(&cluster),
               "conditions": [{"type": "RolledBack", "status": "True", "reason": "FailedChecks",
                               "message": "canary success rate 95.0% vs stable 100.0%",
                               "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
    );
    let run: Run = waiter.finish().into();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("rolled back: FailedChecks: canary success rate 95.0% vs stable 100.0%"), "{run:?}");

    let run = shift(&cluster, &["wait", "nope", "-n", NS, "--timeout", "5s"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("canary \"nope\" not found"), "{run:?}");

    // Deleted while waiting: exit 2, not a hang until the timeout.
    let run = shift(&cluster, &["start", "web", "--canary", "web-v3", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut waiter = spawn_wait();
    waiter.wait_for(Stream::Stderr, "canary/web", 1, Duration::from_secs(20));
    cluster.kubectl_ok(&["delete", "canary", "web", "-n", NS]);
    let run: Run = waiter.finish().into();
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("canary \"web\" not found"), "{run:?}");
}

#[tokio::test]
async fn get_and_status_show_splits_and_canaries() {
    let cluster = shop().await;
    set_status(
        &cluster,
        json!({"phase": "Progressing", "stable": "web-v1", "canary": "web-v2", "canaryWeight": 20, "currentStep": 1,
               "observedGeneration": generation(&cluster),
               "lastVerdict": {"result": "Pass", "reason": "canary 100.00% vs stable 99.90% success", "time": "2026-01-01T00:00:00Z", "step": 1, "weight": 20},
               "backends": [{"service": "web-v1", "weight": 80, "rps": 40.0, "successRate": 99.9, "p99Ms": 25.0, "windowSeconds": 60},
                            {"service": "web-v2", "weight": 20, "rps": 10.0, "successRate": 100.0, "p99Ms": 30.0, "windowSeconds": 60}]}),
    );

    let run = shift(&cluster, &["get", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    let split = run.stdout.lines().find(|l| l.starts_with("trafficsplit/web")).expect("split line");
    assert!(split.contains("web-v1=90 web-v2=10"), "{run:?}");
    let canary = run.stdout.lines().find(|l| l.starts_with("canary/web")).expect("canary line");
    assert!(
        canary.contains("Progressing web-v2 at 20% (step 2/3)") && canary.contains("Pass: canary 100.00%"),
        "{run:?}"
    );

    let run = shift(&cluster, &["get", "-A"]);
    assert!(run.stdout.lines().any(|l| l.starts_with("shop") && l.contains("canary/web")), "{run:?}");

    let run = shift(&cluster, &["get", "-n", NS, "-o", "yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    let list: Value = serde_yaml::from_str(&run.stdout).expect("YAML list");
    let kinds: Vec<&str> = list["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["TrafficSplit", "Canary"]);

    let run = shift(&cluster, &["status", "web", "-n", NS, "-o", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let obj: Value = serde_json::from_str(&run.stdout).expect("status -o json is JSON");
    assert_eq!(obj["metadata"]["name"], "web");
    assert_eq!(obj["status"]["phase"], "Progressing");
    assert_eq!(obj["status"]["backends"][1]["p99Ms"], 30.0);

    let run = shift(&cluster, &["status", "web", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("traffic: web-v1 80% ") && run.stdout.contains(" 20% web-v2"), "{run:?}");
    assert!(run.stdout.contains("steps:   10 -> [20] -> 50 -> 100"), "{run:?}");
    assert!(run.stdout.contains("canary 100.00% vs stable 99.90% success"), "{run:?}");
    assert!(!run.stdout.contains('\x1b'), "no colour when stdout is not a terminal: {run:?}");

    let run = shift(&cluster, &["status", "nope", "-n", NS]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("canary \"nope\" not found"), "{run:?}");
}

#[tokio::test]
async fn status_watch_appends_a_view_per_change() {
    let cluster = shop().await;
    let mut watcher = LiveChild::spawn(cluster.kubectl_shift_command(&["status", "web", "-n", NS, "--watch"]));
    // Each change is made once the view of the one before was printed.
    watcher.wait_for(Stream::Stdout, "steps:", 1, Duration::from_secs(20));
    set_status(&cluster, json!({"phase": "Progressing", "canary": "web-v2", "canaryWeight": 10}));
    watcher.wait_for(Stream::Stdout, "steps:   [10] -> 20 -> 50 -> 100", 1, Duration::from_secs(20));
    set_status(&cluster, json!({"phase": "Progressing", "canary": "web-v2", "canaryWeight": 20, "currentStep": 1}));
    watcher.wait_for(Stream::Stdout, "steps:   10 -> [20] -> 50 -> 100", 1, Duration::from_secs(20));
    // Deleting the Canary ends the watch.
    cluster.kubectl_ok(&["delete", "canary", "web", "-n", NS]);
    let run: Run = tokio::task::spawn_blocking(move || watcher.finish()).await.expect("join").into();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("canary web was deleted"), "{run:?}");
}

#[tokio::test]
async fn kubectl_runs_shift_as_a_plugin_and_shifter_has_the_same_verbs() {
    let cluster = shop().await;
    let run: Run = cluster.kubectl_plugin(&["weight", "web", "web-v1=50", "web-v2=50", "-n", NS]).into();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(split_weights(&cluster), [("web-v1".into(), 50), ("web-v2".into(), 50)]);

    // Flags before the verb work too, as people type them with kubectl.
    let run: Run = cluster.kubectl_plugin(&["-n", NS, "get"]).into();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("trafficsplit/web") && run.stdout.contains("web-v1=50 web-v2=50"), "{run:?}");

    let run: Run = cluster.kubectl_plugin(&["wait", "nope", "-n", NS, "--timeout", "5s"]).into();
    assert_eq!(run.code, 2, "kubectl passes the plugin's exit code through: {run:?}");

    let kubeconfig = cluster.kubeconfig.display().to_string();
    let run: Run = std::process::Command::new(shifter_bin())
        .args(["get", "-n", NS, "--kubeconfig", &kubeconfig])
        .output()
        .expect("shifter runs")
        .into();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("canary/web"), "{run:?}");
    let run: Run = std::process::Command::new(shifter_bin()).arg("crds").output().expect("shifter crds").into();
    assert!(run.code == 0 && run.stdout.contains("canaries.shifter.dev"), "shifter crds still works");
    // One binary is enough: `shifter` linked under the plugin's name acts as the plugin.
    let link = cluster.dir.path().join("kubectl-shift");
    std::os::unix::fs::symlink(shifter_bin(), &link).expect("symlink");
    let run: Run = std::process::Command::new(&link)
        .args(["-n", NS, "get"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .expect("linked kubectl-shift runs")
        .into();
    assert!(run.code == 0 && run.stdout.contains("canary/web"), "{run:?}");
    let run: Run = cluster.kubectl_plugin(&["crds"]).into();
    assert!(run.code == 0 && run.stdout.contains("canaries.shifter.dev"), "{run:?}");
}

/// Polls until the Canary's `status.phase` is `phase`.
fn wait_for_phase(cluster: &Cluster, phase: &str) {
    shifter_tests::cluster::wait_until(
        Duration::from_secs(60),
        || get_json(cluster, "canary", "web")["status"]["phase"] == phase,
        || format!("canary never reached {phase}: {}", get_json(cluster, "canary", "web")["status"]),
    );
}

#[tokio::test]
async fn the_real_controller_acts_on_abort_promote_and_resume() {
    let cluster = shop().await;
    let _controller = cluster.start_controller("controller");
    // No traffic flows, so analysis never passes: the rollout holds at its first step.
    wait_for_phase(&cluster, "Progressing");

    let run = shift(&cluster, &["abort", "web", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = shift(&cluster, &["wait", "web", "-n", NS, "--timeout", "60s"]);
    assert_eq!(run.code, 1, "abort rolls back and wait says so: {run:?}");
    assert!(run.stdout.contains("canary/web rolled back"), "{run:?}");

    // A new version; a manual weight change pauses it, resume hands control back, promote --full ends it.
    let run = shift(&cluster, &["start", "web", "--canary", "web-v3", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    wait_for_phase(&cluster, "Progressing");
    let run = shift(&cluster, &["weight", "web", "web-v1=50", "web-v3=50", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("canary web drives this split"), "{run:?}");
    wait_for_phase(&cluster, "Paused");
    let run = shift(&cluster, &["resume", "web", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    wait_for_phase(&cluster, "Progressing");
    let run = shift(&cluster, &["promote", "web", "--full", "-n", NS]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = shift(&cluster, &["wait", "web", "-n", NS, "--timeout", "60s"]);
    assert_eq!(run.code, 0, "promote --full ends the rollout: {run:?}");
    let status = shift(&cluster, &["status", "web", "-n", NS]);
    assert!(status.stdout.contains("Succeeded") && status.stdout.contains("[100]"), "{status:?}");
}
