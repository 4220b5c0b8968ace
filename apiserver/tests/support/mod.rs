//! Shared test helpers: an in-process server on a free loopback port with its own data directory,
//! and a kube-rs client built from the kubeconfig it writes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use shifter_apiserver::{ApiServer, Config};

pub struct TestServer {
    pub server: ApiServer,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with a configuration adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let server = ApiServer::start(config).await.expect("server starts");
        TestServer { server, dir }
    }

    pub async fn client(&self) -> Client {
        client_for(self.server.kubeconfig_path()).await
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(self) -> TestServer {
        let TestServer { server, dir } = self;
        server.shutdown().await;
        let server = start_in(dir.path()).await;
        TestServer { server, dir }
    }

    /// A raw HTTPS client trusting the server's CA, for requests kube-rs cannot express.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.server.ca_pem().as_bytes()).expect("CA"))
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }
}

fn test_config(dir: &Path) -> Config {
    let mut config = Config::ephemeral(dir);
    config.bookmark_every = Duration::from_millis(200);
    config
}

pub async fn start_in(dir: &Path) -> ApiServer {
    ApiServer::start(test_config(dir)).await.expect("server starts")
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig parses");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig usable");
    Client::try_from(config).expect("client")
}

/// Applies shifter's CRDs (TrafficSplit, HTTPRouteGroup, Canary) through the API.
pub async fn install_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for crd in shifter_crds::all_crds() {
        api.create(&Default::default(), &crd).await.expect("CRD created");
    }
}

pub fn split(name: &str, backends: &[(&str, i64)]) -> Value {
    json!({
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {"name": name},
        "spec": {
            "service": "web",
            "backends": backends.iter().map(|(s, w)| json!({"service": s, "weight": w})).collect::<Vec<_>>(),
        },
    })
}

pub fn data_dir_of(t: &TestServer) -> PathBuf {
    t.dir.path().to_path_buf()
}

/// Sends `body` as `ct` with the server's token; returns the status and the JSON body (Null when
/// there is none).
pub async fn send(
    t: &TestServer,
    method: reqwest::Method,
    path: &str,
    ct: &str,
    body: impl Into<reqwest::Body>,
) -> (reqwest::StatusCode, Value) {
    let resp = t
        .http()
        .request(method, t.url(path))
        .bearer_auth(t.server.token())
        .header("Content-Type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let code = resp.status();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// Property tests run 10,000 cases each; XorShift rather than the default ChaCha generator, which
/// dominates the run time in an unoptimised test build, and no regression files written into the
/// source tree.
pub fn props_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        failure_persistence: None,
        ..proptest::test_runner::Config::with_cases(10_000)
    }
}
