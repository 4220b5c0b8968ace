//! The outbound listener (`HTTP_PROXY` style, routing by `Host`) end to end against made-up
//! hosts: the real API server, controller and proxy processes. Ten thousand distinct `Host`
//! headers nobody serves leave the proxy's resident memory within what its caps allow, and a real
//! service the proxy never saw still routes on its first request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shifter_proxy::Settings;
use shifter_tests::cluster::{ControllerProc, wait_until};
use shifter_tests::{Backend, Cluster, Proc, free_port};

/// What the proxy may hold after any number of made-up names, per entry its caps allow. The
/// negative cache keeps an 8-byte hash and an 8-byte expiry in a hash map plus a 16-byte slot in
/// its expiry queue, each with its collection's spare capacity; a watched destination keeps its
/// key, its routing-table channel, its watch task and that watch's HTTP/2 stream to the controller.
const PER_UNKNOWN_AUTHORITY: u64 = 96;
const PER_WATCHED_AUTHORITY: u64 = 16 * 1024;
/// Freed memory the allocator keeps for reuse (one arena per worker thread) rather than returning.
const ALLOCATOR_SLACK: u64 = 8 * 1024 * 1024;

/// Made-up hosts sent.
const JUNK: u64 = 10_000;
/// Requests in flight at once.
const CONCURRENCY: u64 = 16;

struct OutboundProxy {
    proc: Proc,
    outbound: SocketAddr,
    admin: SocketAddr,
}

/// `shifter proxy` with only an outbound listener, connected to `controller`.
fn start_outbound_proxy(cluster: &Cluster, controller: &ControllerProc) -> OutboundProxy {
    let outbound = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listener = ["--outbound".to_string(), outbound.to_string()];
    let (proc, admin) = cluster.spawn_proxy("outbound-proxy", controller, &listener, "warn");
    let proxy = OutboundProxy { proc, outbound, admin };
    wait_until(
        Duration::from_secs(30),
        || std::net::TcpStream::connect(proxy.outbound).is_ok(),
        || format!("the outbound proxy never listened:\n{}", proxy.proc.output()),
    );
    proxy
}

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb * 1024
}

/// `(status, x-backend)` of one GET through the outbound listener with `host` as the Host header.
async fn get(client: &reqwest::Client, outbound: SocketAddr, host: &str) -> (u16, String) {
    let response = client.get(format!("http://{outbound}/")).header("host", host).send().await.expect("an answer");
    let status = response.status().as_u16();
    let backend =
        response.headers().get("x-backend").map(|v| v.to_str().unwrap_or("?").to_string()).unwrap_or_default();
    let _ = response.bytes().await;
    (status, backend)
}

/// A host nobody serves, in the three shapes a client can make up: a Service name in a namespace
/// that has none by that name, a bare name, and an outside DNS name (the controller refuses the
/// last two outright).
fn junk_host(run: &str, i: u64) -> String {
    match i % 3 {
        0 => format!("{run}-{i}.shop"),
        1 => format!("{run}-{i}"),
        _ => format!("{run}-{i}.example.com:8080"),
    }
}

/// Sends `n` made-up hosts, `CONCURRENCY` at a time, and returns how many got each status.
async fn flood(client: &reqwest::Client, outbound: SocketAddr, run: &'static str, n: u64) -> Vec<(u16, u64)> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeMap::<u16, u64>::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return seen;
                }
                *seen.entry(get(&client, outbound, &junk_host(run, i)).await.0).or_default() += 1;
            }
        }));
    }
    let mut all = std::collections::BTreeMap::new();
    for t in tasks {
        for (status, count) in t.await.expect("flood task") {
            *all.entry(status).or_default() += count;
        }
    }
    all.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_made_up_hosts_leave_memory_bounded_and_a_real_service_routes_first_time() {
    let (web, api) = (Backend::start("web-v1").await, Backend::start("api-v1").await);
    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    cluster.service("shop", "web", Some(web.port()));
    cluster.service("shop", "api", Some(api.port()));
    let controller = cluster.start_controller("controller");
    let proxy = start_outbound_proxy(&cluster, &controller);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    // Warm up what every proxy allocates once: connections, runtime, the first watches.
    assert_eq!(get(&client, proxy.outbound, "web.shop").await, (200, "web-v1".to_string()));
    let warm = flood(&client, proxy.outbound, "warm", 300).await;
    assert_eq!(warm, [(503, 300)], "made-up hosts are answered 'service not found'");
    let before = rss_bytes(proxy.proc.pid());

    let statuses = flood(&client, proxy.outbound, "junk", JUNK).await;
    assert_eq!(statuses, [(503, JUNK)]);
    let after = rss_bytes(proxy.proc.pid());

    // A real service the proxy never saw routes on its very first request, and one it already
    // knew still does.
    assert_eq!(get(&client, proxy.outbound, "api.shop").await, (200, "api-v1".to_string()));
    assert_eq!(get(&client, proxy.outbound, "web.shop").await, (200, "web-v1".to_string()));

    let settings = Settings::default();
    let bound = settings.max_unknown_authorities as u64 * PER_UNKNOWN_AUTHORITY
        + settings.max_authorities as u64 * PER_WATCHED_AUTHORITY
        + ALLOCATOR_SLACK;
    let growth = after.saturating_sub(before);
    println!(
        "outbound proxy RSS: {:.1} MiB before, {:.1} MiB after {JUNK} made-up hosts: growth {:.2} MiB (bound {:.1} MiB)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        growth as f64 / 1048576.0,
        bound as f64 / 1048576.0
    );
    assert!(growth <= bound, "RSS grew by {growth} bytes, more than the {bound} its caps allow");

    // What the proxy holds is within its caps, and no made-up name became a metric label.
    let config: serde_json::Value = serde_json::from_str(
        &reqwest::get(format!("http://{}/config", proxy.admin)).await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    let table = &config["outbound"];
    assert!(table["watched"].as_u64().unwrap() <= settings.max_authorities as u64, "{table}");
    assert!(table["unknown"].as_u64().unwrap() <= settings.max_unknown_authorities as u64, "{table}");
    let metrics = reqwest::get(format!("http://{}/metrics", proxy.admin)).await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("junk-"), "a made-up host became a label");
}
