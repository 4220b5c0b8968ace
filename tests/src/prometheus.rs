//! A real Prometheus (Debian's `prometheus`) for the tests: its own free loopback port, config and
//! TSDB in the test's temporary directory, scraping proxies' admin `/metrics` every second.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Proc, free_port};

/// A running Prometheus; killed when dropped.
pub struct Prometheus {
    pub proc: Proc,
    pub addr: SocketAddr,
    targets: Vec<SocketAddr>,
}

impl Prometheus {
    /// Starts Prometheus scraping `http://<target>/metrics` for each of `targets` every second.
    /// Panics when the `prometheus` program is not installed: the tests that need it must not pass
    /// without it.
    pub fn start(dir: &Path, targets: &[SocketAddr]) -> Prometheus {
        let program = find_program("prometheus").unwrap_or_else(|| {
            panic!(
                "prometheus is not on PATH; run scripts/install-test-tools.sh (it installs Debian's `prometheus` \
                 package) before the end-to-end tests"
            )
        });
        let port = free_port();
        let home = dir.join(format!("prometheus-{port}"));
        std::fs::create_dir_all(home.join("data")).expect("prometheus data dir");
        let config = home.join("prometheus.yml");
        std::fs::write(&config, scrape_config(targets)).expect("prometheus config");
        let args: Vec<String> = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", home.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.tsdb.retention.time=1h".into(),
        ];
        let mut proc = Proc::spawn(&format!("prometheus-{port}"), dir, &program, &args, &[]);
        proc.wait_for_line("Server is ready to receive web requests", Duration::from_secs(60));
        Prometheus { proc, addr: SocketAddr::from(([127, 0, 0, 1], port)), targets: targets.to_vec() }
    }

    /// The base URL a Canary's `spec.analysis.provider.address` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until every target has been scraped successfully (`health: up` in /api/v1/targets).
    pub async fn wait_for_targets_up(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let health = self.target_health().await;
            let up = self.targets.iter().all(|t| health.iter().any(|(addr, h)| *addr == t.to_string() && h == "up"));
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not scrape every proxy in {timeout:?}: {health:?}\n{}",
                self.proc.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// (address, health) of each active scrape target.
    async fn target_health(&self) -> Vec<(String, String)> {
        let Ok(body) = self.get("/api/v1/targets?state=active").await else { return Vec::new() };
        body["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let addr = t["labels"]["instance"].as_str().unwrap_or_default().to_string();
                (addr, t["health"].as_str().unwrap_or_default().to_string())
            })
            .collect()
    }

    /// An instant query now; the value of the only series, or `None` when no series matches.
    pub async fn query_value(&self, promql: &str) -> Option<f64> {
        let body = self.get(&format!("/api/v1/query?query={}", encode(promql))).await.ok()?;
        let result = body["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{promql} returned several series: {result:?}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    async fn get(&self, path_and_query: &str) -> Result<Value, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        client.get(format!("{}{path_and_query}", self.url())).send().await?.error_for_status()?.json().await
    }

    /// Stops Prometheus as an outage would: SIGTERM, then SIGKILL if it lingers.
    pub fn stop(&mut self) {
        if !self.proc.terminate(Duration::from_secs(10)) {
            self.proc.kill();
        }
    }
}

fn scrape_config(targets: &[SocketAddr]) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n\
         - job_name: shifter-proxy\n  metrics_path: /metrics\n  static_configs:\n  - targets: [{}]\n",
        targets.join(", ")
    )
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Percent-encodes a query parameter value.
fn encode(v: &str) -> String {
    v.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        out
    })
}
