//! The gRPC server against a real tonic client over loopback, with an in-memory index.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use shifter_controller::Index;
use shifter_controller::metrics::ControllerMetrics;
use shifter_controller::server::{DestinationService, TelemetryService};
use shifter_controller::telemetry::TelemetryStore;
use shifter_proto::v1 as pb;
use shifter_proto::v1::destinations_client::DestinationsClient;
use shifter_proto::v1::telemetry_client::TelemetryClient;
use tokio::time::timeout;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};

fn mk_service(ns: &str, name: &str, port: i32) -> Service {
    Service {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() },
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort { port, name: Some("http".into()), ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Running {
    channel: Channel,
    index: Arc<Index>,
    metrics: Arc<ControllerMetrics>,
    telemetry: Arc<TelemetryStore>,
}

async fn start() -> Running {
    let index = Index::new();
    let metrics = Arc::new(ControllerMetrics::default());
    let telemetry = Arc::new(TelemetryStore::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Server::builder()
        .add_service(DestinationService::new(index.clone(), metrics.clone()))
        .add_service(TelemetryService::new(telemetry.clone(), metrics.clone()));
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    Running { channel, index, metrics, telemetry }
}

fn watch_request(authority: &str) -> pb::WatchRequest {
    pb::WatchRequest {
        authority: authority.into(),
        proxy: Some(pb::ProxyIdentity { id: "test".into(), ..Default::default() }),
        ..Default::default()
    }
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_snapshot_comes_at_once_and_again_only_on_relevant_changes() {
    let r = start().await;
    r.index.apply_service(&mk_service("shop", "web", 80));
    let mut client = DestinationsClient::new(r.channel.clone());
    let mut stream = client.watch(watch_request("web.shop.svc.cluster.local:80")).await.unwrap().into_inner();
    let first = timeout(WAIT, stream.message()).await.unwrap().unwrap().unwrap();
    assert!(first.exists);
    assert_eq!(first.routes[0].backends[0].service, "web");
    assert!(!first.digest.is_empty());

    // A change elsewhere sends nothing; a change to web sends a new snapshot.
    r.index.apply_service(&mk_service("other", "web", 80));
    r.index.apply_service(&mk_service("shop", "web", 8080));
    let second = timeout(WAIT, stream.message()).await.unwrap().unwrap().unwrap();
    assert!(second.version > first.version);
    assert!(!second.exists, "port 80 is gone from web");
    assert_ne!(second.digest, first.digest);
    assert_eq!(r.metrics.watch_streams.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_bad_authority_is_refused_with_the_fix() {
    let r = start().await;
    let mut client = DestinationsClient::new(r.channel.clone());
    let err = client.watch(watch_request("web:80")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("name.namespace"), "{}", err.message());
}

#[tokio::test]
async fn a_stalled_stream_does_not_delay_another() {
    let r = start().await;
    r.index.apply_service(&mk_service("shop", "web", 80));
    let mut stalled =
        DestinationsClient::new(r.channel.clone()).watch(watch_request("web.shop:80")).await.unwrap().into_inner();
    let _ = stalled.message().await.unwrap();
    let mut live =
        DestinationsClient::new(r.channel.clone()).watch(watch_request("web.shop:80")).await.unwrap().into_inner();
    let _ = live.message().await.unwrap();
    // Many changes while `stalled` reads nothing: `live` sees the newest promptly, and a burst is
    // coalesced rather than queued.
    for port in 1..=200 {
        r.index.apply_service(&mk_service("shop", "web", if port % 2 == 0 { 80 } else { 81 }));
    }
    let mut last = None;
    while let Ok(Ok(Some(s))) = timeout(Duration::from_millis(300), live.message()).await {
        last = Some(s);
    }
    assert!(last.unwrap().exists, "the newest state (port 80 present) arrived");
    let newest = timeout(WAIT, stalled.message()).await.unwrap().unwrap().unwrap();
    assert!(newest.version > 0);
}

/// A window of `requests` (one in ten failing) for `web-v2`, ending `end_ms` (unix ms), as a proxy
/// sends it.
fn window(end_ms: i64, requests: u64) -> pb::TelemetryWindow {
    let mut latency_counts = vec![0; shifter_controller::telemetry::LATENCY_BUCKETS];
    latency_counts[3] = requests;
    pb::TelemetryWindow {
        proxy: Some(pb::ProxyIdentity { id: "p1".into(), ..Default::default() }),
        start_unix_ms: end_ms - 1_000,
        end_unix_ms: end_ms,
        backends: vec![pb::BackendWindow {
            namespace: "shop".into(),
            service: "web".into(),
            backend: "web-v2".into(),
            requests,
            failures: requests / 10,
            latency_counts,
            latency_bounds_ms: shifter_proto::LATENCY_BOUNDS_MS.to_vec(),
            failed_attempts: 2,
            failed_attempts_by_reason: [("refused".to_string(), 2)].into(),
            ..Default::default()
        }],
        applied: vec![],
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn telemetry_windows_reach_the_store() {
    let r = start().await;
    let mut client = TelemetryClient::new(r.channel.clone());
    // Three whole seconds in the recent past.
    let base = (now_ms() / 1000 - 5) * 1000;
    let windows = (0..3).map(move |i| window(base + 1_000 * i + 500, 10));
    let ack = client.report(tokio_stream::iter(windows)).await.unwrap().into_inner();
    assert_eq!(ack.windows_received, 3);
    let c = r.telemetry.counts(&("shop".into(), "web".into(), "web-v2".into()), base / 1000, base / 1000 + 3);
    assert_eq!((c.requests, c.failures, c.failed_attempts), (30, 3, 6));
}

#[tokio::test]
async fn a_bad_window_ends_the_stream_with_invalid_argument_naming_the_field() {
    let r = start().await;
    let mut client = TelemetryClient::new(r.channel.clone());
    let now = now_ms();
    let mut bad = window(now, 10);
    bad.backends[0].latency_counts = vec![10, 0, 0];
    let mut ahead = window(now + 3_600_000, 10);
    ahead.start_unix_ms = ahead.end_unix_ms - 1_000;
    for (bad, field, reason) in
        [(bad, "backends[0].latency_counts", "latency_buckets"), (ahead, "end_unix_ms", "window_time")]
    {
        let status = client.report(tokio_stream::iter([window(now, 10), bad, window(now, 10)])).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(&format!("{field}: ")), "{}", status.message());
        let text = r.metrics.render();
        let line = format!("shifter_controller_telemetry_rejected_windows_total{{reason=\"{reason}\"}} 1");
        assert!(text.contains(&line), "{text}");
    }
    // The good windows before each bad one were kept; nothing of the bad ones, nor after them.
    let second = now.div_euclid(1000);
    let c = r.telemetry.counts(&("shop".into(), "web".into(), "web-v2".into()), second, second + 1);
    assert_eq!(c.requests, 20);
}

/// A sidecar asks by a redirected connection's original destination: a ClusterIP resolves to its
/// Service's snapshot (and follows it), an address no Service has gets one `exists: false` and the
/// stream ends, so the sidecar passes the connection through untouched.
#[tokio::test]
async fn a_sidecar_watches_by_cluster_ip_and_unknown_addresses_are_said_to_be_unknown() {
    let r = start().await;
    let mut web = mk_service("shop", "web", 80);
    web.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.10".into());
    r.index.apply_service(&web);
    let mut client = DestinationsClient::new(r.channel.clone());
    let mut stream = client.watch(watch_request("10.96.0.10:80")).await.unwrap().into_inner();
    let first = timeout(WAIT, stream.message()).await.unwrap().unwrap().unwrap();
    assert!(first.exists);
    assert_eq!(first.authority, "web.shop.svc.cluster.local:80");
    assert_eq!((first.namespace.as_str(), first.service.as_str()), ("shop", "web"));

    let mut unknown = client.watch(watch_request("10.96.0.99:80")).await.unwrap().into_inner();
    let said = timeout(WAIT, unknown.message()).await.unwrap().unwrap().unwrap();
    assert!(!said.exists);
    assert_eq!(said.authority, "10.96.0.99:80");
    assert!(timeout(WAIT, unknown.message()).await.unwrap().unwrap().is_none(), "the stream ends");
}
