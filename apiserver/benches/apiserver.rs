//! Throughput and fan-out of the embedded API server, measured end to end through kube-rs over
//! HTTPS on loopback: durable writes per second, and how long a change takes to reach each of
//! 1,000 concurrent watchers. Run with `cargo bench -p shifter-apiserver --bench apiserver`;
//! results are recorded in `bench/APISERVER.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use shifter_apiserver::{ApiServer, Config};
use tokio::sync::Mutex;

const WRITERS: usize = 16;
const WRITES: usize = 4_000;
const WATCHERS: usize = 1_000;
const CLIENTS: usize = 20;
const UPDATES: usize = 100;
const UPDATE_GAP: Duration = Duration::from_millis(50);

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn client(server: &ApiServer) -> kube::Client {
    let kc = Kubeconfig::read_from(server.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn writes(server: &ApiServer, writers: usize) -> (f64, Vec<f64>) {
    let api: Api<ConfigMap> = Api::namespaced(client(server).await, "default");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (api, next) = (api.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= WRITES {
                    return lat;
                }
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": format!("w{writers}-{w}-{i}")}, "data": {"i": i.to_string()}}),
                )
                .unwrap();
                let t = Instant::now();
                api.create(&PostParams::default(), &cm).await.expect("write succeeds");
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let rate = WRITES as f64 / started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (rate, lat)
}

async fn watch_latency(server: &ApiServer) -> (Vec<f64>, usize, Duration) {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(client(server).await);
    }
    let writer: Api<ConfigMap> = Api::namespaced(clients[0].clone(), "default");
    let target: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "watched"}, "data": {"t": "0"}})).unwrap();
    let rv = writer.create(&PostParams::default(), &target).await.unwrap().metadata.resource_version.unwrap();
    let samples = Arc::new(Mutex::new(Vec::with_capacity(WATCHERS * UPDATES)));
    let ready = Arc::new(AtomicUsize::new(0));
    let open_started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..WATCHERS {
        let api: Api<ConfigMap> = Api::namespaced(clients[i % CLIENTS].clone(), "default");
        let (samples, ready, rv) = (samples.clone(), ready.clone(), rv.clone());
        tasks.push(tokio::spawn(async move {
            let wp = WatchParams::default().fields("metadata.name=watched").timeout(290);
            let mut stream = api.watch(&wp, &rv).await.expect("watch opens").boxed();
            ready.fetch_add(1, Ordering::Relaxed);
            let mut mine = Vec::with_capacity(UPDATES);
            while mine.len() < UPDATES {
                match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
                    Ok(Some(Ok(WatchEvent::Modified(cm)))) => {
                        let sent: u128 = cm.data.unwrap()["t"].parse().unwrap();
                        mine.push((now_us() - sent) as f64 / 1000.0);
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            samples.lock().await.extend(mine);
        }));
    }
    while ready.load(Ordering::Relaxed) < WATCHERS {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_time = open_started.elapsed();
    for _ in 0..UPDATES {
        let patch = json!({"data": {"t": now_us().to_string()}});
        writer.patch("watched", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        tokio::time::sleep(UPDATE_GAP).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut s = std::mem::take(&mut *samples.lock().await);
    s.sort_by(f64::total_cmp);
    let n = s.len();
    (s, n, open_time)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string())).unwrap();
        let server = ApiServer::start(Config::ephemeral(dir.path())).await.unwrap();
        println!("| measurement | result |");
        println!("| --- | --- |");
        for writers in [1, WRITERS] {
            let (rate, lat) = writes(&server, writers).await;
            println!(
                "| creates, {writers} concurrent writer(s), {WRITES} ConfigMaps | {rate:.0} writes/s (latency p50 {:.2} ms, p99 {:.2} ms) |",
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
        }
        let (lat, n, open) = watch_latency(&server).await;
        println!("| opening {WATCHERS} watches over {CLIENTS} clients | {:.2} s |", open.as_secs_f64());
        println!(
            "| update → event at each of {WATCHERS} watchers, {UPDATES} updates {} ms apart | p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {n} of {} events delivered |",
            UPDATE_GAP.as_millis(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.9),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            WATCHERS * UPDATES
        );
        server.shutdown().await;
    });
}
