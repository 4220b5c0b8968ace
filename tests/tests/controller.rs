//! The controller end to end: the real API server, controller and proxy processes, real HTTP
//! backends, and the real kubectl. A TrafficSplit applied with kubectl routes traffic; patches
//! move it; status and Events tell the truth; a killed leader is replaced without losing traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use shifter_tests::cluster::{ProxyProc, wait_until};
use shifter_tests::{Backend, Cluster};

const AUTHORITY: &str = "web.shop.svc.cluster.local:80";

/// Sends `n` requests through the proxy and counts answers per backend (by `x-backend`), with
/// failures counted as `error:<status>`.
async fn send(gateway: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let key = match client.get(format!("http://{gateway}/")).send().await {
            Ok(r) if r.status().is_success() => {
                r.headers().get("x-backend").map_or("?".into(), |v| v.to_str().unwrap().to_string())
            }
            Ok(r) => format!("error:{}", r.status().as_u16()),
            Err(e) => format!("error:{e}"),
        };
        *seen.entry(key).or_default() += 1;
    }
    seen
}

/// Waits until 20 requests in a row all land on `backends` (each at least once when several).
async fn wait_for_routing(gateway: SocketAddr, backends: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = send(gateway, 40).await;
        let only_expected = seen.keys().all(|k| backends.contains(&k.as_str()));
        let all_present = backends.iter().all(|b| seen.contains_key(*b));
        if only_expected && all_present {
            return;
        }
        assert!(Instant::now() < deadline, "routing never settled on {backends:?}; last saw {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn share(seen: &BTreeMap<String, usize>, backend: &str) -> f64 {
    let total: usize = seen.values().sum();
    *seen.get(backend).unwrap_or(&0) as f64 * 100.0 / total as f64
}

fn split_yaml(weights: &[(&str, u32)]) -> String {
    let mut yaml = String::from(
        "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: web, namespace: shop}\nspec:\n  service: web\n  backends:\n",
    );
    for (s, w) in weights {
        yaml.push_str(&format!("  - {{service: {s}, weight: {w}}}\n"));
    }
    yaml
}

fn split_json(cluster: &Cluster) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", "ts", "web", "-n", "shop", "-o", "json"])).unwrap()
}

fn condition(split: &Value, type_: &str) -> (String, String) {
    let c = split["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == type_);
    c.map_or((String::new(), String::new()), |c| {
        (c["status"].as_str().unwrap_or_default().into(), c["reason"].as_str().unwrap_or_default().into())
    })
}

fn weight_events(cluster: &Cluster) -> Vec<String> {
    let out = cluster.kubectl_ok(&["get", "events.events.k8s.io", "-n", "shop", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "WeightsChanged")
        .map(|e| e["note"].as_str().unwrap_or_default().to_string())
        .collect()
}

struct Shop {
    cluster: Cluster,
    web: Backend,
    v1: Backend,
    v2: Backend,
}

async fn shop() -> Shop {
    let cluster = Cluster::start().await;
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let (web, v1, v2) = (Backend::start("web").await, Backend::start("web-v1").await, Backend::start("web-v2").await);
    cluster.service("shop", "web", Some(web.port()));
    cluster.service("shop", "web-v1", Some(v1.port()));
    Shop { cluster, web, v1, v2 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_splits_patches_and_deletes_move_routed_traffic() {
    let s = shop().await;
    let controller = s.cluster.start_controller("controller-a");
    let proxy: ProxyProc = s.cluster.start_proxy("proxy-a", AUTHORITY, &controller);

    // No split: the apex Service serves.
    wait_for_routing(proxy.gateway, &["web"]).await;

    // A split naming a backend whose Service does not exist yet: it gets nothing, status says why.
    s.cluster.apply(&split_yaml(&[("web-v1", 90), ("web-v2", 10)]));
    wait_for_routing(proxy.gateway, &["web-v1"]).await;
    wait_until(
        Duration::from_secs(20),
        || condition(&split_json(&s.cluster), "ResolvedRefs").1 == "BackendNotFound",
        || format!("ResolvedRefs never said BackendNotFound: {}", split_json(&s.cluster)["status"]),
    );

    // The missing Service appears: it starts receiving its share.
    s.cluster.service("shop", "web-v2", Some(s.v2.port()));
    wait_for_routing(proxy.gateway, &["web-v1", "web-v2"]).await;
    let seen = send(proxy.gateway, 1000).await;
    assert!((share(&seen, "web-v2") - 10.0).abs() < 4.0, "90/10 split observed as {seen:?}");

    // kubectl patch moves the weights; traffic follows.
    s.cluster.kubectl_ok(&[
        "patch",
        "ts",
        "web",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"spec":{"backends":[{"service":"web-v1","weight":50},{"service":"web-v2","weight":50}]}}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = send(proxy.gateway, 400).await;
        if (share(&seen, "web-v2") - 50.0).abs() < 8.0 {
            break;
        }
        assert!(Instant::now() < deadline, "traffic never followed the patch: {seen:?}");
    }

    // Status: accepted, resolved, programmed, with the effective split; kubectl wait agrees.
    s.cluster.kubectl_ok(&["wait", "ts/web", "-n", "shop", "--for=condition=Programmed", "--timeout=30s"]);
    wait_until(
        Duration::from_secs(20),
        || split_json(&s.cluster)["status"]["split"] == "web-v1=50% web-v2=50%",
        || format!("status.split: {}", split_json(&s.cluster)["status"]),
    );
    let split = split_json(&s.cluster);
    assert_eq!(condition(&split, "Accepted").0, "True");
    assert_eq!(condition(&split, "ResolvedRefs").0, "True");
    assert_eq!(split["status"]["observedGeneration"], split["metadata"]["generation"]);
    let table = s.cluster.kubectl_ok(&["get", "ts", "-n", "shop"]);
    assert!(table.contains("web-v1=50% web-v2=50%"), "kubectl get ts shows the split:\n{table}");

    // Every weight change is an Event naming old → new and who made it.
    wait_until(
        Duration::from_secs(20),
        || weight_events(&s.cluster).iter().any(|n| n.contains("90→50")),
        || format!("events: {:?}", weight_events(&s.cluster)),
    );
    let events = weight_events(&s.cluster);
    let patch_event = events.iter().find(|n| n.contains("90→50")).unwrap();
    assert!(patch_event.contains("web-v2 10→50") && patch_event.contains("by kubectl"), "{patch_event}");

    // The controller's own metrics count the proxy stream and the pushes.
    let metrics = reqwest::get(format!("http://{}/metrics", controller.admin)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("shifter_controller_connected_proxies 1"), "{metrics}");
    assert!(metrics.contains("shifter_controller_leader 1"));
    let pushes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("shifter_controller_snapshot_pushes_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(pushes >= 3, "a snapshot per change: {pushes}");

    // Deleting the split returns traffic to the plain Service.
    s.cluster.kubectl_ok(&["delete", "ts", "web", "-n", "shop"]);
    wait_for_routing(proxy.gateway, &["web"]).await;
    assert!(s.web.served() > 0 && s.v1.served() > 0 && s.v2.served() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_traffic_never_stops() {
    let s = shop().await;
    s.cluster.service("shop", "web-v2", Some(s.v2.port()));
    s.cluster.apply(&split_yaml(&[("web-v1", 50), ("web-v2", 50)]));
    let mut a = s.cluster.start_controller("controller-a");
    wait_until(
        Duration::from_secs(20),
        || s.cluster.lease_holder() == "controller-a",
        || "controller-a never led".into(),
    );
    let b = s.cluster.start_controller("controller-b");
    let via_a = s.cluster.start_proxy("proxy-a", AUTHORITY, &a);
    let via_b = s.cluster.start_proxy("proxy-b", AUTHORITY, &b);
    wait_for_routing(via_a.gateway, &["web-v1", "web-v2"]).await;
    wait_for_routing(via_b.gateway, &["web-v1", "web-v2"]).await;
    wait_until(Duration::from_secs(20), || !weight_events(&s.cluster).is_empty(), || "no initial event".into());

    // Kill the leader mid-traffic. Both proxies keep routing: one fail-static, one via b. Traffic
    // runs until well after b took over, and each batch is marked before or after the takeover,
    // so the samples span the whole handover.
    let took_over = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let batches: Arc<[AtomicUsize; 2]> = Arc::default();
    let (after, done, counted) = (took_over.clone(), stop.clone(), batches.clone());
    let traffic = tokio::spawn(async move {
        let mut totals = BTreeMap::new();
        while !done.load(Ordering::SeqCst) {
            let phase = usize::from(after.load(Ordering::SeqCst));
            for (k, v) in send(via_a.gateway, 10).await.into_iter().chain(send(via_b.gateway, 10).await) {
                *totals.entry(k).or_insert(0) += v;
            }
            counted[phase].fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (totals, via_a, via_b)
    });
    a.proc.kill();
    let killed_at = Instant::now();
    // The worst case, from the lease settings: the leader renewed just before dying, b last looked
    // just before that renewal and looks again one retry later, then waits out the whole lease.
    let lease = shifter_controller::lease::LeaseConfig::new("default", "b");
    let bound = lease.duration + lease.retry + Duration::from_secs(1);
    wait_until(
        bound + Duration::from_secs(10),
        || s.cluster.lease_holder() == "controller-b",
        || format!("controller-b never took over; holder is {:?}", s.cluster.lease_holder()),
    );
    let failover = killed_at.elapsed();
    took_over.store(true, Ordering::SeqCst);
    assert!(failover < bound, "failover took {failover:?}, longer than the lease allows ({bound:?})");
    // Traffic goes on past the takeover, through the new leader's first snapshots.
    wait_until(
        Duration::from_secs(30),
        || batches[1].load(Ordering::SeqCst) >= 10,
        || "traffic stopped after the takeover".into(),
    );
    stop.store(true, Ordering::SeqCst);
    let (totals, _via_a, via_b) = traffic.await.unwrap();
    assert!(batches[0].load(Ordering::SeqCst) > 0, "traffic while the lease was orphaned: {batches:?}");
    assert!(totals.keys().all(|k| !k.starts_with("error")), "requests failed during failover: {totals:?}");

    // The new leader writes status and records each change once.
    let before = weight_events(&s.cluster).len();
    s.cluster.apply(&split_yaml(&[("web-v1", 20), ("web-v2", 80)]));
    wait_until(
        Duration::from_secs(20),
        || split_json(&s.cluster)["status"]["split"] == "web-v1=20% web-v2=80%",
        || format!("new leader never wrote status: {}", split_json(&s.cluster)["status"]),
    );
    wait_until(
        Duration::from_secs(20),
        || weight_events(&s.cluster).len() > before,
        || "no event for the change".into(),
    );
    // A second change, and its Event: the writer handled everything before it, so a repeat of
    // the first change's Event would be there by now.
    s.cluster.apply(&split_yaml(&[("web-v1", 10), ("web-v2", 90)]));
    wait_until(
        Duration::from_secs(20),
        || weight_events(&s.cluster).iter().any(|n| n.contains("20→10")),
        || "no event for the second change".into(),
    );
    let changes: Vec<String> = weight_events(&s.cluster).into_iter().filter(|n| n.contains("50→20")).collect();
    assert_eq!(changes.len(), 1, "exactly one Event for the change: {changes:?}");
    wait_until(
        Duration::from_secs(20),
        || split_json(&s.cluster)["status"]["split"] == "web-v1=10% web-v2=90%",
        || format!("status: {}", split_json(&s.cluster)["status"]),
    );
    let seen = send(via_b.gateway, 400).await;
    assert!((share(&seen, "web-v2") - 90.0).abs() < 8.0, "{seen:?}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_tables_need_tls_and_the_token() {
    use shifter_proto::v1::WatchRequest;
    use shifter_proto::v1::destinations_client::DestinationsClient;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};

    let s = shop().await;
    let controller = s.cluster.start_controller("controller-a");
    let watch = WatchRequest { authority: AUTHORITY.into(), ..Default::default() };

    // Plaintext HTTP/2 is refused at the transport.
    let plain = Channel::from_shared(format!("http://{}", controller.grpc)).unwrap().connect().await;
    if let Ok(channel) = plain {
        assert!(DestinationsClient::new(channel).watch(watch.clone()).await.is_err(), "plaintext must not be served");
    }

    // TLS without a token, or with a wrong one: Unauthenticated, and no snapshot.
    let ca = Certificate::from_pem(std::fs::read(&controller.ca).unwrap());
    let tls = Channel::from_shared(format!("https://localhost:{}", controller.grpc.port()))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(ca))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = DestinationsClient::new(tls.clone()).watch(watch.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let wrong: tonic::metadata::MetadataValue<_> = "Bearer not-the-token".parse().unwrap();
    let mut client = DestinationsClient::with_interceptor(tls.clone(), move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", wrong.clone());
        Ok(r)
    });
    assert_eq!(client.watch(watch.clone()).await.unwrap_err().code(), tonic::Code::Unauthenticated);

    // With the token the snapshot comes at once.
    let token: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", std::fs::read_to_string(&controller.token_file).unwrap().trim()).parse().unwrap();
    let mut client = DestinationsClient::with_interceptor(tls, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", token.clone());
        Ok(r)
    });
    let snapshot = client.watch(watch).await.unwrap().into_inner().message().await.unwrap().unwrap();
    assert!(snapshot.exists);

    // The same TLS port serves the CRD conversion webhook, and the leader put its CA in the CRD.
    // The API server's Go client offers h2 over TLS; so does this one.
    let https = reqwest::Client::builder()
        .http2_prior_knowledge()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&controller.ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let review = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "request": {"uid": "u1", "desiredAPIVersion": "split.smi-spec.io/v1alpha1", "objects": [{
            "apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "metadata": {"name": "web"},
            "spec": {"service": "web", "backends": [{"service": "web-v1", "weight": 90}]}
        }]}
    });
    let answer: Value = https
        .post(format!("https://localhost:{}/convert", controller.grpc.port()))
        .json(&review)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["uid"], "u1");
    assert_eq!(answer["response"]["convertedObjects"][0]["spec"]["backends"][0]["weight"], "90");
    wait_until(
        Duration::from_secs(20),
        || {
            !s.cluster
                .kubectl_ok(&[
                    "get",
                    "crd",
                    "trafficsplits.split.smi-spec.io",
                    "-o",
                    "jsonpath={.spec.conversion.webhook.clientConfig.caBundle}",
                ])
                .is_empty()
        },
        || "the CA never reached the CRD".into(),
    );
    drop(s.web);
}
