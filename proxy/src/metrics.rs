//! Per-backend counters and the Prometheus text rendering, with Linkerd's metric names and latency
//! buckets so existing dashboards and queries read them unchanged.
//!
//! Each backend of each authority has one [`BackendStats`], created when a snapshot naming it is
//! compiled and kept for the life of the process so counters never go backwards. Compiled routes
//! hold the handle, so the per-request path does no label lookup, takes no lock and allocates
//! nothing: every per-response figure is an atomic counter, status codes included.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shifter_proto::LATENCY_BOUNDS_MS;

use crate::authorities::Eviction;

/// Reads one counter of a backend.
type Counter = fn(&BackendStats) -> u64;

const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Every proxy listener dials out to the chosen backend, as Linkerd's outbound side does.
const DIRECTION: &str = "outbound";

/// Identity of a backend as seen from one authority.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BackendKey {
    pub authority: String,
    pub dst_namespace: String,
    pub dst_service: String,
}

/// Why a response counts as a failure; also the `failures_by_class` keys sent to the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureClass {
    Http5xx,
    Connect,
    Timeout,
    Grpc,
}

impl FailureClass {
    const ALL: [FailureClass; 4] = [Self::Http5xx, Self::Connect, Self::Timeout, Self::Grpc];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http5xx => "5xx",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Grpc => "grpc",
        }
    }
}

/// Why one attempt to send a request to a backend failed before the request reached it. The
/// proxy retries such an attempt on a fresh pick; the `reason` label of
/// `request_attempt_failures_total` and the keys of a telemetry window's
/// `failed_attempts_by_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptFailure {
    /// Nothing listens on the endpoint: the connection was refused.
    Refused,
    /// The connection was reset or closed before the request could be sent.
    Reset,
    /// The dial took longer than the connect timeout.
    Timeout,
    /// Any other dial error (no route to the host, out of local ports, ...).
    Error,
}

impl AttemptFailure {
    pub const ALL: [AttemptFailure; 4] = [Self::Refused, Self::Reset, Self::Timeout, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Outcomes since the last telemetry window closed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Window {
    pub requests: u64,
    pub failures: u64,
    pub by_class: [u64; 4],
    pub latency: [u64; BUCKETS],
    /// Failed attempts that were retried elsewhere, by [`AttemptFailure`] (in `ALL` order).
    pub failed_attempts: [u64; 4],
}

/// Requests and failures share one word (requests in the high half, failures in the low half), so
/// closing a window takes both at once and a window never holds more failures than requests,
/// whatever responses are being recorded meanwhile. Half a word holds four billion responses per
/// backend per window.
const REQUEST_ONE: u64 = 1 << 32;
const FAILURE_MASK: u64 = REQUEST_ONE - 1;

/// The running telemetry window, as counters that closing it swaps back to zero. A response
/// recorded while the window closes may have its latency in one window and its request in the
/// next; sums over windows stay exact, which is what the controller adds up.
#[derive(Default)]
struct WindowCounters {
    /// `requests << 32 | failures`.
    outcomes: AtomicU64,
    by_class: [AtomicU64; 4],
    latency: [AtomicU64; BUCKETS],
    failed_attempts: [AtomicU64; 4],
}

/// Distinct (status code, failed) pairs counted without a lock; a backend answering with more
/// distinct codes than this counts the rest under a mutex.
const STATUS_SLOTS: usize = 8;

/// Responses by (status code, failed). Each slot is claimed once, by the first response with its
/// pair, and only counted after that.
#[derive(Default)]
struct StatusCounts {
    /// `status << 1 | failed`; 0 while the slot is free (status codes are never 0).
    keys: [AtomicU32; STATUS_SLOTS],
    counts: [AtomicU64; STATUS_SLOTS],
    overflow: Mutex<BTreeMap<(u16, bool), u64>>,
}

impl StatusCounts {
    fn add(&self, status: u16, failed: bool) {
        let key = (u32::from(status) << 1) | u32::from(failed);
        for (slot, count) in self.keys.iter().zip(&self.counts) {
            let held = match slot.load(Acquire) {
                0 => slot.compare_exchange(0, key, Relaxed, Acquire).map_or_else(|other| other, |_| key),
                held => held,
            };
            if held == key {
                count.fetch_add(1, Relaxed);
                return;
            }
        }
        *self.overflow.lock().expect("metrics lock").entry((status, failed)).or_default() += 1;
    }

    fn snapshot(&self) -> BTreeMap<(u16, bool), u64> {
        let mut all = self.overflow.lock().expect("metrics lock").clone();
        for (slot, count) in self.keys.iter().zip(&self.counts) {
            let key = slot.load(Acquire);
            if key != 0 {
                *all.entry(((key >> 1) as u16, key & 1 == 1)).or_default() += count.load(Relaxed);
            }
        }
        all
    }
}

/// Counters for one backend of one authority.
pub(crate) struct BackendStats {
    pub key: BackendKey,
    /// Apex namespace, apex service and snapshot version, for telemetry windows.
    apex: Mutex<(String, String, u64)>,
    requests: AtomicU64,
    responses: StatusCounts,
    latency: [AtomicU64; BUCKETS],
    latency_sum_us: AtomicU64,
    /// Failed attempts retried elsewhere, by [`AttemptFailure`].
    attempt_failures: [AtomicU64; 4],
    window: WindowCounters,
    skipped: AtomicU64,
    tcp_open: AtomicU64,
    tcp_close: AtomicU64,
    tcp_read: AtomicU64,
    tcp_write: AtomicU64,
}

impl BackendStats {
    fn new(key: BackendKey) -> Self {
        Self {
            key,
            apex: Mutex::default(),
            requests: AtomicU64::new(0),
            responses: StatusCounts::default(),
            latency: Default::default(),
            latency_sum_us: AtomicU64::new(0),
            attempt_failures: Default::default(),
            window: WindowCounters::default(),
            skipped: AtomicU64::new(0),
            tcp_open: AtomicU64::new(0),
            tcp_close: AtomicU64::new(0),
            tcp_read: AtomicU64::new(0),
            tcp_write: AtomicU64::new(0),
        }
    }

    pub fn set_apex(&self, namespace: &str, service: &str, version: u64) {
        *self.apex.lock().expect("apex lock") = (namespace.into(), service.into(), version);
    }

    /// This backend was picked by weight but had no ready endpoint, so another was used.
    pub fn record_skip(&self) {
        self.skipped.fetch_add(1, Relaxed);
    }

    /// A request was answered: response headers arrived, or the proxy answered it with an error.
    /// Streams are counted here, before their body ends.
    pub fn record_request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    /// A response's final outcome, once its stream ended: the status the client saw, whether (and
    /// why) it failed, and the time until response headers.
    pub fn record_response(&self, status: u16, failure: Option<FailureClass>, latency: Duration) {
        let bucket = bucket_of(latency);
        self.responses.add(status, failure.is_some());
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX), Relaxed);
        let w = &self.window;
        w.latency[bucket].fetch_add(1, Relaxed);
        if let Some(class) = failure {
            w.by_class[FailureClass::ALL.iter().position(|c| *c == class).unwrap_or(0)].fetch_add(1, Relaxed);
        }
        w.outcomes.fetch_add(REQUEST_ONE | u64::from(failure.is_some()), Relaxed);
    }

    /// An attempt to send a request here failed before the request reached the backend, and the
    /// request is being retried on a fresh pick. Not a response: `response_total` counts the
    /// response once, under the backend that answered it.
    pub fn record_failed_attempt(&self, why: AttemptFailure) {
        self.attempt_failures[why.index()].fetch_add(1, Relaxed);
        self.window.failed_attempts[why.index()].fetch_add(1, Relaxed);
    }

    #[cfg(test)]
    pub fn render_skips(&self) -> u64 {
        self.skipped.load(Relaxed)
    }

    pub fn tcp_opened(&self) {
        self.tcp_open.fetch_add(1, Relaxed);
    }

    pub fn tcp_closed(&self) {
        self.tcp_close.fetch_add(1, Relaxed);
    }

    pub fn tcp_read(&self, n: usize) {
        self.tcp_read.fetch_add(n as u64, Relaxed);
    }

    pub fn tcp_written(&self, n: usize) {
        self.tcp_write.fetch_add(n as u64, Relaxed);
    }

    /// Closes the current telemetry window: returns it (if anything happened) and starts a new one.
    pub fn take_window(&self) -> Option<(Window, (String, String, u64))> {
        let c = &self.window;
        let outcomes = c.outcomes.swap(0, Relaxed);
        let failed_attempts: [u64; 4] = std::array::from_fn(|i| c.failed_attempts[i].swap(0, Relaxed));
        if outcomes == 0 && failed_attempts == [0; 4] {
            return None;
        }
        let w = Window {
            requests: outcomes >> 32,
            failures: outcomes & FAILURE_MASK,
            by_class: std::array::from_fn(|i| c.by_class[i].swap(0, Relaxed)),
            latency: std::array::from_fn(|i| c.latency[i].swap(0, Relaxed)),
            failed_attempts,
        };
        Some((w, self.apex.lock().expect("apex lock").clone()))
    }
}

fn bucket_of(latency: Duration) -> usize {
    let ms = latency.as_secs_f64() * 1000.0;
    LATENCY_BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// Every backend's counters, plus process-wide ones.
#[derive(Default)]
pub(crate) struct Metrics {
    backends: Mutex<HashMap<BackendKey, Arc<BackendStats>>>,
    /// Connections closed at accept because `max_connections` were open.
    pub connections_rejected: AtomicU64,
    /// A sidecar's redirected outbound connections to addresses no Service has, passed through.
    pub passthrough_connections: AtomicU64,
    /// A sidecar's redirected inbound connections, forwarded to the application.
    pub inbound_connections: AtomicU64,
    /// Requests answered by the proxy itself before a backend was chosen, by reason.
    unrouted: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Outbound authorities watched now, and remembered as not existing.
    authorities_watched: AtomicU64,
    authorities_unknown: AtomicU64,
    /// Outbound authorities dropped: idle, to make room.
    authority_evictions: [AtomicU64; 2],
}

impl Metrics {
    pub fn backend(&self, key: BackendKey) -> Arc<BackendStats> {
        let mut map = self.backends.lock().expect("metrics lock");
        map.entry(key.clone()).or_insert_with(|| Arc::new(BackendStats::new(key))).clone()
    }

    pub fn all_backends(&self) -> Vec<Arc<BackendStats>> {
        let mut v: Vec<_> = self.backends.lock().expect("metrics lock").values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    pub fn set_authority_counts(&self, watched: usize, unknown: usize) {
        self.authorities_watched.store(watched as u64, Relaxed);
        self.authorities_unknown.store(unknown as u64, Relaxed);
    }

    pub fn record_authority_eviction(&self, why: Eviction) {
        self.authority_evictions[why as usize].fetch_add(1, Relaxed);
    }

    pub fn record_unrouted(&self, authority: &str, reason: &'static str) {
        *self.unrouted.lock().expect("metrics lock").entry((authority.to_string(), reason)).or_default() += 1;
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let backends = self.all_backends();
        let snaps: Vec<_> = backends
            .iter()
            .map(|b| {
                let latency: [u64; BUCKETS] = std::array::from_fn(|i| b.latency[i].load(Relaxed));
                (b, labels(&b.key), b.responses.snapshot(), latency, b.latency_sum_us.load(Relaxed))
            })
            .collect();
        let mut out = String::with_capacity(4096);
        family(&mut out, "request_total", "counter", "Total count of HTTP requests.");
        for (b, l, ..) in &snaps {
            let n = b.requests.load(Relaxed);
            if n > 0 {
                let _ = writeln!(out, "request_total{{{l}}} {n}");
            }
        }
        family(&mut out, "response_total", "counter", "Total count of HTTP responses.");
        for (_, l, responses, ..) in &snaps {
            for ((status, failed), n) in responses {
                let class = if *failed { "failure" } else { "success" };
                let _ = writeln!(out, "response_total{{{l},classification=\"{class}\",status_code=\"{status}\"}} {n}");
            }
        }
        family(
            &mut out,
            "request_attempt_failures_total",
            "counter",
            "Attempts that failed before the request reached the backend and were retried on a fresh pick, by reason; the response is counted once in response_total, under the backend that answered.",
        );
        for (b, l, ..) in &snaps {
            for why in AttemptFailure::ALL {
                let n = b.attempt_failures[why.index()].load(Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "request_attempt_failures_total{{{l},reason=\"{}\"}} {n}", why.as_str());
                }
            }
        }
        family(
            &mut out,
            "response_latency_ms",
            "histogram",
            "Elapsed times between a request and its response headers.",
        );
        for (_, l, responses, latency, sum_us) in &snaps {
            if responses.is_empty() {
                continue;
            }
            let mut cumulative = 0;
            for (i, count) in latency.iter().enumerate() {
                cumulative += count;
                let le = LATENCY_BOUNDS_MS.get(i).map_or("+Inf".to_string(), |b| format!("{b}"));
                let _ = writeln!(out, "response_latency_ms_bucket{{{l},le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "response_latency_ms_sum{{{l}}} {}", *sum_us as f64 / 1000.0);
            let _ = writeln!(out, "response_latency_ms_count{{{l}}} {cumulative}");
        }
        family(
            &mut out,
            "route_backend_unready_total",
            "counter",
            "Picks that skipped a backend with no ready endpoint.",
        );
        for (b, l, ..) in &snaps {
            let n = b.skipped.load(Relaxed);
            if n > 0 {
                let _ = writeln!(out, "route_backend_unready_total{{{l}}} {n}");
            }
        }
        let tcp: [(&str, &str, Counter); 4] = [
            ("tcp_open_total", "Total count of opened connections.", |b| b.tcp_open.load(Relaxed)),
            ("tcp_close_total", "Total count of closed connections.", |b| b.tcp_close.load(Relaxed)),
            ("tcp_read_bytes_total", "Total count of bytes read from clients.", |b| b.tcp_read.load(Relaxed)),
            ("tcp_write_bytes_total", "Total count of bytes written to clients.", |b| b.tcp_write.load(Relaxed)),
        ];
        for (name, help, get) in tcp {
            family(&mut out, name, "counter", help);
            for (b, l, ..) in &snaps {
                if b.tcp_open.load(Relaxed) > 0 {
                    let _ = writeln!(out, "{name}{{{l},peer=\"dst\"}} {}", get(b));
                }
            }
        }
        family(&mut out, "proxy_unrouted_total", "counter", "Requests the proxy answered itself, by reason.");
        for ((authority, reason), n) in self.unrouted.lock().expect("metrics lock").iter() {
            let a = escape(authority);
            let _ = writeln!(
                out,
                "proxy_unrouted_total{{direction=\"{DIRECTION}\",authority=\"{a}\",reason=\"{reason}\"}} {n}"
            );
        }
        family(
            &mut out,
            "proxy_outbound_authorities",
            "gauge",
            "Authorities the outbound listener watches, and remembers as not existing.",
        );
        let _ =
            writeln!(out, "proxy_outbound_authorities{{state=\"watched\"}} {}", self.authorities_watched.load(Relaxed));
        let _ =
            writeln!(out, "proxy_outbound_authorities{{state=\"unknown\"}} {}", self.authorities_unknown.load(Relaxed));
        family(
            &mut out,
            "proxy_outbound_authority_evictions_total",
            "counter",
            "Outbound authorities dropped with their watch: idle, or to make room for a new one.",
        );
        for why in [Eviction::Idle, Eviction::Capacity] {
            let n = self.authority_evictions[why as usize].load(Relaxed);
            let _ = writeln!(out, "proxy_outbound_authority_evictions_total{{reason=\"{}\"}} {n}", why.as_str());
        }
        family(&mut out, "proxy_connections_rejected_total", "counter", "Connections closed at accept by the limit.");
        let _ = writeln!(out, "proxy_connections_rejected_total {}", self.connections_rejected.load(Relaxed));
        family(
            &mut out,
            "proxy_passthrough_connections_total",
            "counter",
            "A sidecar's outbound connections to addresses no Service has, passed through untouched.",
        );
        let _ = writeln!(out, "proxy_passthrough_connections_total {}", self.passthrough_connections.load(Relaxed));
        family(
            &mut out,
            "proxy_inbound_connections_total",
            "counter",
            "A sidecar's inbound connections, forwarded to the application.",
        );
        let _ = writeln!(out, "proxy_inbound_connections_total {}", self.inbound_connections.load(Relaxed));
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn labels(k: &BackendKey) -> String {
    format!(
        "direction=\"{DIRECTION}\",authority=\"{}\",dst_namespace=\"{}\",dst_service=\"{}\"",
        escape(&k.authority),
        escape(&k.dst_namespace),
        escape(&k.dst_service)
    )
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(svc: &str) -> BackendKey {
        BackendKey { authority: "web.shop:80".into(), dst_namespace: "shop".into(), dst_service: svc.into() }
    }

    #[test]
    fn renders_linkerd_names_with_cumulative_buckets() {
        let m = Metrics::default();
        let b = m.backend(key("web-v1"));
        b.record_request();
        b.record_request();
        b.record_response(200, None, Duration::from_micros(1500));
        b.record_response(503, Some(FailureClass::Http5xx), Duration::from_millis(7));
        let text = m.render();
        let l = "direction=\"outbound\",authority=\"web.shop:80\",dst_namespace=\"shop\",dst_service=\"web-v1\"";
        assert!(text.contains(&format!("request_total{{{l}}} 2\n")), "{text}");
        assert!(text.contains(&format!("response_total{{{l},classification=\"success\",status_code=\"200\"}} 1\n")));
        assert!(text.contains(&format!("response_total{{{l},classification=\"failure\",status_code=\"503\"}} 1\n")));
        assert!(text.contains(&format!("response_latency_ms_bucket{{{l},le=\"1\"}} 0\n")));
        assert!(text.contains(&format!("response_latency_ms_bucket{{{l},le=\"2\"}} 1\n")));
        assert!(text.contains(&format!("response_latency_ms_bucket{{{l},le=\"10\"}} 2\n")));
        assert!(text.contains(&format!("response_latency_ms_bucket{{{l},le=\"+Inf\"}} 2\n")));
        assert!(text.contains(&format!("response_latency_ms_sum{{{l}}} 8.5\n")));
    }

    #[test]
    fn every_status_code_is_counted_past_the_lock_free_slots() {
        let m = Metrics::default();
        let b = m.backend(key("web-v1"));
        for status in 200..220u16 {
            for _ in 0..3 {
                b.record_response(status, None, Duration::from_millis(1));
            }
        }
        b.record_response(500, Some(FailureClass::Http5xx), Duration::from_millis(1));
        let text = m.render();
        let l = "direction=\"outbound\",authority=\"web.shop:80\",dst_namespace=\"shop\",dst_service=\"web-v1\"";
        for status in 200..220u16 {
            let line = format!("response_total{{{l},classification=\"success\",status_code=\"{status}\"}} 3\n");
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        assert!(text.contains(&format!("response_total{{{l},classification=\"failure\",status_code=\"500\"}} 1\n")));
        assert!(text.contains(&format!("response_latency_ms_count{{{l}}} 61\n")));
    }

    #[test]
    fn failed_attempts_are_counted_apart_from_responses() {
        let m = Metrics::default();
        let canary = m.backend(key("web-v2"));
        canary.record_failed_attempt(AttemptFailure::Refused);
        canary.record_failed_attempt(AttemptFailure::Refused);
        canary.record_failed_attempt(AttemptFailure::Timeout);
        let text = m.render();
        let l = "direction=\"outbound\",authority=\"web.shop:80\",dst_namespace=\"shop\",dst_service=\"web-v2\"";
        assert!(text.contains(&format!("request_attempt_failures_total{{{l},reason=\"refused\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("request_attempt_failures_total{{{l},reason=\"timeout\"}} 1\n")));
        assert!(!text.contains("reason=\"reset\""), "reasons that never happened are not rendered");
        assert!(!text.contains("response_total{"), "no response was counted: {text}");
        // A window with nothing but failed attempts is still sent: a dead backend shows up.
        let (w, _) = canary.take_window().expect("a window");
        assert_eq!((w.requests, w.failures, w.failed_attempts), (0, 0, [2, 0, 1, 0]));
        assert!(canary.take_window().is_none());
    }

    #[test]
    fn a_window_never_holds_more_failures_than_requests_while_responses_arrive() {
        let m = Metrics::default();
        let b = m.backend(key("web-v1"));
        let total = 20_000u64;
        let windows = std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..total / 2 {
                        b.record_response(500, Some(FailureClass::Http5xx), Duration::from_millis(1));
                    }
                });
            }
            let mut windows = Vec::new();
            while windows.iter().map(|w: &Window| w.requests).sum::<u64>() < total {
                if let Some((w, _)) = b.take_window() {
                    windows.push(w);
                }
            }
            windows
        });
        assert!(windows.iter().all(|w| w.failures <= w.requests), "{windows:?}");
        assert_eq!(windows.iter().map(|w| w.failures).sum::<u64>(), total);
    }

    #[test]
    fn windows_reset_when_taken() {
        let m = Metrics::default();
        let b = m.backend(key("web-v2"));
        b.set_apex("shop", "web", 7);
        b.record_response(200, Some(FailureClass::Grpc), Duration::from_millis(1));
        let (w, apex) = b.take_window().unwrap();
        assert_eq!((w.requests, w.failures, w.by_class[3]), (1, 1, 1));
        assert_eq!(apex.2, 7);
        assert!(b.take_window().is_none());
    }
}
