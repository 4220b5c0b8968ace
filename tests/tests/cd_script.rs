//! `examples/cluster/cd-pipeline.sh` against the real API server, kubectl and `kubectl shift`: it
//! deploys the rendered version, points the Canary at it, and turns the verdict into its exit code
//! (0 promoted, 1 rolled back, 2 no verdict in time, after aborting, 3 never started). No controller
//! runs: the test writes the Canary's status to play the controller's part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shifter_tests::{Cluster, kubectl_shift_bin};

const NS: &str = "shop";

/// The version template the test deploys: what the walk-through's template renders, minus the
/// Deployment (the embedded API server runs no workloads), plus the image in a ConfigMap to check.
const TEMPLATE: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-${VERSION}
  namespace: shop
data:
  image: ${IMAGE}
---
apiVersion: v1
kind: Service
metadata:
  name: web-${VERSION}
  namespace: shop
spec:
  selector: {app: web, version: ${VERSION}}
  ports:
  - {name: http, port: 80, targetPort: 8080}
";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster/cd-pipeline.sh")
}

/// The shop namespace with Services web, web-v1 and web-v2 and, unless `with_canary` is false, the
/// walk-through's own Canary.
async fn shop(with_canary: bool) -> Cluster {
    let cluster = Cluster::start().await;
    cluster.apply(&format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"));
    for svc in ["web", "web-v1", "web-v2"] {
        cluster.service(NS, svc, None);
    }
    if with_canary {
        let canary = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster/app/canary.yaml");
        cluster.kubectl_ok(&["apply", "-f", canary.to_str().unwrap()]);
    }
    std::fs::write(cluster.dir.path().join("version.yaml"), TEMPLATE).unwrap();
    cluster
}

/// Starts the script with kubectl-shift on PATH, bound to this cluster.
fn pipeline(cluster: &Cluster, args: &[&str]) -> Child {
    let plugin_dir = kubectl_shift_bin().parent().unwrap().to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(std::iter::once(plugin_dir).chain(std::env::split_paths(&path))).unwrap();
    let template = cluster.dir.path().join("version.yaml");
    Command::new("bash")
        .arg(script())
        .args(["--template", template.to_str().unwrap()])
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs the pipeline script")
}

struct Finished {
    code: i32,
    stderr: String,
}

fn finish(child: Child) -> Finished {
    let out: Output = child.wait_with_output().expect("the script ends");
    Finished { code: out.status.code().unwrap_or(-1), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

fn canary(cluster: &Cluster) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", "canary", "web", "-n", NS, "-o", "json"])).unwrap()
}

/// Waits (bounded) until the script has pointed the Canary at `service`; returns its generation.
fn rollout_started(cluster: &Cluster, service: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = canary(cluster);
        if c["spec"]["canary"] == service {
            return c["metadata"]["generation"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "the script never set spec.canary to {service}: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Plays the controller: merge-patches the Canary's status.
fn set_status(cluster: &Cluster, status: Value) {
    let patch = json!({ "status": status }).to_string();
    cluster.kubectl_ok(&["patch", "canary", "web", "-n", NS, "--subresource=status", "--type=merge", "-p", &patch]);
}

#[tokio::test]
async fn a_promoted_rollout_passes_the_pipeline() {
    let cluster = shop(true).await;
    let child = pipeline(&cluster, &["--timeout", "60s", "web", "v3", "registry.example.com/web:3.0"]);
    let generation = rollout_started(&cluster, "web-v3");
    set_status(
        &cluster,
        json!({"phase": "Succeeded", "stable": "web-v3", "canary": "web-v3", "canaryWeight": 100,
               "observedGeneration": generation}),
    );
    let run = finish(child);
    assert_eq!(run.code, 0, "promoted is success:\n{}", run.stderr);
    assert!(run.stderr.contains("promoted: web-v3 takes all of web's traffic"), "{}", run.stderr);
    let image = cluster.kubectl_ok(&["get", "configmap", "web-v3", "-n", NS, "-o", "jsonpath={.data.image}"]);
    assert_eq!(image, "registry.example.com/web:3.0", "the template was rendered with the image");
    cluster.kubectl_ok(&["get", "service", "web-v3", "-n", NS]);

    // Running the pipeline again for the version that now serves everything changes nothing.
    let again = finish(pipeline(&cluster, &["web", "v3", "registry.example.com/web:3.0"]));
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("nothing to roll out"), "{}", again.stderr);
}

#[tokio::test]
async fn a_rolled_back_rollout_fails_the_pipeline_with_the_reason() {
    let cluster = shop(true).await;
    let child = pipeline(&cluster, &["--timeout", "60s", "web", "v3", "registry.example.com/web:3.0"]);
    let generation = rollout_started(&cluster, "web-v3");
    set_status(
        &cluster,
        json!({"phase": "RolledBack", "stable": "web-v1", "canary": "web-v3", "canaryWeight": 0,
               "observedGeneration": generation,
               "conditions": [{"type": "RolledBack", "status": "True", "reason": "AnalysisFailed",
                               "message": "success rate 91.0% vs stable 99.9%",
                               "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
    );
    let run = finish(child);
    assert_eq!(run.code, 1, "rolled back is failure:\n{}", run.stderr);
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert!(run.stderr.contains("success rate 91.0%"), "the reason is shown:\n{}", run.stderr);
}

#[tokio::test]
async fn no_verdict_in_time_aborts_the_rollout_and_fails_the_pipeline() {
    let cluster = shop(true).await;
    let run = finish(pipeline(&cluster, &["--timeout", "3s", "web", "v3", "registry.example.com/web:3.0"]));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("aborting so traffic returns to the stable version"), "{}", run.stderr);
    let command = canary(&cluster)["metadata"]["annotations"]["shifter.dev/command"].clone();
    assert!(command.as_str().is_some_and(|c| c.starts_with("abort@")), "kubectl shift abort was issued: {command}");

    // With --keep-on-timeout the rollout is left alone.
    let annotation_before = canary(&cluster)["metadata"]["annotations"].clone();
    let run = finish(pipeline(
        &cluster,
        &["--timeout", "2s", "--keep-on-timeout", "web", "v4", "registry.example.com/web:4"],
    ));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(canary(&cluster)["metadata"]["annotations"], annotation_before, "no abort with --keep-on-timeout");
}

#[tokio::test]
async fn a_pipeline_that_cannot_start_says_why_and_deploys_nothing() {
    let cluster = shop(false).await;
    let run = finish(pipeline(&cluster, &["web", "v3", "registry.example.com/web:3.0"]));
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot read canary shop/web") && run.stderr.contains("kubectl apply -f"),
        "{}",
        run.stderr
    );
    let services = cluster.kubectl_ok(&["get", "services", "-n", NS, "-o", "name"]);
    assert!(!services.contains("service/web-v3"), "nothing deployed: {services}");

    let run = finish(pipeline(&cluster, &["web", "V3", "registry.example.com/web:3.0"]));
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("VERSION 'V3' is not a DNS label"), "{}", run.stderr);
}

/// Deserialising into the k8s-openapi type and serialising back gives the same JSON: no unknown
/// field, no value of the wrong shape.
fn round_trips<T: k8s_openapi::serde::de::DeserializeOwned + k8s_openapi::serde::Serialize>(object: &Value) -> bool {
    serde_json::from_value::<T>(object.clone()).is_ok_and(|typed| &serde_json::to_value(typed).unwrap() == object)
}

#[test]
fn the_walk_through_manifests_are_valid_kubernetes_objects() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster");
    let mut kinds = Vec::new();
    for file in ["app/shop.yaml", "app/load.yaml", "app/version.yaml", "app/version-broken.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let text = text.replace("${VERSION}", "v3").replace("${IMAGE}", "registry.example.com/web:3.0");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let object: Value = k8s_openapi::serde::Deserialize::deserialize(doc).unwrap();
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            let valid = match kind.as_str() {
                "Namespace" => round_trips::<Namespace>(&object),
                "Service" => round_trips::<Service>(&object),
                "ConfigMap" => round_trips::<ConfigMap>(&object),
                "Deployment" => round_trips::<Deployment>(&object),
                _ => false,
            };
            assert!(valid, "{file}: {kind} {} is not a valid object", object["metadata"]["name"]);
            kinds.push(kind);
        }
    }
    assert_eq!(kinds.iter().filter(|k| *k == "Deployment").count(), 5, "web-v1, web-v2, load and two templates");
}
