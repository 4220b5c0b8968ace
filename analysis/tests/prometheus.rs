//! The Prometheus provider against a real Prometheus (Debian package `prometheus`, installed by
//! `scripts/install-test-tools.sh`) scraping a small exporter this test runs, whose counters grow
//! at known rates: the canary fails 10% of requests, stable 0.5%.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shifter_analysis::{
    Analyzer, AnalyzerConfig, MetricsProvider, PrometheusConfig, PrometheusProvider, ProviderError, Target,
    VerdictResult,
};
use shifter_crds::canary::{Analysis, Metric, MetricKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// Per second: (backend, authority, successes, failures, requests ≤ 20 ms, requests ≤ 500 ms).
const RATES: [(&str, &str, u64, u64, u64, u64); 3] = [
    ("web-v2", "web.shop:80", 9, 1, 8, 2),
    ("web-v1", "web.shop:80", 199, 1, 196, 4),
    // Traffic to web-v2 through another apex must not count.
    ("web-v2", "other.shop:80", 1000, 1000, 2000, 0),
];

fn exposition(elapsed_ms: u64) -> String {
    let n = |per_second: u64| per_second * elapsed_ms / 1000;
    let mut out = String::from("# TYPE response_total counter\n");
    for (backend, authority, ok, failed, _, _) in RATES {
        let l = format!(
            "direction=\"outbound\",authority=\"{authority}\",dst_namespace=\"shop\",dst_service=\"{backend}\""
        );
        out.push_str(&format!("response_total{{{l},classification=\"success\",status_code=\"200\"}} {}\n", n(ok)));
        out.push_str(&format!("response_total{{{l},classification=\"failure\",status_code=\"503\"}} {}\n", n(failed)));
    }
    out.push_str("# TYPE response_latency_ms histogram\n");
    for (backend, authority, _, _, fast, slow) in RATES {
        let l = format!(
            "direction=\"outbound\",authority=\"{authority}\",dst_namespace=\"shop\",dst_service=\"{backend}\""
        );
        for (i, bound) in shifter_proto::LATENCY_BOUNDS_MS.iter().enumerate() {
            let cumulative = if i < 6 {
                0
            } else if *bound < 500.0 {
                n(fast)
            } else {
                n(fast) + n(slow)
            };
            out.push_str(&format!("response_latency_ms_bucket{{{l},le=\"{bound}\"}} {cumulative}\n"));
        }
        out.push_str(&format!("response_latency_ms_bucket{{{l},le=\"+Inf\"}} {}\n", n(fast) + n(slow)));
        out.push_str(&format!("response_latency_ms_count{{{l}}} {}\n", n(fast) + n(slow)));
    }
    out
}

/// Serves `/metrics` on a free loopback port.
async fn exporter() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = Arc::new(Instant::now());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let started = started.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let body = exposition(started.elapsed().as_millis() as u64);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
            });
        }
    });
    port
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn find_prometheus() -> String {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file());
    match found {
        Some(p) => p.to_string_lossy().into_owned(),
        None => panic!(
            "the `prometheus` binary is not on PATH; install it with scripts/install-test-tools.sh \
             (Debian package `prometheus`) — this test needs a real Prometheus"
        ),
    }
}

struct Prometheus {
    _child: Child,
    _dir: tempfile::TempDir,
    address: String,
}

async fn start_prometheus(target_port: u16) -> Prometheus {
    let binary = find_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus");
    Prometheus { _child: child, _dir: dir, address: format!("http://127.0.0.1:{port}") }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn target() -> Target {
    Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() }
}

fn provider(address: &str) -> PrometheusProvider {
    let mut config = PrometheusConfig::new(address);
    config.timeout = Duration::from_secs(3);
    config.min_window_s = 4;
    PrometheusProvider::new(config).unwrap()
}

/// Waits (bounded) until Prometheus holds `seconds` of scrapes of the exporter.
async fn wait_for_scrapes(p: &PrometheusProvider, seconds: u32) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let query = format!("count_over_time(up{{job=\"app\"}}[{}s])", seconds + 2);
    loop {
        if let Ok(samples) = p.query(&query, now()).await
            && samples.first().is_some_and(|s| s.value >= seconds as f64)
        {
            return;
        }
        assert!(Instant::now() < deadline, "Prometheus did not scrape the exporter {seconds} times within 90 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn near(actual: u64, expected: f64, what: &str) {
    let (lo, hi) = (expected * 0.7, expected * 1.3);
    assert!((actual as f64) >= lo && (actual as f64) <= hi, "{what}: {actual}, expected about {expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_provider_reads_counts_judges_and_reports_missing_data() {
    let exporter_port = exporter().await;
    let prometheus = start_prometheus(exporter_port).await;
    let p = provider(&prometheus.address);
    wait_for_scrapes(&p, 12).await;

    // Built-in counts over a 10 s window, only through the apex `web`.
    let to = now() - 1;
    let canary = p.counts(&target(), "web-v2", to - 10, to).await.unwrap();
    near(canary.requests, 100.0, "canary requests");
    near(canary.failures, 10.0, "canary failures");
    near(canary.latency_counts[6], 80.0, "canary requests ≤ 20 ms");
    near(canary.latency_counts[14], 20.0, "canary requests in (400, 500] ms");
    assert_eq!(canary.latency_counts.len(), shifter_analysis::LATENCY_BUCKETS);
    assert_eq!(canary.latency_counts.iter().sum::<u64>() - canary.latency_counts[6] - canary.latency_counts[14], 0);
    let stable = p.counts(&target(), "web-v1", to - 10, to).await.unwrap();
    near(stable.requests, 2000.0, "stable requests");
    near(stable.failures, 10.0, "stable failures");

    // A backend without series is an empty result: Inconclusive, with the query in the reason.
    let missing = p.counts(&target(), "web-v3", to - 10, to).await.unwrap_err();
    assert!(matches!(missing, ProviderError::EmptyResult { .. }), "{missing}");
    assert!(missing.to_string().contains("returned no series"), "{missing}");

    // Custom queries: a value, NaN, an empty result and a bad query are four different answers.
    let t = target();
    let ratio = "sum(increase(response_total{dst_service=\"{{backend}}\",authority=\"web.shop:80\",classification=\"failure\"}[{{interval}}])) / sum(increase(response_total{dst_service=\"{{backend}}\",authority=\"web.shop:80\"}[{{interval}}]))";
    let query = shifter_analysis::provider::render_template(ratio, &t, 10);
    let value = p.custom(&query, &t, to - 10, to).await.unwrap();
    assert!((value - 0.1).abs() < 0.03, "failure ratio {value}");
    let nan = p.custom("vector(0) / vector(0)", &t, to - 10, to).await.unwrap_err();
    assert!(matches!(nan, ProviderError::NotANumber { .. }), "{nan}");
    let empty = p.custom("absent_metric_total", &t, to - 10, to).await.unwrap_err();
    assert!(matches!(empty, ProviderError::EmptyResult { .. }), "{empty}");
    let bad = p.custom("sum(", &t, to - 10, to).await.unwrap_err();
    assert!(matches!(bad, ProviderError::Query { .. }), "{bad}");
    assert!(!bad.is_missing_data() && nan.is_missing_data() && empty.is_missing_data());

    // The analyzer over Prometheus: the canary's 10% failures against stable's 0.5% fail it,
    // and a custom metric that returns NaN stays Inconclusive rather than failing or passing.
    let analysis = Analysis {
        metrics: vec![
            Metric { name: "success-rate".into(), kind: MetricKind::SuccessRate, ..Default::default() },
            Metric {
                name: "nan".into(),
                kind: MetricKind::Custom,
                query: Some("vector(0) / vector(0)".into()),
                max: Some(1.0),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let config = AnalyzerConfig::from_analysis(t.clone(), &analysis).unwrap();
    let to = now() - 1;
    let mut analyzer = Analyzer::new(config, to - 10);
    let v = analyzer.tick(&p, to).await;
    assert_eq!(v.result, VerdictResult::Fail, "{}", v.reason);
    assert!(v.reason.starts_with("success-rate: canary 10."), "{}", v.reason);
    assert_eq!(v.per_metric[1].result, VerdictResult::Inconclusive, "{}", v.per_metric[1].reason);
    assert!(v.per_metric[1].reason.contains("returned NaN"), "{}", v.per_metric[1].reason);

    // Too short a window is not queried.
    let v = analyzer.tick(&p, to + 2).await;
    assert_eq!(v.result, VerdictResult::Inconclusive);
    assert!(v.reason.contains("waiting for a full window: 2s of 4s"), "{}", v.reason);
}
