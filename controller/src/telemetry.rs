//! Per-backend request outcomes from proxies, aggregated per (namespace, service, backend) into
//! one-second buckets for the analysis engine, plus which snapshot each proxy runs.
//!
//! Memory is bounded: buckets older than [`RETENTION`] are dropped, and so are proxies that have
//! not reported for [`PROXY_STALE_AFTER`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shifter_proto::v1 as pb;

/// How far back windows are kept.
pub const RETENTION: Duration = Duration::from_secs(15 * 60);
/// A proxy that has not reported for this long no longer counts as connected for sync status.
pub const PROXY_STALE_AFTER: Duration = Duration::from_secs(10);

/// (namespace, apex service, backend service).
pub type BackendKey = (String, String, String);

/// Counts for one backend over some span of time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub requests: u64,
    pub failures: u64,
    pub failures_by_class: BTreeMap<String, u64>,
    /// Per-bucket latency counts, bounds as in [`shifter_proto::LATENCY_BOUNDS_MS`] plus +Inf.
    pub latency_counts: Vec<u64>,
}

impl Counts {
    fn add(&mut self, w: &pb::BackendWindow) {
        self.requests += w.requests;
        self.failures += w.failures;
        for (class, n) in &w.failures_by_class {
            *self.failures_by_class.entry(class.clone()).or_default() += n;
        }
        add_counts(&mut self.latency_counts, &w.latency_counts);
    }

    fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.failures += other.failures;
        for (class, n) in &other.failures_by_class {
            *self.failures_by_class.entry(class.clone()).or_default() += n;
        }
        add_counts(&mut self.latency_counts, &other.latency_counts);
    }
}

fn add_counts(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// Aggregated telemetry from every proxy connected to this replica (and relayed by others).
#[derive(Default)]
pub struct TelemetryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per backend: (unix second the window ended in, counts), oldest first.
    buckets: HashMap<BackendKey, VecDeque<(i64, Counts)>>,
    /// Per proxy id: when it last reported and the snapshot digest per authority it runs.
    proxies: HashMap<String, ProxyState>,
}

struct ProxyState {
    seen: Instant,
    applied: HashMap<String, (u64, String)>,
}

impl TelemetryStore {
    /// Records one window from a proxy.
    pub fn record(&self, window: &pb::TelemetryWindow) {
        let second = window.end_unix_ms.div_euclid(1000);
        let horizon = second - RETENTION.as_secs() as i64;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for b in &window.backends {
            let key = (b.namespace.clone(), b.service.clone(), b.backend.clone());
            let series = inner.buckets.entry(key).or_default();
            match series.iter_mut().rev().find(|(s, _)| *s == second) {
                Some((_, counts)) => counts.add(b),
                None => {
                    let mut counts = Counts::default();
                    counts.add(b);
                    let at = series.iter().rposition(|(s, _)| *s < second).map_or(0, |i| i + 1);
                    series.insert(at, (second, counts));
                }
            }
            while series.front().is_some_and(|(s, _)| *s < horizon) {
                series.pop_front();
            }
        }
        if let Some(proxy) = &window.proxy {
            let state = inner
                .proxies
                .entry(proxy.id.clone())
                .or_insert_with(|| ProxyState { seen: Instant::now(), applied: HashMap::new() });
            state.seen = Instant::now();
            if !window.applied.is_empty() {
                state.applied =
                    window.applied.iter().map(|a| (a.authority.clone(), (a.version, a.digest.clone()))).collect();
            }
        }
        inner.proxies.retain(|_, p| p.seen.elapsed() < RETENTION);
    }

    /// Sums a backend's windows that ended in seconds `[from, to)` (unix seconds).
    pub fn counts(&self, key: &BackendKey, from: i64, to: i64) -> Counts {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = Counts::default();
        for (_, c) in inner.buckets.get(key).into_iter().flatten().filter(|(s, _)| *s >= from && *s < to) {
            total.merge(c);
        }
        total
    }

    /// Backends with data for an apex service.
    pub fn backends(&self, namespace: &str, service: &str) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> =
            inner.buckets.keys().filter(|(ns, s, _)| ns == namespace && s == service).map(|k| k.2.clone()).collect();
        names.sort();
        names
    }

    /// Authorities that recently reporting proxies run a snapshot for.
    pub fn authorities(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<String> = inner
            .proxies
            .values()
            .filter(|p| p.seen.elapsed() < PROXY_STALE_AFTER)
            .flat_map(|p| p.applied.keys().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// For an authority: (proxies running `digest`, proxies reporting that authority at all),
    /// counting only proxies heard from recently.
    pub fn sync(&self, authority: &str, digest: &str) -> (u32, u32) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut in_sync = 0;
        let mut total = 0;
        for p in inner.proxies.values().filter(|p| p.seen.elapsed() < PROXY_STALE_AFTER) {
            if let Some((_, d)) = p.applied.get(authority) {
                total += 1;
                if d == digest {
                    in_sync += 1;
                }
            }
        }
        (in_sync, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(proxy: &str, end_ms: i64, backend: &str, requests: u64, failures: u64) -> pb::TelemetryWindow {
        pb::TelemetryWindow {
            proxy: Some(pb::ProxyIdentity { id: proxy.into(), ..Default::default() }),
            start_unix_ms: end_ms - 1000,
            end_unix_ms: end_ms,
            backends: vec![pb::BackendWindow {
                namespace: "shop".into(),
                service: "web".into(),
                backend: backend.into(),
                requests,
                failures,
                failures_by_class: [("5xx".to_string(), failures)].into(),
                latency_counts: vec![requests, 0, 0],
                ..Default::default()
            }],
            applied: vec![pb::AppliedSnapshot {
                authority: "web.shop.svc.cluster.local:80".into(),
                version: 7,
                digest: "abc".into(),
            }],
        }
    }

    #[test]
    fn windows_from_several_proxies_add_up_per_backend_and_second() {
        let store = TelemetryStore::default();
        store.record(&window("a", 10_500, "web-v1", 10, 1));
        store.record(&window("b", 10_900, "web-v1", 5, 0));
        store.record(&window("a", 11_500, "web-v1", 7, 2));
        store.record(&window("a", 11_500, "web-v2", 3, 3));
        let key = ("shop".to_string(), "web".to_string(), "web-v1".to_string());
        let c = store.counts(&key, 10, 11);
        assert_eq!((c.requests, c.failures, c.latency_counts[0]), (15, 1, 15));
        let c = store.counts(&key, 10, 12);
        assert_eq!((c.requests, c.failures, c.failures_by_class["5xx"]), (22, 3, 3));
        assert_eq!(store.backends("shop", "web"), vec!["web-v1", "web-v2"]);
    }

    #[test]
    fn old_windows_are_dropped() {
        let store = TelemetryStore::default();
        store.record(&window("a", 1_000, "web-v1", 10, 0));
        store.record(&window("a", 1_000 + RETENTION.as_millis() as i64 + 5_000, "web-v1", 1, 0));
        let key = ("shop".to_string(), "web".to_string(), "web-v1".to_string());
        assert_eq!(store.counts(&key, 0, 5).requests, 0);
    }

    #[test]
    fn sync_counts_proxies_running_the_digest() {
        let store = TelemetryStore::default();
        store.record(&window("a", 1_000, "web-v1", 1, 0));
        let mut other = window("b", 1_000, "web-v1", 1, 0);
        other.applied[0].digest = "old".into();
        store.record(&other);
        assert_eq!(store.sync("web.shop.svc.cluster.local:80", "abc"), (1, 2));
        assert_eq!(store.sync("api.shop.svc.cluster.local:80", "abc"), (0, 0));
    }
}
