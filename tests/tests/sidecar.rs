//! Mesh mode on one machine: the "pods" are network namespaces this test creates — a client pod
//! and a server side — joined by a veth pair. Every address is assigned inside them and the
//! ClusterIP range is routed onto that pair; nothing routes out. The client pod gets what an
//! injected pod gets: `shifter init`'s iptables rules and `shifter proxy --sidecar` running under
//! its own UID. The client itself is curl, unmodified, calling the Service's ClusterIP.
//!
//! The sidecar here reads its routing for the ClusterIP from a static file; how the controller
//! maps a ClusterIP to its Service's routing is tested over gRPC (`controller/tests/grpc.rs`).

use std::path::Path;
use std::time::Duration;

use shifter_tests::netns::Netns;
use shifter_tests::{Proc, shifter_bin};

const CLUSTER_IP: &str = "10.96.0.10";
const CLIENT_IP: &str = "10.77.0.2";
const V1_IP: &str = "10.77.0.3";
const V2_IP: &str = "10.77.0.4";
/// A server no Service has: traffic to it must pass through untouched.
const OTHER_IP: &str = "10.77.0.5";
const BACKEND_PORT: &str = "8080";
/// The UID `shifter init` exempts by default, which the sidecar runs as.
const PROXY_UID: &str = "2102";

struct Mesh {
    client: Netns,
    _server: Netns,
    dir: tempfile::TempDir,
    _procs: Vec<Proc>,
}

fn in_netns(ns: &Netns, name: &str, dir: &Path, argv: &[&str]) -> Proc {
    let mut args = vec!["netns".to_string(), "exec".to_string(), ns.name.clone()];
    args.extend(argv.iter().map(|a| a.to_string()));
    Proc::spawn(name, dir, Path::new("ip"), &args, &[])
}

/// The routing the sidecar has for the ClusterIP: 80/20 between v1 and v2, and everything with
/// `x-canary: 1` to v2.
fn routing() -> String {
    format!(
        r#"authorities:
  - authority: "{CLUSTER_IP}:80"
    namespace: shop
    service: web
    routes:
      - name: canary-header
        matches:
          - headers: {{ x-canary: "1" }}
        backends:
          - {{ service: web-v2, weight: 1, endpoints: ["{V2_IP}:{BACKEND_PORT}"] }}
      - name: default
        backends:
          - {{ service: web-v1, weight: 80, endpoints: ["{V1_IP}:{BACKEND_PORT}"] }}
          - {{ service: web-v2, weight: 20, endpoints: ["{V2_IP}:{BACKEND_PORT}"] }}
"#
    )
}

fn mesh() -> Mesh {
    let client = Netns::new("cli");
    let server = Netns::new("srv");
    client.exec_ok(&["ip", "link", "add", "c-eth", "type", "veth", "peer", "name", "s-eth", "netns", &server.name]);
    client.exec_ok(&["ip", "addr", "add", &format!("{CLIENT_IP}/24"), "dev", "c-eth"]);
    client.exec_ok(&["ip", "link", "set", "c-eth", "up"]);
    // The ClusterIP range goes onto the pod network, as a node routes it; never out of the test.
    client.exec_ok(&["ip", "route", "add", "10.96.0.0/16", "dev", "c-eth"]);
    for ip in [V1_IP, V2_IP, OTHER_IP] {
        server.exec_ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "s-eth"]);
    }
    server.exec_ok(&["ip", "link", "set", "s-eth", "up"]);

    let dir = tempfile::tempdir().unwrap();
    // The sidecar runs as PROXY_UID and must read its routing file.
    std::fs::write(dir.path().join("routing.yaml"), routing()).unwrap();
    let open = |p: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    open(dir.path(), 0o755);
    open(&dir.path().join("routing.yaml"), 0o644);

    let backend = env!("CARGO_BIN_EXE_test-backend");
    let mut procs = Vec::new();
    for (name, ip) in [("web-v1", V1_IP), ("web-v2", V2_IP), ("other", OTHER_IP)] {
        let mut p = in_netns(&server, name, dir.path(), &[backend, name, BACKEND_PORT, ip]);
        p.wait_for_line("serving on", Duration::from_secs(20));
        procs.push(p);
    }
    let shifter = shifter_bin().to_string_lossy().into_owned();
    let routing = dir.path().join("routing.yaml").to_string_lossy().into_owned();
    let uid = [format!("--reuid={PROXY_UID}"), format!("--regid={PROXY_UID}")];
    let mut sidecar = in_netns(
        &client,
        "sidecar",
        dir.path(),
        &["setpriv", &uid[0], &uid[1], "--clear-groups", &shifter, "proxy", "--sidecar", "--config", &routing],
    );
    sidecar.wait_for_line("inbound listening", Duration::from_secs(20));
    procs.push(sidecar);
    client.exec_ok(&[&shifter, "init"]);
    Mesh { client, _server: server, dir, _procs: procs }
}

impl Mesh {
    /// `count` requests with curl in the client pod (one connection, kept alive), returning the
    /// `x-backend` header of each response.
    fn curl(&self, url: &str, count: usize, extra: &[&str]) -> Vec<String> {
        let mut argv = vec!["curl", "-sS", "--max-time", "60", "-o", "/dev/null", "-w", "%header{x-backend}\\n"];
        argv.extend_from_slice(extra);
        let urls = format!("{url}/[1-{count}]");
        argv.push(&urls);
        let out = self.client.exec_ok(&argv);
        out.lines().map(str::to_string).collect()
    }

    /// The same with a new curl, and so a new connection, per call: curl 7.88 cannot reuse an
    /// HTTP/2 prior-knowledge connection (its second request on one fails with a framing error,
    /// against any server).
    fn curl_each(&self, url: &str, count: usize, extra: &str) -> Vec<String> {
        let script = format!(
            "for i in $(seq {count}); do curl -sS --max-time 10 -o /dev/null -w '%header{{x-backend}}\n' {extra} {url}/$i; done"
        );
        self.client.exec_ok(&["sh", "-c", &script]).lines().map(str::to_string).collect()
    }

    fn sidecar_metrics(&self) -> String {
        self.client.exec_ok(&["curl", "-sS", "http://127.0.0.1:4191/metrics"])
    }
}

fn share(answers: &[String], backend: &str) -> f64 {
    answers.iter().filter(|a| a.as_str() == backend).count() as f64 / answers.len() as f64
}

fn assert_split(answers: &[String], v1: f64, protocol: &str) {
    assert_eq!(answers.len(), 1000, "{protocol}: every call answered: {answers:?}");
    let got = share(answers, "web-v1");
    assert!((got - v1).abs() <= 0.04, "{protocol}: web-v1 got {got:.3} of calls to the ClusterIP, want {v1} ± 0.04");
    assert!((share(answers, "web-v1") + share(answers, "web-v2") - 1.0).abs() < 1e-9, "{answers:?}");
}

#[test]
fn an_unmodified_client_calling_a_cluster_ip_is_split_by_its_sidecar() {
    let mesh = mesh();
    let url = format!("http://{CLUSTER_IP}");
    assert_split(&mesh.curl(&url, 1000, &[]), 0.8, "HTTP/1.1");
    assert_split(&mesh.curl_each(&url, 1000, "--http2-prior-knowledge"), 0.8, "h2c");
    let canary = mesh.curl(&url, 50, &["-H", "x-canary: 1"]);
    assert!(canary.len() == 50 && canary.iter().all(|b| b == "web-v2"), "header-matched calls: {canary:?}");
    // The sidecar saw and measured them (its own connections to the backends were not redirected
    // back to it, or nothing would have been answered).
    let metrics = mesh.sidecar_metrics();
    assert!(metrics.contains("backend=\"web-v1\"") || metrics.contains("dst_service=\"web-v1\""), "{metrics}");
}

#[test]
fn traffic_to_an_address_no_service_has_passes_through_untouched() {
    let mesh = mesh();
    let answers = mesh.curl(&format!("http://{OTHER_IP}:{BACKEND_PORT}"), 20, &[]);
    assert!(answers.len() == 20 && answers.iter().all(|b| b == "other"), "{answers:?}");
    let metrics = mesh.sidecar_metrics();
    let passed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("proxy_passthrough_connections_total "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(passed >= 1, "the sidecar did not see the connection pass: {metrics}");
    let _ = &mesh.dir;
}
