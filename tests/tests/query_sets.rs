//! Each data plane's built-in Prometheus queries (`spec.analysis.provider.dataPlane`) against a
//! real Prometheus scraping an exporter that records requests the way that data plane does: the
//! provider reads each version's requests, failures and latency buckets over a window exactly,
//! counts nothing from before or after the window, from other workloads or twice (where the data
//! plane records a request at both ends), and the analyzer fails the canary that fails.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shifter_analysis::{
    Analyzer, AnalyzerConfig, BackendCounts, LATENCY_BUCKETS, MetricsProvider, PrometheusProvider, Target,
    VerdictResult,
};
use shifter_crds::canary::{Analysis, DataPlane, Provider, ProviderKind};
use shifter_proto::LATENCY_BOUNDS_MS;
use shifter_tests::{Exporter, Prometheus};

const STABLE: &str = "web-v1";
const CANARY: &str = "web-v2";

/// Latencies recorded, in milliseconds.
const FAST: f64 = 3.0;
const MEDIUM: f64 = 20.0;
const SLOW: f64 = 700.0;

/// Requests recorded alike by every data plane: (workload, namespace, status, latency ms, count).
type Requests = (&'static str, &'static str, u16, f64, u64);

const BEFORE_WINDOW: [Requests; 2] = [(STABLE, "shop", 200, FAST, 300), (CANARY, "shop", 200, FAST, 300)];

const IN_WINDOW: [Requests; 9] = [
    (STABLE, "shop", 200, FAST, 950),
    (STABLE, "shop", 404, FAST, 8),
    (STABLE, "shop", 200, MEDIUM, 40),
    (STABLE, "shop", 503, SLOW, 2),
    (CANARY, "shop", 200, FAST, 120),
    (CANARY, "shop", 200, MEDIUM, 20),
    (CANARY, "shop", 503, SLOW, 60),
    // Failing workloads that are not the rollout's: another one in the namespace, and one named as
    // the canary in another namespace.
    ("checkout", "shop", 503, SLOW, 500),
    (CANARY, "staging", 503, SLOW, 500),
];

const AFTER_WINDOW: [Requests; 2] = [(STABLE, "shop", 200, FAST, 100), (CANARY, "shop", 503, SLOW, 400)];

/// The window judged, in seconds.
const WINDOW_S: i64 = 10;

/// Istio's and Envoy's default histogram bounds, in milliseconds.
const ENVOY_BOUNDS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0,
    600000.0, 1800000.0, 3600000.0,
];

/// Records `requests` as `plane` does, every series it writes for them.
fn record(exporter: &Exporter, plane: DataPlane, requests: Requests) {
    let (workload, ns, code, ms, n) = requests;
    let failed = code >= 500;
    match plane {
        DataPlane::Shifter => {
            let labels = format!(
                "direction=\"outbound\",authority=\"web.{ns}.svc.cluster.local:80\",dst_namespace=\"{ns}\",dst_service=\"{workload}\""
            );
            let class = if failed { "failure" } else { "success" };
            exporter.add(format!("response_total{{{labels},classification=\"{class}\",status_code=\"{code}\"}}"), n);
            histogram(exporter, "response_latency_ms", &labels, &LATENCY_BOUNDS_MS, ms, n);
        }
        DataPlane::Linkerd => {
            // The caller's proxy records the request outbound, the workload's proxy inbound.
            let class = if failed { "failure" } else { "success" };
            let inbound = format!(
                "direction=\"inbound\",namespace=\"{ns}\",deployment=\"{workload}\",pod=\"{workload}-5d8f7c-x2x4k\",authority=\"web.{ns}.svc.cluster.local:8080\",tls=\"true\""
            );
            let outbound = format!(
                "direction=\"outbound\",namespace=\"{ns}\",deployment=\"loadgen\",dst_namespace=\"{ns}\",dst_deployment=\"{workload}\",authority=\"web.{ns}.svc.cluster.local:8080\""
            );
            for labels in [inbound, outbound] {
                exporter
                    .add(format!("response_total{{{labels},classification=\"{class}\",status_code=\"{code}\"}}"), n);
                histogram(exporter, "response_latency_ms", &labels, &LATENCY_BOUNDS_MS, ms, n);
            }
        }
        DataPlane::Istio => {
            // Both sidecars report the request: the client's as `source`, the server's as `destination`.
            for reporter in ["source", "destination"] {
                let labels = format!(
                    "reporter=\"{reporter}\",source_workload=\"loadgen\",source_workload_namespace=\"{ns}\",destination_workload=\"{workload}\",destination_workload_namespace=\"{ns}\",destination_service=\"{workload}.{ns}.svc.cluster.local\""
                );
                exporter.add(format!("istio_requests_total{{{labels},response_code=\"{code}\"}}"), n);
                histogram(exporter, "istio_request_duration_milliseconds", &labels, &ENVOY_BOUNDS_MS, ms, n);
            }
        }
        DataPlane::Envoy => {
            // Contour's statistics name for the cluster of a Service port.
            let labels = format!("envoy_cluster_name=\"{ns}_{workload}_8080\"");
            exporter.add(format!("envoy_cluster_upstream_rq{{{labels},envoy_response_code=\"{code}\"}}"), n);
            exporter.add(
                format!("envoy_cluster_upstream_rq_xx{{{labels},envoy_response_code_class=\"{}\"}}", code / 100),
                n,
            );
            histogram(exporter, "envoy_cluster_upstream_rq_time", &labels, &ENVOY_BOUNDS_MS, ms, n);
        }
    }
}

/// `n` observations of `ms` in the cumulative histogram `name` on `bounds`.
fn histogram(exporter: &Exporter, name: &str, labels: &str, bounds: &[f64], ms: f64, n: u64) {
    for bound in bounds {
        exporter.add(format!("{name}_bucket{{{labels},le=\"{bound}\"}}"), if ms <= *bound { n } else { 0 });
    }
    exporter.add(format!("{name}_bucket{{{labels},le=\"+Inf\"}}"), n);
    exporter.add(format!("{name}_count{{{labels}}}"), n);
    exporter.add(format!("{name}_sum{{{labels}}}"), (ms * n as f64) as u64);
}

/// Counts as the judges read them: latency on shifter's bounds, each `(bound, n)` in its bucket.
fn counts(requests: u64, failures: u64, latency: &[(f64, u64)]) -> BackendCounts {
    let mut c = BackendCounts::new(requests, failures);
    c.latency_counts = vec![0; LATENCY_BUCKETS];
    for (bound, n) in latency {
        let i = LATENCY_BOUNDS_MS.iter().position(|b| b == bound).expect("one of shifter's bounds");
        c.latency_counts[i] += n;
    }
    c
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn sleep_until(unix_s: i64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    if let Some(left) = Duration::from_secs(unix_s as u64).checked_sub(now) {
        tokio::time::sleep(left).await;
    }
}

/// Records the three phases around one window and checks what `plane`'s queries read of it.
/// `landing` is the bucket bound (of shifter's) where `plane` puts FAST, MEDIUM and SLOW requests.
async fn reads_each_version_exactly(plane: DataPlane, landing: [f64; 3]) {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start().await;
    let prometheus = Prometheus::start(dir.path(), &[exporter.addr]);
    prometheus.wait_for_targets_up(Duration::from_secs(30)).await;

    // Every series exists before the window: Prometheus counts a counter's growth from its first sample.
    for r in IN_WINDOW.iter().chain(&AFTER_WINDOW) {
        record(&exporter, plane, (r.0, r.1, r.2, r.3, 0));
    }
    for r in BEFORE_WINDOW {
        record(&exporter, plane, r);
    }
    // Traffic is recorded two seconds from either edge, clear of the scrape that opens or closes it.
    let from = now_s() + 3;
    let to = from + WINDOW_S;
    sleep_until(from + 2).await;
    for r in IN_WINDOW {
        record(&exporter, plane, r);
    }
    sleep_until(to + 2).await;
    for r in AFTER_WINDOW {
        record(&exporter, plane, r);
    }
    sleep_until(to + 4).await;

    let spec = Provider {
        kind: ProviderKind::Prometheus,
        address: Some(prometheus.url()),
        scrape_interval: Some("1s".into()),
        data_plane: Some(plane),
    };
    let provider = PrometheusProvider::from_spec(&spec).unwrap();
    let target =
        Target { namespace: "shop".into(), service: "web".into(), stable: STABLE.into(), canary: CANARY.into() };
    let [fast, medium, slow] = landing;
    let stable = provider.counts(&target, STABLE, from, to).await.unwrap();
    assert_eq!(stable, counts(1000, 2, &[(fast, 958), (medium, 40), (slow, 2)]), "{plane:?} stable");
    let canary = provider.counts(&target, CANARY, from, to).await.unwrap();
    assert_eq!(canary, counts(200, 60, &[(fast, 120), (medium, 20), (slow, 60)]), "{plane:?} canary");

    // The default comparative judges over the same window: 30% failures against 0.2% fail the canary.
    let config = AnalyzerConfig::from_analysis(target, &Analysis::default()).unwrap();
    let mut analyzer = Analyzer::new(config, from);
    let verdict = analyzer.tick(&provider, to).await;
    assert_eq!(verdict.result, VerdictResult::Fail, "{plane:?}: {}", verdict.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shifter_queries_read_the_proxies_outbound_metrics_by_backend_service() {
    reads_each_version_exactly(DataPlane::Shifter, [3.0, 20.0, 1000.0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkerd_queries_read_inbound_metrics_by_deployment() {
    reads_each_version_exactly(DataPlane::Linkerd, [3.0, 20.0, 1000.0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_queries_read_destination_reported_metrics_by_workload() {
    // Istio's bounds 5, 25 and 1000 ms land in shifter's buckets up to 5, 30 and 1000 ms.
    reads_each_version_exactly(DataPlane::Istio, [5.0, 30.0, 1000.0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_queries_read_upstream_cluster_metrics_by_contour_cluster_name() {
    reads_each_version_exactly(DataPlane::Envoy, [5.0, 30.0, 1000.0]).await;
}
