//! The demo's users: requests at a steady rate through the gateway proxy, with what each version
//! answered recorded per second so the live view can show success rate and p99 per version.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::backends::VERSION_HEADER;

/// Seconds of history the live view summarises.
const WINDOW_SECONDS: usize = 5;
/// Most requests in flight; beyond it a tick is skipped and counted, never queued.
const MAX_IN_FLIGHT: usize = 512;

/// One second of answers from one version.
#[derive(Default, Clone)]
struct Second {
    requests: u64,
    failures: u64,
    latencies_ms: Vec<f64>,
}

/// Answers per version, newest second last, plus totals for the summary.
#[derive(Default)]
struct Record {
    seconds: VecDeque<BTreeMap<String, Second>>,
    totals: BTreeMap<String, (u64, u64)>,
    /// Requests that got no answer from any version (the proxy or the connection failed).
    unanswered: u64,
    skipped: u64,
}

/// Recent traffic of one version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionView {
    pub version: String,
    pub rps: f64,
    pub success_percent: f64,
    pub p99_ms: f64,
}

/// A running load generator.
pub struct Load {
    record: Arc<Mutex<Record>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Sends `rps` GET requests per second to `gateway` until dropped.
    pub fn start(gateway: SocketAddr, rps: u32) -> Load {
        let record = Arc::new(Mutex::new(Record::default()));
        record.lock().expect("fresh lock").seconds.push_back(BTreeMap::new());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .build()
            .expect("a plain HTTP client builds");
        let url = format!("http://{gateway}/");
        let sender = {
            let record = record.clone();
            tokio::spawn(async move {
                let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
                let mut tick = tokio::time::interval(Duration::from_secs(1) / rps.max(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        record.lock().expect("record lock").skipped += 1;
                        continue;
                    };
                    let (client, url, record) = (client.clone(), url.clone(), record.clone());
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let answer = client.get(&url).send().await;
                        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                        let mut r = record.lock().expect("record lock");
                        match answer {
                            Ok(resp) => match resp.headers().get(VERSION_HEADER).and_then(|v| v.to_str().ok()) {
                                Some(version) => r.note(version, resp.status().is_server_error(), elapsed_ms),
                                None => r.unanswered += 1,
                            },
                            Err(_) => r.unanswered += 1,
                        }
                        drop(slot);
                    });
                }
            })
        };
        let roller = {
            let record = record.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let mut r = record.lock().expect("record lock");
                    r.seconds.push_back(BTreeMap::new());
                    while r.seconds.len() > WINDOW_SECONDS + 1 {
                        r.seconds.pop_front();
                    }
                }
            })
        };
        Load { record, tasks: vec![sender, roller] }
    }

    /// Per-version figures over the last few complete seconds.
    pub fn recent(&self) -> Vec<VersionView> {
        let r = self.record.lock().expect("record lock");
        let complete: Vec<_> = r.seconds.iter().rev().skip(1).take(WINDOW_SECONDS).collect();
        let span = complete.len().max(1) as f64;
        let mut merged: BTreeMap<&str, Second> = BTreeMap::new();
        for second in &complete {
            for (version, s) in second.iter() {
                let m = merged.entry(version).or_default();
                m.requests += s.requests;
                m.failures += s.failures;
                m.latencies_ms.extend_from_slice(&s.latencies_ms);
            }
        }
        merged
            .into_iter()
            .map(|(version, mut s)| VersionView {
                version: version.to_string(),
                rps: s.requests as f64 / span,
                success_percent: 100.0 * (s.requests - s.failures) as f64 / s.requests.max(1) as f64,
                p99_ms: quantile(&mut s.latencies_ms, 0.99),
            })
            .collect()
    }

    /// Requests and failures per version since the start, and requests nobody answered.
    pub fn totals(&self) -> (BTreeMap<String, (u64, u64)>, u64) {
        let r = self.record.lock().expect("record lock");
        (r.totals.clone(), r.unanswered)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Record {
    fn note(&mut self, version: &str, failed: bool, latency_ms: f64) {
        let second = self.seconds.back_mut().expect("at least one second is open");
        let s = second.entry(version.to_string()).or_default();
        s.requests += 1;
        s.failures += u64::from(failed);
        s.latencies_ms.push(latency_ms);
        let t = self.totals.entry(version.to_string()).or_default();
        t.0 += 1;
        t.1 += u64::from(failed);
    }
}

/// The `q` quantile (nearest rank) of `values`; 0 when empty.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantile() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert_eq!(quantile(&mut v, 0.5), 50.0);
        assert_eq!(quantile(&mut [], 0.99), 0.0);
        assert_eq!(quantile(&mut [7.0], 0.99), 7.0);
    }

    #[test]
    fn recent_figures_cover_complete_seconds_only() {
        let mut r = Record::default();
        r.seconds.push_back(BTreeMap::new());
        for i in 0..100 {
            r.note("web-v1", i == 0, f64::from(i));
        }
        r.seconds.push_back(BTreeMap::new());
        r.note("web-v1", true, 1000.0); // the open second is not shown yet
        let load = Load { record: Arc::new(Mutex::new(r)), tasks: Vec::new() };
        let views = load.recent();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].rps, 100.0);
        assert_eq!(views[0].success_percent, 99.0);
        assert_eq!(views[0].p99_ms, 98.0);
        assert_eq!(load.totals().0["web-v1"], (101, 2));
    }
}
