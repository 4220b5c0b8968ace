//! HTTP/2 prior knowledge (h2c) and gRPC through the gateway, against real hyper and tonic servers.

mod support;

use support::controller::{call_on, grpc_backend, grpc_backend_failing_mid_stream, grpc_call};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_weights_90_10_hold_within_1_5_points_over_10000_requests() {
    let (v1, v2) = (http_backend("web-v1").await, http_backend("web-v2").await);
    let proxy = static_proxy(vec![split(1, &[("web-v1", 90, &[v1.addr]), ("web-v2", 10, &[v2.addr])])]).await;
    let seen = spread(&h2_client(), proxy.gateway_addrs()[0], 10_000, 32).await;
    let (a, b) = (seen["200 web-v1"], seen.get("200 web-v2").copied().unwrap_or(0));
    assert_eq!(a + b, 10_000, "{seen:?}");
    let share = b as f64 / 100.0;
    assert!((8.5..=11.5).contains(&share), "web-v2 got {share}% of traffic");
    assert_eq!((v1.hits() as usize, v2.hits() as usize), (a, b));
    assert_eq!((v1.conns(), v2.conns()), (1, 1), "HTTP/2 upstreams are multiplexed on one connection");
}

#[tokio::test]
async fn h2c_zero_weight_and_header_match() {
    let (v1, v2, beta) = (http_backend("web-v1").await, http_backend("web-v2").await, http_backend("web-beta").await);
    let routes = vec![
        header_route("beta", "x-beta", "yes", vec![backend("web-beta", 1, &[beta.addr])]),
        default_route(vec![backend("web-v1", 0, &[v1.addr]), backend("web-v2", 3, &[v2.addr])]),
    ];
    let proxy = static_proxy(vec![snapshot(AUTHORITY, 1, routes)]).await;
    let (gw, client) = (proxy.gateway_addrs()[0], h2_client());
    for _ in 0..100 {
        assert_eq!(get(&client, gw, "/", &[]).await.1, "web-v2");
        assert_eq!(get(&client, gw, "/", &[("x-beta", "yes")]).await.1, "web-beta");
    }
    assert_eq!((v1.hits(), v2.hits(), beta.hits()), (0, 100, 100));
}

#[tokio::test]
async fn grpc_is_routed_by_weight_and_non_ok_status_is_a_failure() {
    let ok = grpc_backend("grpc-ok", tonic::Code::Ok).await;
    let bad = grpc_backend("grpc-bad", tonic::Code::Internal).await;
    let late = grpc_backend_failing_mid_stream("grpc-late", tonic::Code::DataLoss).await;
    let backends: &[(&str, u64, &[std::net::SocketAddr])] =
        &[("grpc-ok", 1, &[ok]), ("grpc-bad", 1, &[bad]), ("grpc-late", 1, &[late])];
    let proxy = static_proxy(vec![split(1, backends)]).await;
    let gw = proxy.gateway_addrs()[0];
    let mut client =
        shifter_proto::v1::destinations_client::DestinationsClient::connect(format!("http://{gw}")).await.unwrap();
    let (mut n_ok, mut n_bad, mut n_late) = (0, 0, 0);
    for _ in 0..300 {
        match call_on(&mut client).await {
            Ok(name) => {
                assert_eq!(name, "grpc-ok");
                n_ok += 1;
            }
            Err(tonic::Code::Internal) => n_bad += 1,
            Err(tonic::Code::DataLoss) => n_late += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(n_ok > 0 && n_bad > 0 && n_late > 0, "ok {n_ok}, bad {n_bad}, late {n_late}");
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    let good = [("dst_service", "grpc-ok"), ("classification", "success"), ("status_code", "200")];
    let failed = [("dst_service", "grpc-bad"), ("classification", "failure"), ("status_code", "200")];
    assert_eq!(metric(&text, "response_total", &good), n_ok);
    assert_eq!(metric(&text, "response_total", &failed), n_bad);
    let late = [("dst_service", "grpc-late"), ("classification", "failure"), ("status_code", "200")];
    assert_eq!(metric(&text, "response_total", &late), n_late, "grpc-status in trailers");
    assert_eq!(metric(&text, "response_total", &[("dst_service", "grpc-late"), ("classification", "success")]), 0);
    assert_eq!(metric(&text, "request_total", &[("dst_service", "grpc-bad")]), n_bad);
    // A fresh channel (new HTTP/2 connection) is detected and routed the same way.
    let fresh = grpc_call(gw).await;
    assert!(fresh.is_ok() || fresh.as_ref().is_err_and(|c| *c != tonic::Code::Unavailable), "{fresh:?}");
}

#[tokio::test]
async fn request_bodies_stream_through_on_both_protocols() {
    let v1 = http_backend("web-v1").await;
    let proxy = static_proxy(vec![split(1, &[("web-v1", 1, &[v1.addr])])]).await;
    let body = bytes::Bytes::from(vec![7u8; 1 << 20]);
    for client in [http1_client(), h2_client()] {
        assert_eq!(post(&client, proxy.gateway_addrs()[0], body.clone()).await, (200, 1 << 20));
    }
}
