//! The checks every telemetry window passes before the store (or the leader) sees it. A window is
//! client input: its latency buckets must be exactly the agreed ones, since their count would
//! otherwise size the store's vectors; failures cannot exceed requests; its times must be within
//! what the controller keeps and near its clock; and counts must be plausible for the window's
//! length, so sums over thousands of proxies can never overflow. Each problem names the field and
//! what to fix, and carries a short reason for the rejection counter.

use std::time::Duration;

use shifter_proto::LATENCY_BOUNDS_MS;
use shifter_proto::v1 as pb;

use super::RETENTION;

/// Latency counts per backend window: one per bound, then `+Inf`.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;
/// How far ahead of the controller's clock a window may end (clocks kept by NTP differ by far less).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The longest window accepted (proxies close one every second).
pub const MAX_WINDOW: Duration = Duration::from_secs(300);
/// Counts above this per second of window are not something a proxy measured: ten million
/// responses a second from one proxy to one backend is far beyond any proxy, and far below what
/// could overflow a sum over the retention of every proxy's windows.
pub const MAX_PER_SECOND: u64 = 10_000_000;
/// Backend windows per window, and applied snapshots per window.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest name (namespace, service, proxy id, authority, digest, class or reason key).
pub const MAX_NAME: usize = 512;
/// Distinct failure classes or attempt-failure reasons per backend window.
pub const MAX_KEYS: usize = 16;

/// Why a window was refused: the `reason` label of `shifter_controller_telemetry_rejected_windows_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    WindowTime,
    LatencyBuckets,
    LatencyBounds,
    FailuresOverRequests,
    ImplausibleCount,
    Oversized,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WindowTime => "window_time",
            Self::LatencyBuckets => "latency_buckets",
            Self::LatencyBounds => "latency_bounds",
            Self::FailuresOverRequests => "failures_over_requests",
            Self::ImplausibleCount => "implausible_count",
            Self::Oversized => "oversized",
        }
    }
}

/// A window the controller refuses, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidWindow {
    pub field: String,
    pub problem: String,
    pub reason: Rejection,
}

fn invalid(field: impl Into<String>, reason: Rejection, problem: impl Into<String>) -> InvalidWindow {
    InvalidWindow { field: field.into(), problem: problem.into(), reason }
}

/// Checks `w` against the controller's clock, `now_unix_ms`.
pub fn validate(w: &pb::TelemetryWindow, now_unix_ms: i64) -> Result<(), InvalidWindow> {
    let (start, end) = (w.start_unix_ms, w.end_unix_ms);
    let ms = |d: Duration| d.as_millis() as i64;
    if start > end {
        return Err(invalid("start_unix_ms", Rejection::WindowTime, format!("{start} is after end_unix_ms {end}")));
    }
    let length = end.saturating_sub(start);
    if length > ms(MAX_WINDOW) {
        let problem = format!("the window lasts {length} ms; at most {} ms", ms(MAX_WINDOW));
        return Err(invalid("end_unix_ms", Rejection::WindowTime, problem));
    }
    if end > now_unix_ms.saturating_add(ms(MAX_CLOCK_SKEW)) {
        let problem = format!(
            "{end} is {} s ahead of the controller's clock (at most {} s); check the proxy's clock",
            end.saturating_sub(now_unix_ms) / 1000,
            MAX_CLOCK_SKEW.as_secs()
        );
        return Err(invalid("end_unix_ms", Rejection::WindowTime, problem));
    }
    if end < now_unix_ms.saturating_sub(ms(RETENTION)) {
        let problem = format!(
            "{end} is {} s in the past, older than the {} s the controller keeps",
            now_unix_ms.saturating_sub(end) / 1000,
            RETENTION.as_secs()
        );
        return Err(invalid("end_unix_ms", Rejection::WindowTime, problem));
    }
    if let Some(proxy) = &w.proxy {
        name("proxy.id", &proxy.id)?;
        name("proxy.namespace", &proxy.namespace)?;
        name("proxy.kind", &proxy.kind)?;
    }
    entries("backends", w.backends.len())?;
    entries("applied", w.applied.len())?;
    for (i, a) in w.applied.iter().enumerate() {
        name(&format!("applied[{i}].authority"), &a.authority)?;
        name(&format!("applied[{i}].digest"), &a.digest)?;
    }
    // Whole seconds the window spans, at least one.
    let seconds = (length as u64).div_ceil(1000).max(1);
    let limit = MAX_PER_SECOND.saturating_mul(seconds);
    for (i, b) in w.backends.iter().enumerate() {
        backend(i, b, limit)?;
    }
    Ok(())
}

fn backend(i: usize, b: &pb::BackendWindow, limit: u64) -> Result<(), InvalidWindow> {
    let at = |field: &str| format!("backends[{i}].{field}");
    name(&at("namespace"), &b.namespace)?;
    name(&at("service"), &b.service)?;
    name(&at("backend"), &b.backend)?;
    if b.latency_counts.len() != LATENCY_BUCKETS {
        let problem = format!(
            "{} counts; expected {LATENCY_BUCKETS}, one per bound of latency_bounds_ms and one for +Inf",
            b.latency_counts.len()
        );
        return Err(invalid(at("latency_counts"), Rejection::LatencyBuckets, problem));
    }
    if b.latency_bounds_ms.as_slice() != LATENCY_BOUNDS_MS.as_slice() {
        let problem = format!(
            "{} bounds that are not the {} this controller aggregates ({} ms to {} ms, Linkerd's)",
            b.latency_bounds_ms.len(),
            LATENCY_BOUNDS_MS.len(),
            LATENCY_BOUNDS_MS[0],
            LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]
        );
        return Err(invalid(at("latency_bounds_ms"), Rejection::LatencyBounds, problem));
    }
    if b.failures > b.requests {
        let problem = format!("{} is more than requests ({})", b.failures, b.requests);
        return Err(invalid(at("failures"), Rejection::FailuresOverRequests, problem));
    }
    let plausible = |field: String, n: u64| {
        if n > limit {
            let problem = format!("{n} is implausible for the window's length (at most {MAX_PER_SECOND} a second)");
            return Err(invalid(field, Rejection::ImplausibleCount, problem));
        }
        Ok(())
    };
    plausible(at("requests"), b.requests)?;
    plausible(at("failed_attempts"), b.failed_attempts)?;
    for (k, n) in b.latency_counts.iter().enumerate() {
        plausible(at(&format!("latency_counts[{k}]")), *n)?;
    }
    for (map, field) in
        [(&b.failures_by_class, "failures_by_class"), (&b.failed_attempts_by_reason, "failed_attempts_by_reason")]
    {
        if map.len() > MAX_KEYS {
            let problem = format!("{} keys; at most {MAX_KEYS}", map.len());
            return Err(invalid(at(field), Rejection::Oversized, problem));
        }
        for (key, n) in map {
            name(&at(field), key)?;
            plausible(at(&format!("{field}[{key:?}]")), *n)?;
        }
    }
    Ok(())
}

fn name(field: &str, value: &str) -> Result<(), InvalidWindow> {
    if value.len() > MAX_NAME {
        return Err(invalid(field, Rejection::Oversized, format!("{} bytes long; at most {MAX_NAME}", value.len())));
    }
    Ok(())
}

fn entries(field: &str, n: usize) -> Result<(), InvalidWindow> {
    if n > MAX_ENTRIES {
        return Err(invalid(field, Rejection::Oversized, format!("{n} entries; at most {MAX_ENTRIES}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn good() -> pb::TelemetryWindow {
        pb::TelemetryWindow {
            proxy: Some(pb::ProxyIdentity { id: "gateway-1".into(), ..Default::default() }),
            start_unix_ms: NOW - 1_000,
            end_unix_ms: NOW,
            backends: vec![pb::BackendWindow {
                namespace: "shop".into(),
                service: "web".into(),
                backend: "web-v2".into(),
                requests: 10,
                failures: 2,
                failures_by_class: [("5xx".to_string(), 2)].into(),
                latency_counts: vec![1; LATENCY_BUCKETS],
                latency_bounds_ms: LATENCY_BOUNDS_MS.to_vec(),
                failed_attempts: 3,
                failed_attempts_by_reason: [("refused".to_string(), 3)].into(),
                ..Default::default()
            }],
            applied: vec![],
        }
    }

    fn rejected(edit: impl FnOnce(&mut pb::TelemetryWindow)) -> InvalidWindow {
        let mut w = good();
        edit(&mut w);
        validate(&w, NOW).expect_err("rejected")
    }

    #[test]
    fn a_window_a_proxy_sends_is_accepted() {
        assert_eq!(validate(&good(), NOW), Ok(()));
        // Late by the proxy's whole buffer, or a little ahead of the controller's clock.
        let mut late = good();
        (late.start_unix_ms, late.end_unix_ms) = (NOW - 301_000, NOW - 300_000);
        assert_eq!(validate(&late, NOW), Ok(()));
        let mut ahead = good();
        (ahead.start_unix_ms, ahead.end_unix_ms) = (NOW + 4_000, NOW + 5_000);
        assert_eq!(validate(&ahead, NOW), Ok(()));
    }

    #[test]
    fn the_latency_bucket_count_never_comes_from_the_client_unchecked() {
        let e = rejected(|w| w.backends[0].latency_counts = vec![1; 3]);
        assert_eq!(e.reason, Rejection::LatencyBuckets);
        assert_eq!(e.field, "backends[0].latency_counts");
        assert!(e.to_string().contains("3 counts; expected 26"), "{e}");
        let e = rejected(|w| w.backends[0].latency_counts = vec![0; 1_000_000]);
        assert_eq!(e.reason, Rejection::LatencyBuckets);
        let e = rejected(|w| w.backends[0].latency_counts.clear());
        assert_eq!(e.reason, Rejection::LatencyBuckets);
    }

    #[test]
    fn bounds_must_be_the_agreed_ones() {
        let e = rejected(|w| w.backends[0].latency_bounds_ms[3] = 4.5);
        assert_eq!((e.reason, e.field.as_str()), (Rejection::LatencyBounds, "backends[0].latency_bounds_ms"));
        let e = rejected(|w| w.backends[0].latency_bounds_ms.clear());
        assert_eq!(e.reason, Rejection::LatencyBounds);
    }

    #[test]
    fn failures_cannot_exceed_requests() {
        let e = rejected(|w| w.backends[0].failures = 11);
        assert_eq!(e.reason, Rejection::FailuresOverRequests);
        assert_eq!(e.to_string(), "backends[0].failures: 11 is more than requests (10)");
    }

    #[test]
    fn window_times_must_be_sane() {
        for (start, end, field) in [
            (NOW, NOW - 1, "start_unix_ms"),
            (NOW - 301_000, NOW, "end_unix_ms"),
            (NOW + 120_000, NOW + 121_000, "end_unix_ms"),
            (0, 1_000, "end_unix_ms"),
            (i64::MIN, i64::MAX, "end_unix_ms"),
        ] {
            let e = rejected(|w| (w.start_unix_ms, w.end_unix_ms) = (start, end));
            assert_eq!((e.reason, e.field.as_str()), (Rejection::WindowTime, field), "{start}..{end}: {e}");
        }
    }

    #[test]
    fn absurd_counts_and_sizes_are_refused() {
        let e = rejected(|w| w.backends[0].requests = u64::MAX);
        assert_eq!((e.reason, e.field.as_str()), (Rejection::ImplausibleCount, "backends[0].requests"));
        let e = rejected(|w| w.backends[0].latency_counts[25] = u64::MAX);
        assert_eq!(e.field, "backends[0].latency_counts[25]");
        let e =
            rejected(|w| w.backends[0].failed_attempts_by_reason.insert("refused".into(), u64::MAX).map_or((), drop));
        assert_eq!(e.reason, Rejection::ImplausibleCount);
        let e = rejected(|w| {
            let b = w.backends[0].clone();
            w.backends = vec![b; MAX_ENTRIES + 1];
        });
        assert_eq!((e.reason, e.field.as_str()), (Rejection::Oversized, "backends"));
        let e = rejected(|w| w.backends[0].backend = "x".repeat(MAX_NAME + 1));
        assert_eq!((e.reason, e.field.as_str()), (Rejection::Oversized, "backends[0].backend"));
        let e = rejected(|w| {
            w.backends[0].failures_by_class = (0..20).map(|i| (format!("c{i}"), 0)).collect();
        });
        assert_eq!((e.reason, e.field.as_str()), (Rejection::Oversized, "backends[0].failures_by_class"));
        // What ten seconds allow, one second does not.
        let mut long = good();
        long.start_unix_ms = NOW - 10_000;
        long.backends[0].requests = 5 * MAX_PER_SECOND;
        assert_eq!(validate(&long, NOW), Ok(()));
        let e = rejected(|w| w.backends[0].requests = 5 * MAX_PER_SECOND);
        assert_eq!(e.reason, Rejection::ImplausibleCount);
    }
}
