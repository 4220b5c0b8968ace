//! How the Prometheus provider fails: each failure is told apart, retried when it may pass, and
//! turned into an Error verdict (never Pass or Fail) by the analyzer. No Prometheus needed: a
//! loopback server plays a broken one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shifter_analysis::{
    Analyzer, AnalyzerConfig, AnyProvider, BackendCounts, MeshSource, MetricsProvider, PrometheusConfig,
    PrometheusProvider, ProviderError, Target, VerdictResult,
};
use shifter_crds::canary::{Provider, ProviderKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn target() -> Target {
    Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() }
}

/// A server answering every request with `status` and `body`, or never answering when `status` is
/// 0; returns its address and a request counter.
async fn broken(status: u16, body: &'static str) -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU32::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                counter.fetch_add(1, Ordering::SeqCst);
                if status == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (address, requests)
}

fn provider(address: &str) -> PrometheusProvider {
    let mut config = PrometheusConfig::new(address);
    config.timeout = Duration::from_millis(300);
    config.attempts = 3;
    config.backoff = Duration::from_millis(10);
    config.min_window_s = 10;
    PrometheusProvider::new(config).unwrap()
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_after_every_attempt() {
    let (address, requests) = broken(0, "").await;
    let err = provider(&address).counts(&target(), "web-v2", 0, 10).await.unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { timeout_ms: 300, attempts: 3, .. }), "{err}");
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    assert!(!err.is_missing_data());
}

#[tokio::test]
async fn the_deadline_bounds_a_query_with_every_attempt_included() {
    let (address, requests) = broken(0, "").await;
    let mut config = PrometheusConfig::new(&address);
    config.timeout = Duration::from_millis(300);
    config.backoff = Duration::from_millis(10);
    config.attempts = 3;
    config.deadline = Duration::from_millis(450);
    let started = std::time::Instant::now();
    let err = PrometheusProvider::new(config).unwrap().custom("up", &target(), 0, 10).await.unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { timeout_ms: 450, .. }), "{err}");
    assert_eq!(requests.load(Ordering::SeqCst), 2, "the third attempt would end past the deadline");
    assert!(started.elapsed() < Duration::from_millis(300 * 3), "three full attempts were not waited for");
}

#[tokio::test]
async fn an_answer_larger_than_the_limit_is_refused_not_buffered() {
    use shifter_analysis::provider::prometheus::MAX_RESPONSE_BYTES;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU32::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                // No Content-Length: the body ends when the connection closes, and never does here
                // before far more than the limit was offered.
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..(8 * MAX_RESPONSE_BYTES / chunk.len()) {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    let err = provider(&address).custom("up", &target(), 0, 10).await.unwrap_err();
    assert!(err.to_string().contains("larger than 8 MiB"), "{err}");
    let chunks = sent.load(Ordering::SeqCst) as usize;
    assert!(chunks < 8 * MAX_RESPONSE_BYTES / (64 * 1024), "the reader stopped long before the server was done");
}

#[tokio::test]
async fn server_errors_are_retried_and_bad_queries_are_not() {
    let (address, requests) = broken(503, "overloaded").await;
    let err = provider(&address).custom("up", &target(), 0, 10).await.unwrap_err();
    assert_eq!(err.to_string(), format!("metrics source {address} answered HTTP 503: overloaded"));
    assert_eq!(requests.load(Ordering::SeqCst), 3);

    let body = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
    let (address, requests) = broken(400, body).await;
    let err = provider(&address).custom("sum(", &target(), 0, 10).await.unwrap_err();
    assert_eq!(err.to_string(), "query rejected (bad_data): parse error at char 5; query: sum(");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_empty_answer_is_inconclusive_and_a_broken_one_is_an_error() {
    let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    let (address, _) = broken(200, empty).await;
    let mut analyzer = Analyzer::new(AnalyzerConfig::defaults(target()), 0);
    let v = analyzer.tick(&provider(&address), 10).await;
    assert_eq!(v.result, VerdictResult::Inconclusive, "{}", v.reason);
    assert!(v.reason.starts_with("canary web-v2: query returned no series"), "{}", v.reason);
    assert!(v.reason.contains("; stable web-v1: query returned no series"), "{}", v.reason);
    assert_eq!(analyzer.state().judged_until, 10);

    let (address, _) = broken(200, "<html>not prometheus</html>").await;
    let v = analyzer.tick(&provider(&address), 20).await;
    assert_eq!(v.result, VerdictResult::Error, "{}", v.reason);
    assert!(v.reason.contains("answered HTTP 200"), "{}", v.reason);
    assert_eq!(analyzer.state().judged_until, 10);
}

struct NoMesh;

impl MeshSource for NoMesh {
    fn counts(&self, _: &str, _: &str, _: &str, _: i64, _: i64) -> BackendCounts {
        BackendCounts::default()
    }
}

#[test]
fn the_canary_spec_chooses_the_provider() {
    let mesh = AnyProvider::from_spec(&Provider::default(), NoMesh).ok().unwrap();
    assert!(matches!(mesh, AnyProvider::Mesh(_)));
    let mut spec = Provider {
        kind: ProviderKind::Prometheus,
        address: Some("http://prometheus:9090/".into()),
        ..Provider::default()
    };
    match AnyProvider::from_spec(&spec, NoMesh).ok().unwrap() {
        AnyProvider::Prometheus(p) => {
            assert_eq!(p.config().address, "http://prometheus:9090");
            assert_eq!(p.config().min_window_s, 60, "15 s scrapes by default, four per window");
        }
        AnyProvider::Mesh(_) => panic!("expected prometheus"),
    }
    spec.scrape_interval = Some("2s".into());
    match AnyProvider::from_spec(&spec, NoMesh).ok().unwrap() {
        AnyProvider::Prometheus(p) => assert_eq!(p.config().min_window_s, 8, "four 2 s scrapes"),
        AnyProvider::Mesh(_) => panic!("expected prometheus"),
    }
    spec.scrape_interval = Some("10m".into());
    let err = AnyProvider::from_spec(&spec, NoMesh).err().unwrap();
    assert!(err.to_string().starts_with("spec.analysis.provider.scrapeInterval: "), "{err}");
    let spec = Provider { kind: ProviderKind::Prometheus, address: None, ..Provider::default() };
    let err = AnyProvider::from_spec(&spec, NoMesh).err().unwrap();
    assert!(err.to_string().starts_with("spec.analysis.provider.address: "), "{err}");
}

#[test]
fn a_tick_can_run_on_a_spawned_task() {
    fn spawnable<T: Send + 'static>(_: T) {}
    let provider = AnyProvider::from_spec(&Provider::default(), NoMesh).ok().unwrap();
    let mut analyzer = Analyzer::new(AnalyzerConfig::defaults(target()), 0);
    spawnable(async move { analyzer.tick(&provider, 10).await });
}
