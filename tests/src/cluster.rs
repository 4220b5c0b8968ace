//! A one-machine "cluster": the real `shifter apiserver` process, a kube client and kubectl bound to
//! its kubeconfig, plus helpers to start controllers and proxies against it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{Proc, kubectl_shift_bin, shifter_bin};

/// A free loopback port (bound then released; the race with other tests is negligible).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub apiserver: Proc,
    pub apiserver_port: u16,
    pub kubeconfig: PathBuf,
    /// Extra flags the API server runs with (kept across restarts).
    apiserver_args: Vec<String>,
}

/// A running controller process and what proxies need to reach it.
pub struct ControllerProc {
    pub proc: Proc,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub ca: PathBuf,
    pub token_file: PathBuf,
}

/// A running proxy process with one gateway listener.
pub struct ProxyProc {
    pub proc: Proc,
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
}

impl Cluster {
    /// Starts the API server and installs shifter's CRDs and the Gateway API route CRDs with kubectl.
    pub async fn start() -> Cluster {
        Cluster::start_with(&[]).await
    }

    /// As [`Cluster::start`], with extra `shifter apiserver` flags (e.g. `--admission=none`).
    pub async fn start_with(apiserver_args: &[&str]) -> Cluster {
        Cluster::start_inner(apiserver_args, true).await
    }

    /// As [`Cluster::start`], without the Gateway API route CRDs — a cluster that has never
    /// installed them.
    pub async fn start_without_gateway_api() -> Cluster {
        Cluster::start_inner(&[], false).await
    }

    async fn start_inner(apiserver_args: &[&str], gateway_api: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let apiserver_port = free_port();
        let apiserver_args: Vec<String> = apiserver_args.iter().map(|a| a.to_string()).collect();
        let (apiserver, kubeconfig) = start_apiserver(dir.path(), apiserver_port, &apiserver_args);
        let cluster = Cluster { dir, apiserver, apiserver_port, kubeconfig, apiserver_args };
        let crds = dir_file(cluster.dir.path(), "crds.yaml", &shifter_crds::crds_yaml());
        cluster.kubectl_ok(&["apply", "-f", crds.to_str().expect("utf-8 path")]);
        // The Gateway API route CRDs, as `shifter serve` installs them (a real cluster has
        // upstream's).
        if gateway_api {
            let gateway = dir_file(cluster.dir.path(), "gateway-crds.yaml", &shifter_crds::gateway_crds_yaml());
            cluster.kubectl_ok(&["apply", "-f", gateway.to_str().expect("utf-8 path")]);
        }
        cluster
    }

    /// Stops the API server (SIGTERM) and starts it again on the same data.
    pub fn restart_apiserver(&mut self) {
        self.apiserver.terminate(Duration::from_secs(10));
        let (proc, _) = start_apiserver(self.dir.path(), self.apiserver_port, &self.apiserver_args);
        self.apiserver = proc;
    }

    /// Stops the API server, changes one stored object with `edit` straight in its database — past
    /// every check a write through the API gets (schema, admission) — and starts it again. This is
    /// how an object that a real cluster let through (no shifter admission there) reaches shifter.
    // The store's closure returns the API server's own error type, large as it is.
    #[allow(clippy::result_large_err)]
    pub fn edit_stored(
        &mut self,
        resource: &str,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut serde_json::Value),
    ) {
        use shifter_apiserver::store::{Key, Store};
        assert!(self.apiserver.terminate(Duration::from_secs(10)), "the API server did not stop");
        {
            let store = Store::open(&self.dir.path().join("apiserver").join("state.redb"), 16).expect("store opens");
            let key = Key::new(resource, namespace, name);
            store
                .write(false, |txn| {
                    let mut object = txn.get(&key).unwrap_or_else(|| panic!("{resource} {namespace}/{name} is stored"));
                    edit(&mut object);
                    txn.put(key.clone(), object);
                    Ok(())
                })
                .expect("stored");
        }
        let (proc, _) = start_apiserver(self.dir.path(), self.apiserver_port, &self.apiserver_args);
        self.apiserver = proc;
    }

    /// Kills the API server (SIGKILL, as a crash would) and starts it again on the same data.
    pub fn crash_apiserver(&mut self) {
        self.apiserver.kill();
        let (proc, _) = start_apiserver(self.dir.path(), self.apiserver_port, &self.apiserver_args);
        self.apiserver = proc;
    }

    pub async fn client(&self) -> Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig");
        Client::try_from(config).expect("client")
    }

    /// Runs the real kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl is installed (scripts/install-test-tools.sh installs it)")
    }

    /// Runs kubectl and panics with its output when it fails; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `reason: note` of every Event in `ns` about a Canary, oldest first as the API lists them.
    pub fn canary_events(&self, ns: &str) -> Vec<String> {
        let out = self.kubectl_ok(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&out).expect("kubectl prints JSON");
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["regarding"]["kind"] == "Canary")
            .map(|e| {
                format!("{}: {}", e["reason"].as_str().unwrap_or_default(), e["note"].as_str().unwrap_or_default())
            })
            .collect()
    }

    /// Waits for Canary `ns/name` to reach a terminal phase (`Succeeded` or `RolledBack`) and
    /// returns the phase with the Canary's JSON; a timeout fails naming the status and `context()`
    /// (e.g. the controller's output).
    pub fn wait_for_canary_end(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        context: impl Fn() -> String,
    ) -> (String, serde_json::Value) {
        let deadline = Instant::now() + timeout;
        loop {
            let c: serde_json::Value =
                serde_json::from_str(&self.kubectl_ok(&["get", "canary", name, "-n", ns, "-o", "json"]))
                    .expect("kubectl prints JSON");
            let phase = c["status"]["phase"].as_str().unwrap_or_default().to_string();
            if phase == "Succeeded" || phase == "RolledBack" {
                return (phase, c);
            }
            assert!(Instant::now() < deadline, "rollout did not end in {timeout:?}: {}\n{}", c["status"], context());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Who holds the controller's leader Lease (the controllers here keep it in `default`).
    pub fn lease_holder(&self) -> String {
        let jsonpath = "jsonpath={.spec.holderIdentity}";
        let out = self.kubectl(&["get", "lease", "shifter-controller", "-n", "default", "-o", jsonpath]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs the real `kubectl-shift` plugin executable against this cluster (via `$KUBECONFIG`).
    pub fn kubectl_shift(&self, args: &[&str]) -> Output {
        self.kubectl_shift_command(args).output().expect("kubectl-shift runs")
    }

    /// A `kubectl-shift` command bound to this cluster, for tests that spawn it and act meanwhile.
    pub fn kubectl_shift_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_shift_bin());
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig).env("NO_COLOR", "1").stdin(Stdio::null());
        cmd
    }

    /// Runs `kubectl shift ARGS` through kubectl's plugin mechanism: the directory holding the built
    /// `kubectl-shift` goes first on PATH.
    pub fn kubectl_plugin(&self, args: &[&str]) -> Output {
        let dir = kubectl_shift_bin().parent().expect("binary has a directory").to_path_buf();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&path))).expect("PATH joins");
        Command::new("kubectl")
            .arg("shift")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl is installed (scripts/install-test-tools.sh installs it)")
    }

    /// `kubectl apply -f` of a YAML string.
    pub fn apply(&self, yaml: &str) -> String {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let file = dir_file(self.dir.path(), &format!("apply-{n}.yaml"), yaml);
        self.kubectl_ok(&["apply", "-f", file.to_str().expect("utf-8 path")])
    }

    /// A Service `name` in `ns` on port 80 (named http) whose one endpoint is 127.0.0.1:`backend_port`.
    pub fn service(&self, ns: &str, name: &str, backend_port: Option<u16>) {
        self.service_with_endpoints(ns, name, backend_port.as_slice());
    }

    /// A Service `name` in `ns` on port 80 (named http) with one ready endpoint 127.0.0.1:`port` per
    /// entry of `backend_ports` (see [`service_yaml`]).
    pub fn service_with_endpoints(&self, ns: &str, name: &str, backend_ports: &[u16]) {
        self.apply(&service_yaml(ns, name, backend_ports));
    }

    /// Starts `shifter controller` against this cluster.
    pub fn start_controller(&self, name: &str) -> ControllerProc {
        self.start_controller_on(name, free_port(), free_port())
    }

    /// Starts `shifter controller` on given ports, e.g. to restart one where proxies expect it.
    pub fn start_controller_on(&self, name: &str, grpc_port: u16, admin_port: u16) -> ControllerProc {
        let state = self.dir.path().join("controller-state");
        let args: Vec<String> = vec![
            "controller".into(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--grpc-listen".into(),
            format!("127.0.0.1:{grpc_port}"),
            "--admin-listen".into(),
            format!("127.0.0.1:{admin_port}"),
            "--state-dir".into(),
            state.display().to_string(),
            "--lease-namespace".into(),
            "default".into(),
            "--identity".into(),
            name.into(),
        ];
        let mut proc = Proc::spawn(name, self.dir.path(), &shifter_bin(), &args, &[("RUST_LOG", "info")]);
        proc.wait_for_line("controller started", Duration::from_secs(30));
        ControllerProc {
            proc,
            grpc: format!("127.0.0.1:{grpc_port}").parse().expect("addr"),
            admin: format!("127.0.0.1:{admin_port}").parse().expect("addr"),
            ca: state.join("tls").join("ca.crt"),
            token_file: state.join("token"),
        }
    }

    /// Starts `shifter proxy` with a gateway for `authority`, connected to `controller`.
    pub fn start_proxy(&self, name: &str, authority: &str, controller: &ControllerProc) -> ProxyProc {
        let gateway = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let listener = ["--gateway".to_string(), format!("{gateway}={authority}")];
        let (proc, admin) = self.spawn_proxy(name, controller, &listener, "info");
        ProxyProc { proc, gateway, admin }
    }

    /// Starts `shifter proxy` named `name` with `listener` flags (`--gateway …`, `--outbound …`),
    /// connected to `controller`, logging at `log`; returns once its admin port answers.
    pub fn spawn_proxy(
        &self,
        name: &str,
        controller: &ControllerProc,
        listener: &[String],
        log: &str,
    ) -> (Proc, SocketAddr) {
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut args: Vec<String> = vec![
            "proxy".into(),
            "--controller".into(),
            format!("https://localhost:{}", controller.grpc.port()),
            "--controller-ca".into(),
            controller.ca.display().to_string(),
            "--controller-token-file".into(),
            controller.token_file.display().to_string(),
            "--admin".into(),
            admin.to_string(),
            "--id".into(),
            name.into(),
        ];
        args.extend_from_slice(listener);
        let proc = Proc::spawn(name, self.dir.path(), &shifter_bin(), &args, &[("RUST_LOG", log)]);
        wait_until(
            Duration::from_secs(30),
            || std::net::TcpStream::connect(admin).is_ok(),
            || format!("proxy {name} admin port never opened:\n{}", proc.output()),
        );
        (proc, admin)
    }
}

/// A Service `name` in `ns` on port 80 (named http) and its EndpointSlices: one ready endpoint
/// 127.0.0.1:`port` per entry of `backend_ports`. Endpoints on one address with different ports need
/// a slice each (a slice's ports apply to all its endpoints): `<name>-1`, `<name>-2`, ...
pub fn service_yaml(ns: &str, name: &str, backend_ports: &[u16]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    );
    for (i, port) in backend_ports.iter().enumerate() {
        yaml.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{}\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: http, port: {port}, protocol: TCP}}]\nendpoints:\n- addresses: [127.0.0.1]\n  conditions: {{ready: true}}\n",
            i + 1
        ));
    }
    yaml
}

fn start_apiserver(dir: &Path, port: u16, extra: &[String]) -> (Proc, PathBuf) {
    let data = dir.join("apiserver");
    let kubeconfig = data.join("kubeconfig");
    let mut args: Vec<String> = vec![
        "apiserver".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn("apiserver", dir, &shifter_bin(), &args, &[]);
    proc.wait_for_line("listening on", Duration::from_secs(30));
    (proc, kubeconfig)
}

fn dir_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write file");
    path
}

/// Polls `ok` every 20 ms until it holds; panics with `why()` after `timeout`.
pub fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "{}", why());
        std::thread::sleep(Duration::from_millis(20));
    }
}
