//! The analyzer as the canary controller drives it: a mesh source, a tick every interval.

use std::collections::HashMap;
use std::sync::Mutex;

use shifter_analysis::{
    Analyzer, AnalyzerConfig, AnalyzerState, BackendCounts, LATENCY_BUCKETS, MeshProvider, MeshSource,
    PrometheusConfig, PrometheusProvider, Target, VerdictResult,
};
use shifter_crds::canary::{Analysis, Metric, MetricKind, MetricMode};

/// A telemetry store in memory: per backend, counts per unix second.
#[derive(Default)]
struct Store {
    seconds: Mutex<HashMap<String, Vec<(i64, BackendCounts)>>>,
}

impl Store {
    /// Every second in `[from, to)`, `requests` requests of which `failures` fail, all taking
    /// about 15 ms except `slow` taking about 450 ms.
    fn record(&self, backend: &str, from: i64, to: i64, requests: u64, failures: u64, slow: u64) {
        let mut latency_counts = vec![0; LATENCY_BUCKETS];
        latency_counts[6] = requests - slow;
        latency_counts[14] = slow;
        let counts = BackendCounts { requests, failures, latency_counts, ..Default::default() };
        let mut map = self.seconds.lock().unwrap();
        let series = map.entry(backend.to_string()).or_default();
        series.extend((from..to).map(|t| (t, counts.clone())));
    }

    /// Every second in `[from, to)`, `failed_attempts` attempts on `backend` failed before
    /// reaching it and were retried elsewhere.
    fn record_failed_attempts(&self, backend: &str, from: i64, to: i64, failed_attempts: u64) {
        let counts = BackendCounts { failed_attempts, ..Default::default() };
        let mut map = self.seconds.lock().unwrap();
        map.entry(backend.to_string()).or_default().extend((from..to).map(|t| (t, counts.clone())));
    }
}

impl MeshSource for Store {
    fn counts(&self, namespace: &str, service: &str, backend: &str, from: i64, to: i64) -> BackendCounts {
        assert_eq!((namespace, service), ("shop", "web"));
        let mut total = BackendCounts::default();
        for (_, c) in
            self.seconds.lock().unwrap().get(backend).into_iter().flatten().filter(|(t, _)| *t >= from && *t < to)
        {
            total.add(c);
        }
        total
    }
}

fn target() -> Target {
    Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() }
}

const T0: i64 = 1_700_000_000;

/// Ticks every 10 s from `T0` up to `until`, returning the verdicts.
async fn run(analyzer: &mut Analyzer, store: &Store, until: i64) -> Vec<shifter_analysis::Verdict> {
    let provider = MeshProvider::new(store);
    let mut out = Vec::new();
    let mut now = analyzer.state().judged_until + 10;
    while now <= until {
        out.push(analyzer.tick(&provider, now).await);
        now += 10;
    }
    out
}

impl MeshSource for &Store {
    fn counts(&self, namespace: &str, service: &str, backend: &str, from: i64, to: i64) -> BackendCounts {
        (*self).counts(namespace, service, backend, from, to)
    }
}

#[tokio::test]
async fn no_traffic_is_inconclusive_never_pass() {
    let store = Store::default();
    store.record("web-v1", T0 - 300, T0 + 600, 100, 0, 0);
    let mut analyzer = Analyzer::new(AnalyzerConfig::defaults(target()), T0);
    let verdicts = run(&mut analyzer, &store, T0 + 600).await;
    assert_eq!(verdicts.len(), 60);
    for v in &verdicts {
        assert_eq!(v.result, VerdictResult::Inconclusive, "{}", v.reason);
    }
    let last = verdicts.last().unwrap();
    assert!(last.reason.contains("success-rate: no canary requests yet"), "{}", last.reason);
    assert!(last.reason.contains("latency: no timed canary requests yet"), "{}", last.reason);
}

#[tokio::test]
async fn a_canary_failing_far_more_often_fails_with_the_numbers() {
    let store = Store::default();
    store.record("web-v1", T0 - 300, T0 + 300, 95, 0, 0);
    store.record("web-v2", T0, T0 + 300, 5, 1, 0);
    let mut analyzer = Analyzer::new(AnalyzerConfig::defaults(target()), T0);
    let verdicts = run(&mut analyzer, &store, T0 + 300).await;
    let fail = verdicts.iter().position(|v| v.result == VerdictResult::Fail).expect("a Fail");
    assert!(fail <= 2, "failed only at tick {fail}");
    let v = &verdicts[fail];
    assert_eq!(v.per_metric[0].result, VerdictResult::Fail);
    assert!(v.reason.starts_with("success-rate: canary 20.0% failures vs stable 0.0% over "), "{}", v.reason);
    assert!(v.reason.contains("; evidence "), "{}", v.reason);
}

#[tokio::test]
async fn a_healthy_canary_passes_only_after_volume_and_duration() {
    let store = Store::default();
    store.record("web-v1", T0 - 300, T0 + 900, 90, 0, 1);
    store.record("web-v2", T0, T0 + 900, 10, 0, 0);
    let mut analyzer = Analyzer::new(AnalyzerConfig::defaults(target()), T0);
    let verdicts = run(&mut analyzer, &store, T0 + 900).await;
    let first_pass = verdicts.iter().position(|v| v.result == VerdictResult::Pass).expect("a Pass");
    // 30 s minimum duration and 200 canary requests at 10 req/s: never before the third tick.
    assert!(first_pass >= 2, "passed at tick {first_pass}");
    assert!(verdicts[..first_pass].iter().all(|v| v.result == VerdictResult::Inconclusive));
    assert!(verdicts.iter().all(|v| v.result != VerdictResult::Fail));
    let pass = &verdicts[first_pass];
    assert!(pass.reason.contains("success-rate: canary 0.0% failures vs stable 0.0%"), "{}", pass.reason);

    // A weight change restarts the step's volume and duration, not the evidence.
    analyzer.reset_for_step(T0 + 900);
    store.record("web-v1", T0 + 900, T0 + 960, 80, 0, 1);
    store.record("web-v2", T0 + 900, T0 + 960, 20, 0, 0);
    let provider = MeshProvider::new(&store);
    let v = analyzer.tick(&provider, T0 + 910).await;
    assert_eq!(v.result, VerdictResult::Inconclusive, "{}", v.reason);
    assert!(v.reason.contains("but the step has 200 of 200 canary requests and 10s of 30s"), "{}", v.reason);
    let v = analyzer.tick(&provider, T0 + 930).await;
    assert_eq!(v.result, VerdictResult::Pass, "{}", v.reason);
}

#[tokio::test]
async fn a_slower_canary_fails_on_latency_exceedances() {
    let store = Store::default();
    // Stable: 2% of requests at ~450 ms; canary: 20%.
    store.record("web-v1", T0 - 300, T0 + 600, 100, 0, 2);
    store.record("web-v2", T0, T0 + 600, 10, 0, 2);
    let mut analyzer = Analyzer::new(AnalyzerConfig::defaults(target()), T0);
    let verdicts = run(&mut analyzer, &store, T0 + 600).await;
    let v = verdicts.iter().find(|v| v.result == VerdictResult::Fail).expect("a Fail");
    assert_eq!(v.per_metric[1].result, VerdictResult::Fail, "{}", v.reason);
    // 20 ms and 400 ms bound the same slow requests here; the reason names one of them.
    assert!(v.reason.starts_with("latency: canary 20.0% slower than "), "{}", v.reason);
    assert!(v.reason.contains(" ms vs stable 2.00% over "), "{}", v.reason);
    // θ = 0.8 × 0.98 / 2 + 0.2 × (0.98 + 0.02 / 2): same-bucket pairs count half.
    assert!(v.reason.ends_with("slower than a stable one in 59.0% of pairs (50% = same)"), "{}", v.reason);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let store = Store::default();
    store.record("web-v1", T0 - 300, T0 + 400, 95, 1, 1);
    store.record("web-v2", T0, T0 + 400, 5, 0, 0);
    let config = AnalyzerConfig::defaults(target());
    let mut uninterrupted = Analyzer::new(config.clone(), T0);
    let mut first = Analyzer::new(config.clone(), T0);
    run(&mut uninterrupted, &store, T0 + 400).await;
    run(&mut first, &store, T0 + 200).await;
    let saved = serde_json::to_string(first.state()).unwrap();
    assert!(saved.len() < 8 * 1024, "state is {} bytes", saved.len());
    let state: AnalyzerState = serde_json::from_str(&saved).unwrap();
    let mut resumed = Analyzer::resume(config, state).unwrap();
    let a = run(&mut resumed, &store, T0 + 400).await;
    let b = uninterrupted.tick(&MeshProvider::new(&store), T0 + 410).await;
    let c = resumed.tick(&MeshProvider::new(&store), T0 + 410).await;
    assert_eq!(a.len(), 20);
    // The same verdict, numbers and all (the JSON round trip may move a float by one ulp).
    assert_eq!((b.result, &b.reason), (c.result, &c.reason));
    for (x, y) in b.per_metric.iter().zip(&c.per_metric) {
        assert_eq!((x.result, &x.reason), (y.result, &y.reason));
        let (x, y) = (x.evidence.unwrap(), y.evidence.unwrap());
        assert!((x - y).abs() <= 1e-12 * x.abs().max(1e-300), "{x} vs {y}");
    }
    assert_eq!(uninterrupted.state().judged_until, resumed.state().judged_until);
    assert_eq!(uninterrupted.state().step_canary_requests, resumed.state().step_canary_requests);
}

#[tokio::test]
async fn absolute_guards_judge_each_window() {
    let analysis = Analysis {
        metrics: vec![
            Metric {
                name: "sr".into(),
                kind: MetricKind::SuccessRate,
                mode: Some(MetricMode::Absolute),
                min_success_rate: Some(99.0),
                ..Default::default()
            },
            Metric {
                name: "p99".into(),
                kind: MetricKind::Latency,
                mode: Some(MetricMode::Absolute),
                max_latency_ms: Some(500.0),
                ..Default::default()
            },
        ],
        min_duration: Some("0s".into()),
        min_requests: Some(0),
        ..Default::default()
    };
    let store = Store::default();
    store.record("web-v1", T0, T0 + 20, 100, 0, 0);
    store.record("web-v2", T0, T0 + 10, 10, 0, 0);
    store.record("web-v2", T0 + 10, T0 + 20, 10, 1, 0);
    let mut analyzer = Analyzer::new(AnalyzerConfig::from_analysis(target(), &analysis).unwrap(), T0);
    let v = run(&mut analyzer, &store, T0 + 20).await;
    assert_eq!(v[0].result, VerdictResult::Pass, "{}", v[0].reason);
    assert_eq!(v[0].per_metric[1].reason, "canary p99 20 ms over 100 requests ≤ 500 ms");
    assert_eq!(v[1].result, VerdictResult::Fail);
    assert_eq!(v[1].reason, "sr: canary success rate 90.0% over 100 requests < 99%");
}

#[tokio::test]
async fn a_down_metrics_source_is_an_error_and_its_window_is_kept() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = PrometheusConfig::new(format!("http://127.0.0.1:{port}"));
    config.attempts = 2;
    config.backoff = std::time::Duration::from_millis(10);
    config.min_window_s = 10;
    let provider = PrometheusProvider::new(config).unwrap();
    let mut analyzer = Analyzer::new(AnalyzerConfig::defaults(target()), T0);
    let v = analyzer.tick(&provider, T0 + 10).await;
    assert_eq!(v.result, VerdictResult::Error);
    assert!(v.reason.contains("unreachable after 2 attempts"), "{}", v.reason);
    assert!(v.per_metric.iter().all(|m| m.result == VerdictResult::Error));
    // Nothing was judged: the next tick asks for the whole span again.
    assert_eq!(analyzer.state().judged_until, T0);
    let v = analyzer.tick(&provider, T0 + 20).await;
    assert_eq!((v.window_from, v.window_to), (T0, T0 + 20));
    assert_eq!(analyzer.state().consecutive_errors, 2);
}

/// 100 requests a second, 10% to a canary whose only endpoint refuses connections, three attempts
/// per request: stable answers almost every request (the retries), the canary fails ten attempts a
/// second and answers (with a failure) one request in ten seconds.
fn dead_canary(store: &Store, with_attempts: bool) {
    store.record("web-v1", T0 - 300, T0 + 300, 100, 0, 0);
    for t in (T0..T0 + 300).step_by(10) {
        store.record("web-v2", t, t + 1, 1, 1, 0);
    }
    if with_attempts {
        store.record_failed_attempts("web-v2", T0, T0 + 300, 10);
    }
}

#[tokio::test]
async fn a_dead_canary_endpoint_fails_on_its_first_tick_by_its_failed_attempts() {
    let store = Store::default();
    dead_canary(&store, true);
    let mut analyzer = Analyzer::new(AnalyzerConfig::defaults(target()), T0);
    let verdicts = run(&mut analyzer, &store, T0 + 300).await;
    let v = &verdicts[0];
    assert_eq!(v.result, VerdictResult::Fail, "{}", v.reason);
    assert!(
        v.reason.starts_with("success-rate: canary 100.0% failures vs stable 0.0% over 101 vs 1,000 attempts"),
        "{}",
        v.reason
    );
    assert!(
        v.reason.contains("counting 100 canary and 0 stable attempts that failed before reaching the backend"),
        "{}",
        v.reason
    );

    // The responses alone (what a source that cannot see attempts reports) hold one failure in ten
    // seconds: the same canary fails ticks later.
    let store = Store::default();
    dead_canary(&store, false);
    let mut analyzer = Analyzer::new(AnalyzerConfig::defaults(target()), T0);
    let verdicts = run(&mut analyzer, &store, T0 + 300).await;
    let fail = verdicts.iter().position(|v| v.result == VerdictResult::Fail).expect("a Fail eventually");
    assert!(fail >= 2, "failed at tick {fail}: {}", verdicts[fail].reason);
}

#[tokio::test]
async fn dial_failures_both_versions_share_do_not_blame_the_canary() {
    // A flaky network: one attempt in twenty fails to connect, whichever version it was for.
    let store = Store::default();
    store.record("web-v1", T0 - 300, T0 + 900, 90, 0, 1);
    store.record_failed_attempts("web-v1", T0 - 300, T0 + 900, 5);
    store.record("web-v2", T0, T0 + 900, 10, 0, 0);
    for t in (T0..T0 + 900).step_by(2) {
        store.record_failed_attempts("web-v2", t, t + 1, 1);
    }
    let mut analyzer = Analyzer::new(AnalyzerConfig::defaults(target()), T0);
    let verdicts = run(&mut analyzer, &store, T0 + 900).await;
    assert!(verdicts.iter().all(|v| v.result != VerdictResult::Fail), "{:?}", verdicts.last().map(|v| &v.reason));
    let last = &verdicts.last().unwrap().per_metric[0];
    assert!(last.reason.contains("attempts that failed before reaching the backend"), "{}", last.reason);
}
