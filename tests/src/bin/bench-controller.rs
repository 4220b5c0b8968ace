//! Control-plane benchmark: propagation latency from an API write to every connected proxy stream
//! receiving the new routing (1, 100 and 1,000 streams), and controller RSS with 10,000
//! TrafficSplits and 1,000 streams. Run by `bench/controller.sh`; prints a Markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use shifter_tests::Cluster;
use shifter_tests::cluster::ControllerProc;
use tokio::sync::mpsc;

mod proto {
    pub use shifter_proto::v1::*;
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

async fn channel(controller: &ControllerProc) -> tonic::transport::Channel {
    let ca = std::fs::read(&controller.ca).unwrap();
    tonic::transport::Channel::from_shared(format!("https://localhost:{}", controller.grpc.port()))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca)),
        )
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Opens `n` watch streams on `authorities` (round robin); each reports (stream, weight of the
/// first backend, arrival instant) for every snapshot.
async fn open_streams(
    controller: &ControllerProc,
    authorities: &[String],
    n: usize,
) -> mpsc::UnboundedReceiver<(usize, u64, Instant)> {
    let token: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", std::fs::read_to_string(&controller.token_file).unwrap().trim()).parse().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    // HTTP/2 multiplexes; a handful of connections carry all streams, as many proxies would.
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(channel(controller).await);
    }
    for i in 0..n {
        let token = token.clone();
        let mut client = proto::destinations_client::DestinationsClient::with_interceptor(
            channels[i % channels.len()].clone(),
            move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", token.clone());
                Ok(r)
            },
        );
        let tx = tx.clone();
        let authority = authorities[i % authorities.len()].clone();
        tokio::spawn(async move {
            let req = proto::WatchRequest { authority, ..Default::default() };
            let mut stream = client.watch(req).await.unwrap().into_inner();
            while let Ok(Some(snap)) = stream.message().await {
                let w = snap.routes.first().and_then(|r| r.backends.first()).map_or(0, |b| b.weight);
                if tx.send((i, w, Instant::now())).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

async fn propagation(cluster: &Cluster, controller: &ControllerProc, streams: usize, rounds: usize) -> (f64, f64, f64) {
    let client = cluster.client().await;
    let splits: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client,
        "bench",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("split.smi-spec.io", "v1alpha4", "TrafficSplit"),
            "trafficsplits",
        ),
    );
    let mut rx = open_streams(controller, &["web.bench.svc.cluster.local:80".to_string()], streams).await;
    // Wait for every stream's first snapshot.
    let mut ready = std::collections::HashSet::new();
    while ready.len() < streams {
        let (i, _, _) = rx.recv().await.unwrap();
        ready.insert(i);
    }
    let mut all_applied = Vec::new();
    let mut per_stream = Vec::new();
    for round in 0..rounds {
        let weight = 100 + round as u64;
        let patch = json!({"spec": {"backends": [{"service": "web-v1", "weight": weight}, {"service": "web-v2", "weight": 10}]}});
        let t0 = Instant::now();
        splits.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let mut got = std::collections::HashSet::new();
        let mut last = t0;
        while got.len() < streams {
            let (i, w, at) =
                tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("propagation").unwrap();
            if w == weight && got.insert(i) {
                per_stream.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                last = last.max(at);
            }
        }
        all_applied.push(last.duration_since(t0).as_secs_f64() * 1000.0);
    }
    all_applied.sort_by(f64::total_cmp);
    per_stream.sort_by(f64::total_cmp);
    (percentile(&per_stream, 0.5), percentile(&all_applied, 0.5), percentile(&all_applied, 0.99))
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn create_many(cluster: &Cluster, count: usize) {
    let client = cluster.client().await;
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "many");
    let splits: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client,
        "many",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("split.smi-spec.io", "v1alpha4", "TrafficSplit"),
            "trafficsplits",
        ),
    );
    let services = Arc::new(services);
    let splits = Arc::new(splits);
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (services, splits) = (services.clone(), splits.clone());
        tasks.push(tokio::spawn(async move {
            for i in (worker..count).step_by(16) {
                let svc = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}")},
                    "spec": {"ports": [{"name": "http", "port": 80}]}
                }))
                .unwrap();
                services.create(&PostParams::default(), &svc).await.unwrap();
                let ts = serde_json::from_value(json!({
                    "apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "metadata": {"name": format!("split-{i}")},
                    "spec": {"service": format!("svc-{i}"), "backends": [{"service": format!("svc-{i}-v1"), "weight": 90}, {"service": format!("svc-{i}-v2"), "weight": 10}]}
                }))
                .unwrap();
                splits.create(&PostParams::default(), &ts).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn wait_ready(controller: &ControllerProc) {
    let url = format!("http://{}/readyz", controller.admin);
    for _ in 0..600 {
        if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("controller never became ready");
}

#[tokio::main]
async fn main() {
    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: many}\n");
    for s in ["web", "web-v1", "web-v2"] {
        cluster.service("bench", s, Some(9));
    }
    cluster.apply("apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\nmetadata: {name: web, namespace: bench}\nspec:\n  service: web\n  backends: [{service: web-v1, weight: 90}, {service: web-v2, weight: 10}]\n");
    let controller = cluster.start_controller("bench-controller");
    wait_ready(&controller).await;
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(50);
    println!("| streams | per-stream p50 (ms) | all streams applied p50 (ms) | all streams applied p99 (ms) |");
    println!("|---:|---:|---:|---:|");
    for streams in [1, 100, 1000] {
        let (stream_p50, p50, p99) = propagation(&cluster, &controller, streams, rounds).await;
        println!("| {streams} | {stream_p50:.1} | {p50:.1} | {p99:.1} |");
    }
    drop(controller);

    let count: usize = std::env::var("SPLITS").ok().and_then(|r| r.parse().ok()).unwrap_or(10_000);
    let started = Instant::now();
    create_many(&cluster, count).await;
    let write_secs = started.elapsed().as_secs_f64();
    let controller = cluster.start_controller("rss-controller");
    wait_ready(&controller).await;
    let idle_before = rss_mib(controller.proc.pid());
    let authorities: Vec<String> = (0..1000).map(|i| format!("svc-{}.many.svc.cluster.local:80", i % count)).collect();
    let mut rx = open_streams(&controller, &authorities, 1000).await;
    let mut ready = std::collections::HashSet::new();
    while ready.len() < 1000 {
        let (i, _, _) = rx.recv().await.unwrap();
        ready.insert(i);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let loaded = rss_mib(controller.proc.pid());
    println!();
    println!(
        "| objects | API writes/s while loading | controller RSS after list (MiB) | controller RSS with 1,000 streams (MiB) |"
    );
    println!("|---:|---:|---:|---:|");
    println!(
        "| {count} Services + {count} TrafficSplits | {:.0} | {idle_before:.1} | {loaded:.1} |",
        (2 * count) as f64 / write_secs
    );
}
