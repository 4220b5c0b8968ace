//! Per-backend request outcomes from proxies, aggregated per (namespace, service, backend) into
//! one-second buckets for the analysis engine, plus which snapshot each proxy runs.
//!
//! Every window is checked first ([`validate`]) and refused whole when it breaks a rule. Memory is
//! bounded: buckets older than [`RETENTION`] are dropped, so is a series no proxy has reported
//! for [`SERIES_IDLE_AFTER`] (backends come and go with every rollout), and so are proxies that
//! have not reported for [`RETENTION`].

mod validate;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shifter_proto::v1 as pb;

pub use validate::{InvalidWindow, LATENCY_BUCKETS, Rejection, validate};

/// How far back windows are kept.
pub const RETENTION: Duration = Duration::from_secs(15 * 60);
/// A proxy that has not reported for this long no longer counts as connected for sync status.
pub const PROXY_STALE_AFTER: Duration = Duration::from_secs(10);
/// A series no window has mentioned for this long is dropped: all it holds is past the retention.
pub const SERIES_IDLE_AFTER: Duration = RETENTION;
/// How often idle series are looked for (on the path that records windows).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

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
    /// Attempts that failed before reaching the backend and were retried elsewhere (not in
    /// `requests`); see `BackendWindow.failed_attempts`.
    pub failed_attempts: u64,
    pub failed_attempts_by_reason: BTreeMap<String, u64>,
}

impl Counts {
    fn add(&mut self, w: &pb::BackendWindow) {
        self.requests = self.requests.saturating_add(w.requests);
        self.failures = self.failures.saturating_add(w.failures);
        add_keyed(&mut self.failures_by_class, &w.failures_by_class);
        add_counts(&mut self.latency_counts, &w.latency_counts);
        self.failed_attempts = self.failed_attempts.saturating_add(w.failed_attempts);
        add_keyed(&mut self.failed_attempts_by_reason, &w.failed_attempts_by_reason);
    }

    fn merge(&mut self, other: &Counts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.failures = self.failures.saturating_add(other.failures);
        add_keyed(&mut self.failures_by_class, &other.failures_by_class);
        add_counts(&mut self.latency_counts, &other.latency_counts);
        self.failed_attempts = self.failed_attempts.saturating_add(other.failed_attempts);
        add_keyed(&mut self.failed_attempts_by_reason, &other.failed_attempts_by_reason);
    }
}

fn add_keyed<'a>(into: &mut BTreeMap<String, u64>, from: impl IntoIterator<Item = (&'a String, &'a u64)>) {
    for (key, n) in from {
        let sum = into.entry(key.clone()).or_default();
        *sum = sum.saturating_add(*n);
    }
}

/// Adds per-bucket counts; `from` has been validated to [`LATENCY_BUCKETS`] entries.
fn add_counts(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a = a.saturating_add(*b);
    }
}

/// Aggregated telemetry from every proxy connected to this replica (and relayed by others).
pub struct TelemetryStore {
    inner: Mutex<Inner>,
}

impl Default for TelemetryStore {
    fn default() -> Self {
        TelemetryStore {
            inner: Mutex::new(Inner { series: HashMap::new(), proxies: HashMap::new(), swept: Instant::now() }),
        }
    }
}

struct Inner {
    series: HashMap<BackendKey, Series>,
    /// Per proxy id: when it last reported and the snapshot digest per authority it runs.
    proxies: HashMap<String, ProxyState>,
    /// When idle series were last looked for.
    swept: Instant,
}

/// One backend's buckets: (unix second the window ended in, counts), oldest first.
struct Series {
    buckets: VecDeque<(i64, Counts)>,
    /// When a window last mentioned this backend.
    reported: Instant,
}

struct ProxyState {
    seen: Instant,
    applied: HashMap<String, (u64, String)>,
}

fn now_unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl TelemetryStore {
    /// Checks one window from a proxy and records it; a window that breaks a rule is refused whole
    /// and changes nothing.
    pub fn record(&self, window: &pb::TelemetryWindow) -> Result<(), InvalidWindow> {
        validate(window, now_unix_ms())?;
        self.record_valid(window, Instant::now());
        Ok(())
    }

    /// Records a window that passed [`validate`], as of `now`.
    fn record_valid(&self, window: &pb::TelemetryWindow, now: Instant) {
        let second = window.end_unix_ms.div_euclid(1000);
        let horizon = second - RETENTION.as_secs() as i64;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for b in &window.backends {
            let key = (b.namespace.clone(), b.service.clone(), b.backend.clone());
            let series = inner.series.entry(key).or_insert_with(|| Series { buckets: VecDeque::new(), reported: now });
            series.reported = now;
            let buckets = &mut series.buckets;
            match buckets.iter_mut().rev().find(|(s, _)| *s == second) {
                Some((_, counts)) => counts.add(b),
                None => {
                    let mut counts = Counts::default();
                    counts.add(b);
                    let at = buckets.iter().rposition(|(s, _)| *s < second).map_or(0, |i| i + 1);
                    buckets.insert(at, (second, counts));
                }
            }
            while buckets.front().is_some_and(|(s, _)| *s < horizon) {
                buckets.pop_front();
            }
        }
        if let Some(proxy) = &window.proxy {
            let state = inner
                .proxies
                .entry(proxy.id.clone())
                .or_insert_with(|| ProxyState { seen: now, applied: HashMap::new() });
            state.seen = now;
            if !window.applied.is_empty() {
                state.applied =
                    window.applied.iter().map(|a| (a.authority.clone(), (a.version, a.digest.clone()))).collect();
            }
        }
        if now.saturating_duration_since(inner.swept) >= SWEEP_EVERY {
            inner.swept = now;
            inner.series.retain(|_, s| now.saturating_duration_since(s.reported) < SERIES_IDLE_AFTER);
            inner.proxies.retain(|_, p| now.saturating_duration_since(p.seen) < RETENTION);
        }
    }

    /// Sums a backend's windows that ended in seconds `[from, to)` (unix seconds).
    pub fn counts(&self, key: &BackendKey, from: i64, to: i64) -> Counts {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = Counts::default();
        let buckets = inner.series.get(key).into_iter().flat_map(|s| &s.buckets);
        for (_, c) in buckets.filter(|(s, _)| *s >= from && *s < to) {
            total.merge(c);
        }
        total
    }

    /// Backends with data for an apex service.
    pub fn backends(&self, namespace: &str, service: &str) -> Vec<String> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> =
            inner.series.keys().filter(|(ns, s, _)| ns == namespace && s == service).map(|k| k.2.clone()).collect();
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
    use shifter_proto::LATENCY_BOUNDS_MS;

    use super::*;

    /// A window from `proxy` ending at `end_ms` (unix ms) for one backend of `web`, every request
    /// in the first latency bucket.
    fn window(proxy: &str, end_ms: i64, backend: &str, requests: u64, failures: u64) -> pb::TelemetryWindow {
        let mut latency_counts = vec![0; LATENCY_BUCKETS];
        latency_counts[0] = requests;
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
                latency_counts,
                latency_bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
                ..Default::default()
            }],
            applied: vec![pb::AppliedSnapshot {
                authority: "web.shop.svc.cluster.local:80".into(),
                version: 7,
                digest: "abc".into(),
            }],
        }
    }

    fn key(backend: &str) -> BackendKey {
        ("shop".to_string(), "web".to_string(), backend.to_string())
    }

    #[test]
    fn windows_from_several_proxies_add_up_per_backend_and_second() {
        let (store, now) = (TelemetryStore::default(), Instant::now());
        store.record_valid(&window("a", 10_500, "web-v1", 10, 1), now);
        store.record_valid(&window("b", 10_900, "web-v1", 5, 0), now);
        store.record_valid(&window("a", 11_500, "web-v1", 7, 2), now);
        store.record_valid(&window("a", 11_500, "web-v2", 3, 3), now);
        let c = store.counts(&key("web-v1"), 10, 11);
        assert_eq!((c.requests, c.failures, c.latency_counts[0]), (15, 1, 15));
        let c = store.counts(&key("web-v1"), 10, 12);
        assert_eq!((c.requests, c.failures, c.failures_by_class["5xx"]), (22, 3, 3));
        assert_eq!(store.backends("shop", "web"), vec!["web-v1", "web-v2"]);
    }

    #[test]
    fn failed_attempts_are_kept_beside_the_responses() {
        let (store, now) = (TelemetryStore::default(), Instant::now());
        for proxy in ["a", "b"] {
            let mut w = window(proxy, 10_500, "web-v2", 1, 1);
            w.backends[0].failed_attempts = 9;
            w.backends[0].failed_attempts_by_reason = [("refused".to_string(), 9)].into();
            store.record_valid(&w, now);
        }
        let c = store.counts(&key("web-v2"), 10, 11);
        assert_eq!((c.requests, c.failures, c.failed_attempts), (2, 2, 18));
        assert_eq!(c.failed_attempts_by_reason["refused"], 18);
    }

    #[test]
    fn old_windows_are_dropped() {
        let (store, now) = (TelemetryStore::default(), Instant::now());
        store.record_valid(&window("a", 1_000, "web-v1", 10, 0), now);
        store.record_valid(&window("a", 1_000 + RETENTION.as_millis() as i64 + 5_000, "web-v1", 1, 0), now);
        assert_eq!(store.counts(&key("web-v1"), 0, 5).requests, 0);
    }

    #[test]
    fn a_series_nobody_reports_any_more_is_evicted() {
        let (store, start) = (TelemetryStore::default(), Instant::now());
        store.record_valid(&window("a", 10_500, "web-v1", 10, 0), start);
        store.record_valid(&window("a", 10_500, "web-v2", 10, 0), start);
        // Backends come and go with rollouts: web-v1 keeps being reported, web-v2 is gone.
        let later = start + SERIES_IDLE_AFTER - Duration::from_secs(1);
        store.record_valid(&window("a", 11_500, "web-v1", 1, 0), later);
        assert_eq!(store.backends("shop", "web"), vec!["web-v1", "web-v2"], "not idle long enough yet");
        let idle = start + SERIES_IDLE_AFTER + Duration::from_secs(1);
        store.record_valid(&window("a", 12_500, "web-v1", 1, 0), idle);
        assert_eq!(store.backends("shop", "web"), vec!["web-v1"]);
        assert_eq!(store.counts(&key("web-v2"), 0, i64::MAX).requests, 0);
        assert_eq!(store.counts(&key("web-v1"), 0, i64::MAX).requests, 12, "a live series keeps its data");
        // Churn does not grow the store: a thousand short-lived backends leave nothing behind.
        for i in 0..1000 {
            store.record_valid(&window("a", 12_500, &format!("web-v{}", i + 3), 1, 0), idle);
        }
        let much_later = idle + SERIES_IDLE_AFTER + Duration::from_secs(1);
        store.record_valid(&window("a", 13_500, "web-v1", 1, 0), much_later);
        assert_eq!(store.backends("shop", "web"), vec!["web-v1"]);
    }

    #[test]
    fn a_bad_window_is_refused_whole_and_changes_nothing() {
        let store = TelemetryStore::default();
        let now = now_unix_ms();
        store.record(&window("a", now, "web-v1", 10, 1)).expect("a proxy's window is accepted");
        let mut bad = window("a", now, "web-v1", 10, 1);
        bad.backends.push(window("a", now, "web-v2", 10, 1).backends.remove(0));
        bad.backends[1].latency_counts.truncate(3);
        let e = store.record(&bad).expect_err("refused");
        assert_eq!((e.reason, e.field.as_str()), (Rejection::LatencyBuckets, "backends[1].latency_counts"));
        let second = now.div_euclid(1000);
        assert_eq!(store.counts(&key("web-v1"), second, second + 1).requests, 10, "nothing of the bad window was kept");
        assert_eq!(store.backends("shop", "web"), vec!["web-v1"]);
    }

    #[test]
    fn sync_counts_proxies_running_the_digest() {
        let (store, now) = (TelemetryStore::default(), Instant::now());
        store.record_valid(&window("a", 1_000, "web-v1", 1, 0), now);
        let mut other = window("b", 1_000, "web-v1", 1, 0);
        other.applied[0].digest = "old".into();
        store.record_valid(&other, now);
        assert_eq!(store.sync("web.shop.svc.cluster.local:80", "abc"), (1, 2));
        assert_eq!(store.sync("api.shop.svc.cluster.local:80", "abc"), (0, 0));
    }
}
