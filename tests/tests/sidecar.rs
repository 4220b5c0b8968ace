//! Mesh mode on one machine: the "pods" are network namespaces this test creates — a client pod
//! and a server side — joined by a veth pair. Every address is assigned inside them and the
//! ClusterIP range is routed onto that pair; nothing routes out. The client pod gets what an
//! injected pod gets: `shifter init`'s iptables rules and `shifter proxy --sidecar` running under
//! its own UID. The client itself is curl, unmodified, calling the Service's ClusterIP.
//!
//! Most tests give the sidecar its routing for the ClusterIP in a static file. One runs the real
//! control plane — API server, controller, kubectl — on the client pod's loopback (a thread of the
//! test enters that namespace), and splits by a TrafficSplit, then an HTTPRoute, then with the
//! controller gone.

use std::path::Path;
use std::time::Duration;

use shifter_tests::cluster::ControllerProc;
use shifter_tests::grpc::{grpc_backend_on, grpc_call, grpc_client};
use shifter_tests::netns::Netns;
use shifter_tests::netns::NsRuntime;
use shifter_tests::{Backend, Cluster, Proc, shifter_bin};

const CLUSTER_IP: &str = "10.96.0.10";
const CLIENT_IP: &str = "10.77.0.2";
const V1_IP: &str = "10.77.0.3";
const V2_IP: &str = "10.77.0.4";
/// A server no Service has: traffic to it must pass through untouched.
const OTHER_IP: &str = "10.77.0.5";
const BACKEND_PORT: &str = "8080";
/// The UID `shifter init` exempts by default, which the sidecar runs as.
const PROXY_UID: &str = "2102";
/// A Service on a plain TCP protocol, and its port.
const TCP_CLUSTER_IP: &str = "10.96.0.13";
const TCP_PORT: &str = "7000";
/// A gRPC Service, and the port its servers and the Service use.
const GRPC_CLUSTER_IP: &str = "10.96.0.14";
const GRPC_PORT: &str = "9090";

struct Mesh {
    client: Netns,
    server: Netns,
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
fn routing_yaml() -> String {
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
  - authority: "{TCP_CLUSTER_IP}:{TCP_PORT}"
    namespace: shop
    service: lines
    routes:
      - name: default
        backends:
          - {{ service: lines-v1, weight: 1, endpoints: ["{V1_IP}:{TCP_PORT}"] }}
  - authority: "{GRPC_CLUSTER_IP}:{GRPC_PORT}"
    namespace: shop
    service: api
    routes:
      - name: default
        backends:
          - {{ service: api-v1, weight: 80, endpoints: ["{V1_IP}:{GRPC_PORT}"] }}
          - {{ service: api-v2, weight: 20, endpoints: ["{V2_IP}:{GRPC_PORT}"] }}
"#
    )
}

/// The two namespaces joined by a veth pair, the backends serving on the server side, and a
/// directory the sidecar (running as PROXY_UID) can read.
fn topology() -> (Netns, Netns, tempfile::TempDir, Vec<Proc>) {
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
    readable(dir.path());
    let backend = env!("CARGO_BIN_EXE_test-backend");
    let mut procs = Vec::new();
    for (name, ip) in [("web-v1", V1_IP), ("web-v2", V2_IP), ("other", OTHER_IP)] {
        let mut p = in_netns(&server, name, dir.path(), &[backend, name, BACKEND_PORT, ip]);
        p.wait_for_line("serving on", Duration::from_secs(20));
        procs.push(p);
    }
    let mut lines = in_netns(&server, "lines-v1", dir.path(), &[backend, "lines-v1", TCP_PORT, V1_IP, "tcp-echo"]);
    lines.wait_for_line("serving on", Duration::from_secs(20));
    procs.push(lines);
    (client, server, dir, procs)
}

/// Lets the sidecar, running as PROXY_UID, read `path` (and list it, if a directory).
fn readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `shifter proxy --sidecar` with `source` flags, as PROXY_UID in `ns`, then `shifter init`.
fn start_sidecar(ns: &Netns, dir: &Path, source: &[&str]) -> Proc {
    let shifter = shifter_bin().to_string_lossy().into_owned();
    let uid = [format!("--reuid={PROXY_UID}"), format!("--regid={PROXY_UID}")];
    let mut argv = vec!["setpriv", &uid[0], &uid[1], "--clear-groups", &shifter, "proxy", "--sidecar"];
    argv.extend_from_slice(source);
    let mut sidecar = in_netns(ns, "sidecar", dir, &argv);
    sidecar.wait_for_line("inbound listening", Duration::from_secs(20));
    ns.exec_ok(&[&shifter, "init"]);
    sidecar
}

fn mesh() -> Mesh {
    let (client, server, dir, mut procs) = topology();
    let routing = dir.path().join("routing.yaml");
    std::fs::write(&routing, routing_yaml()).unwrap();
    readable(&routing);
    procs.push(start_sidecar(&client, dir.path(), &["--config", &routing.to_string_lossy()]));
    Mesh { client, server, dir, _procs: procs }
}

/// `count` requests with curl in `ns` (one connection, kept alive), returning the `x-backend`
/// header of each response.
fn curl(ns: &Netns, url: &str, count: usize, extra: &[&str]) -> Vec<String> {
    let mut argv = vec!["curl", "-sS", "--max-time", "60", "-o", "/dev/null", "-w", "%header{x-backend}\\n"];
    argv.extend_from_slice(extra);
    let urls = format!("{url}/[1-{count}]");
    argv.push(&urls);
    ns.exec_ok(&argv).lines().map(str::to_string).collect()
}

impl Mesh {
    fn curl(&self, url: &str, count: usize, extra: &[&str]) -> Vec<String> {
        curl(&self.client, url, count, extra)
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
fn grpc_calls_to_a_cluster_ip_are_split_by_the_sidecar() {
    let mesh = mesh();
    let servers = NsRuntime::start(&mesh.server);
    let at = |ip: &str| format!("{ip}:{GRPC_PORT}").parse().unwrap();
    servers.run(grpc_backend_on("api-v1", at(V1_IP)));
    servers.run(grpc_backend_on("api-v2", at(V2_IP)));
    // The client: 1,000 calls on one HTTP/2 connection, from inside the client pod.
    let client = NsRuntime::start(&mesh.client);
    let answers = client.run(async move {
        let mut c = grpc_client(format!("{GRPC_CLUSTER_IP}:{GRPC_PORT}").parse().unwrap());
        let mut out = Vec::new();
        for _ in 0..1000 {
            out.push(grpc_call(&mut c).await);
        }
        out
    });
    let v1 = answers.iter().filter(|a| *a == "api-v1").count();
    let v2 = answers.iter().filter(|a| *a == "api-v2").count();
    assert_eq!(
        v1 + v2,
        1000,
        "every call answered by a backend: {:?}",
        answers.iter().find(|a| !a.starts_with("api-"))
    );
    assert!((v1 as f64 / 1000.0 - 0.8).abs() <= 0.04, "api-v1 answered {v1} of 1,000 gRPC calls, want 800 ± 40");
}

#[test]
fn a_plain_tcp_protocol_to_a_cluster_ip_goes_through_whole() {
    let mesh = mesh();
    let script =
        format!("exec 3<>/dev/tcp/{TCP_CLUSTER_IP}/{TCP_PORT}; printf 'PING one\\nPING two\\n' >&3; head -n 2 <&3");
    let said = mesh.client.exec_ok(&["bash", "-c", &script]);
    assert_eq!(said, "lines-v1 PING one\nlines-v1 PING two\n");
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

/// The objects the controller tests apply: the Service `web` on the ClusterIP and its two versions
/// with their pods' addresses, serving on `port`.
fn control_plane_objects(port: &str) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\n{}",
        service_yaml("web", CLUSTER_IP, port)
    );
    for (name, cluster_ip, pod_ip) in [("web-v1", "10.96.0.11", V1_IP), ("web-v2", "10.96.0.12", V2_IP)] {
        yaml.push_str(&format!(
            "---\n{}---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-a, namespace: shop, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {port}, protocol: TCP}}]\nendpoints:\n- addresses: [{pod_ip}]\n  conditions: {{ready: true}}\n",
            service_yaml(name, cluster_ip, port)
        ));
    }
    yaml
}

const SPLIT_80_20: &str = "apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {name: web, namespace: shop}\nspec:\n  service: web\n  backends:\n  - {service: web-v1, weight: 80}\n  - {service: web-v2, weight: 20}\n";

/// A Service in `shop` on `cluster_ip`, port 80 to the pods' `port`.
fn service_yaml(name: &str, cluster_ip: &str, port: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  clusterIP: {cluster_ip}\n  clusterIPs: [{cluster_ip}]\n  ports: [{{name: http, port: 80, targetPort: {port}}}]\n"
    )
}

const ROUTE_70_30: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs:
  - {group: "", kind: Service, name: web, port: 80}
  rules:
  - backendRefs:
    - {name: web-v1, port: 80, weight: 70}
    - {name: web-v2, port: 80, weight: 30}
"#;

/// Starts the controller on `cluster` and a sidecar in `client` connected to it. Call from a
/// thread inside `client`.
fn controller_and_sidecar(cluster: &Cluster, client: &Netns) -> (ControllerProc, Proc) {
    let controller = cluster.start_controller("controller");
    for path in [
        cluster.dir.path().to_path_buf(),
        controller.ca.parent().unwrap().parent().unwrap().to_path_buf(),
        controller.ca.parent().unwrap().to_path_buf(),
        controller.ca.clone(),
        controller.token_file.clone(),
    ] {
        readable(&path);
    }
    let endpoint = format!("https://localhost:{}", controller.grpc.port());
    let (ca, token) =
        (controller.ca.to_string_lossy().into_owned(), controller.token_file.to_string_lossy().into_owned());
    let sidecar = start_sidecar(
        client,
        cluster.dir.path(),
        &["--controller", &endpoint, "--controller-ca", &ca, "--controller-token-file", &token],
    );
    (controller, sidecar)
}

/// Calls until web-v1's share of 200 is within 0.1 of `v1` (a new split has reached the sidecar),
/// then measures 1,000.
fn settle_and_measure(ns: &Netns, url: &str, v1: f64, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let probe = curl(ns, url, 200, &[]);
        if (share(&probe, "web-v1") - v1).abs() <= 0.1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: the split never reached the sidecar: {probe:?}");
    }
    assert_split(&curl(ns, url, 1000, &[]), v1, what);
}

#[test]
fn the_controller_programs_sidecars_by_cluster_ip_and_they_keep_routing_without_it() {
    let (client, _server, _dir, _backends) = topology();
    let url = format!("http://{CLUSTER_IP}");
    // The control plane on the client pod's loopback: a thread inside its namespace starts it,
    // so the API server, the controller, kubectl and the sidecar all meet there.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                client.enter_current_thread();
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let cluster = Cluster::start().await;
                    cluster.apply(&control_plane_objects(BACKEND_PORT));
                    cluster.apply(SPLIT_80_20);
                    let (mut controller, _sidecar) = controller_and_sidecar(&cluster, &client);
                    settle_and_measure(&client, &url, 0.8, "TrafficSplit 80/20");
                    cluster.apply(ROUTE_70_30);
                    settle_and_measure(&client, &url, 0.7, "HTTPRoute 70/30");
                    // Fail-static: with the controller gone the sidecar keeps its last routing.
                    controller.proc.kill();
                    assert_split(&curl(&client, &url, 1000, &[]), 0.7, "HTTPRoute 70/30, controller stopped");
                    // An address the sidecar never asked about still passes through.
                    let other = curl(&client, &format!("http://{OTHER_IP}:{BACKEND_PORT}"), 5, &[]);
                    assert!(other.len() == 5 && other.iter().all(|b| b == "other"), "{other:?}");
                });
            })
            .join()
            .unwrap();
    });
}

/// Where the Canary tests' in-process backends serve (the test-backend processes hold 8080).
const CANARY_PORT: &str = "8081";

fn canary_yaml() -> &'static str {
    "apiVersion: shifter.dev/v1alpha1\nkind: Canary\nmetadata: {name: web, namespace: shop}\nspec:\n  service: web\n  stable: web-v1\n  canary: web-v2\n  steps: [{weight: 30}, {weight: 60}]\n  progressDeadline: 6m\n  analysis:\n    interval: 1s\n    minRequests: 50\n    minDuration: 2s\n"
}

/// A Canary whose only traffic is what a meshed client sends to the ClusterIP, judged from the
/// sidecar's telemetry: `failure_rate` of the canary's requests fail. Returns the phase it ended
/// in and the requests each version served.
fn canary_through_a_sidecar(failure_rate: f64) -> (String, u64, u64) {
    let (client, server, _dir, _procs) = topology();
    let address = |ip: &str| format!("{ip}:{CANARY_PORT}").parse().unwrap();
    let servers = NsRuntime::start(&server);
    let (v1, v2) = (address(V1_IP), address(V2_IP));
    let backends = [servers.run(Backend::start_on("web-v1", v1)), servers.run(Backend::start_on("web-v2", v2))];
    backends[1].set_failure_rate(failure_rate);
    let url = format!("http://{CLUSTER_IP}/");
    let phase = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                client.enter_current_thread();
                let runtime =
                    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
                runtime.block_on(async {
                    let cluster = Cluster::start().await;
                    cluster.apply(&control_plane_objects(CANARY_PORT));
                    let (_controller, _sidecar) = controller_and_sidecar(&cluster, &client);
                    // The meshed client: about 200 calls a second to the ClusterIP, through the sidecar.
                    let load = tokio::spawn(async move {
                        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                        let mut tick = tokio::time::interval(Duration::from_millis(5));
                        loop {
                            tick.tick().await;
                            let (http, url) = (http.clone(), url.clone());
                            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status()) });
                        }
                    });
                    cluster.apply(canary_yaml());
                    let phase = wait_for_canary_phase(&cluster, Duration::from_secs(400));
                    load.abort();
                    phase
                })
            })
            .join()
            .unwrap()
    });
    (phase, backends[0].served(), backends[1].served())
}

/// The Canary's phase once it is Succeeded or RolledBack; panics after `timeout`.
fn wait_for_canary_phase(cluster: &Cluster, timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let phase = cluster.kubectl_ok(&["get", "canary", "web", "-n", "shop", "-o", "jsonpath={.status.phase}"]);
        if phase == "Succeeded" || phase == "RolledBack" {
            return phase;
        }
        assert!(std::time::Instant::now() < deadline, "the Canary never ended; phase {phase:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_healthy_canary_is_promoted_on_the_sidecars_telemetry() {
    let (phase, stable, canary) = canary_through_a_sidecar(0.0);
    assert_eq!(phase, "Succeeded");
    assert!(stable > 100 && canary > 100, "both versions served the meshed client: {stable}, {canary}");
}

#[test]
fn a_canary_failing_5_percent_is_rolled_back_on_the_sidecars_telemetry() {
    let (phase, _, canary) = canary_through_a_sidecar(0.05);
    assert_eq!(phase, "RolledBack");
    assert!(canary > 0, "the canary served the meshed client before the rollback");
}
