//! Bounded HTTP load through proxy gateways that remembers what each request got: which backend
//! answered (`x-backend`), and every failure with the time it was sent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// A request that got no 2xx answer.
#[derive(Debug, Clone)]
pub struct Failure {
    pub sent: Instant,
    pub what: String,
}

#[derive(Default)]
struct Tally {
    answered_by: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<Vec<Failure>>,
}

/// Load running in the background; stops when dropped.
pub struct Load {
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
    tally: Arc<Tally>,
}

impl Load {
    /// About `rps` requests per second, round robin over `gateways`, for at most ten minutes.
    pub fn start(gateways: &[SocketAddr], rps: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let (flag, gateways, t) = (stop.clone(), gateways.to_vec(), tally.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps.max(1)));
            let deadline = Instant::now() + Duration::from_secs(600);
            for gateway in gateways.iter().cycle() {
                if flag.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    return;
                }
                tick.tick().await;
                let (client, t, url) = (client.clone(), t.clone(), format!("http://{gateway}/"));
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let what = match client.get(url).send().await {
                        Ok(r) if r.status().is_success() => {
                            let by = r.headers().get("x-backend").and_then(|v| v.to_str().ok()).unwrap_or("?");
                            *t.answered_by.lock().expect("tally").entry(by.to_string()).or_default() += 1;
                            return;
                        }
                        Ok(r) => {
                            let status = r.status();
                            format!("HTTP {status}: {}", r.text().await.unwrap_or_default().trim())
                        }
                        Err(e) => format!("{e}"),
                    };
                    t.failures.lock().expect("tally").push(Failure { sent, what });
                });
            }
        });
        Load { stop, task, tally }
    }

    /// Successful answers from `backend` so far.
    pub fn answered_by(&self, backend: &str) -> u64 {
        self.tally.answered_by.lock().expect("tally").get(backend).copied().unwrap_or(0)
    }

    /// Successful answers so far, per backend.
    pub fn answers(&self) -> BTreeMap<String, u64> {
        self.tally.answered_by.lock().expect("tally").clone()
    }

    /// Every failed request so far.
    pub fn failures(&self) -> Vec<Failure> {
        self.tally.failures.lock().expect("tally").clone()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
        self.task.abort();
    }
}
