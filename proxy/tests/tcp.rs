//! Opaque TCP through the gateway: split per connection by the same weights, with connection and
//! byte counters, against real TCP echo servers.

mod support;

use std::net::SocketAddr;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `hello` (not HTTP), half-closes, and returns everything the far side said.
async fn exchange(gw: SocketAddr, message: &[u8]) -> String {
    let mut stream = TcpStream::connect(gw).await.unwrap();
    stream.write_all(message).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn opaque_tcp_is_split_per_connection_and_counted() {
    let (a, b) = (echo_backend("echo-a").await, echo_backend("echo-b").await);
    let proxy = static_proxy(vec![split(1, &[("echo-a", 1, &[a.addr]), ("echo-b", 1, &[b.addr])])]).await;
    let gw = proxy.gateway_addrs()[0];
    let (mut to_a, mut to_b) = (0u64, 0u64);
    for _ in 0..60 {
        match exchange(gw, b"hello\n").await.as_str() {
            "echo-a:hello\n" => to_a += 1,
            "echo-b:hello\n" => to_b += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert!(to_a > 0 && to_b > 0, "a {to_a}, b {to_b}");
    assert_eq!((a.hits(), b.hits()), (to_a, to_b));
    let admin = proxy.admin_addr().unwrap();
    let closed = |text: &str| metric(text, "tcp_close_total", &[]);
    eventually("every connection counted closed", || async { closed(&admin_get(admin, "/metrics").await.1) == 60 })
        .await;
    let (_, text) = admin_get(admin, "/metrics").await;
    let on_a = [("dst_service", "echo-a")];
    assert_eq!(metric(&text, "tcp_open_total", &on_a), to_a);
    assert_eq!(metric(&text, "tcp_close_total", &on_a), to_a);
    assert_eq!(metric(&text, "tcp_read_bytes_total", &on_a), to_a * 6);
    assert_eq!(metric(&text, "tcp_write_bytes_total", &on_a), to_a * "echo-a:hello\n".len() as u64);
    assert_eq!(metric(&text, "request_total", &[]), 0, "opaque connections are not requests");
}

#[tokio::test]
async fn zero_weight_tcp_backend_receives_nothing() {
    let (a, b) = (echo_backend("echo-a").await, echo_backend("echo-b").await);
    let proxy = static_proxy(vec![split(1, &[("echo-a", 0, &[a.addr]), ("echo-b", 5, &[b.addr])])]).await;
    for _ in 0..30 {
        assert_eq!(exchange(proxy.gateway_addrs()[0], b"ping\n").await, "echo-b:ping\n");
    }
    assert_eq!((a.hits(), b.hits()), (0, 30));
}

#[tokio::test]
async fn tcp_dead_endpoint_is_avoided() {
    let live = echo_backend("echo-a").await;
    let dead = dead_addr().await;
    let proxy = static_proxy(vec![split(1, &[("echo-a", 1, &[dead, live.addr])])]).await;
    for _ in 0..30 {
        assert_eq!(exchange(proxy.gateway_addrs()[0], b"x").await, "echo-a:x");
    }
}

#[tokio::test]
async fn http_connect_on_the_outbound_listener_tunnels_by_weight() {
    let (a, b) = (echo_backend("echo-a").await, echo_backend("echo-b").await);
    let authority = "db.shop.svc.cluster.local:5432";
    let routes = vec![default_route(vec![backend("echo-a", 0, &[a.addr]), backend("echo-b", 1, &[b.addr])])];
    let proxy = static_proxy(vec![snapshot(authority, 1, routes), split(1, &[("echo-a", 1, &[a.addr])])]).await;
    let outbound = proxy.outbound_addr().unwrap();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(outbound).await.unwrap();
        let connect = "CONNECT db.shop:5432 HTTP/1.1\r\nHost: db.shop:5432\r\n\r\n";
        stream.write_all(connect.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
        stream.write_all(b"tls bytes").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "echo-b:tls bytes");
    }
    assert_eq!((a.hits(), b.hits()), (0, 5));
    let mut refused = TcpStream::connect(outbound).await.unwrap();
    refused.write_all(b"CONNECT elsewhere.example:443 HTTP/1.1\r\nHost: elsewhere.example:443\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    refused.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 503");
}

/// Settings whose protocol detection gives up quickly, so tests can stay silent past it.
fn quick_detection() -> shifter_proxy::Settings {
    shifter_proxy::Settings { detect_timeout: std::time::Duration::from_millis(200), ..test_settings() }
}

#[tokio::test]
async fn an_http_connection_opened_ahead_of_need_is_still_routed_per_request() {
    // HTTP connection pools open connections before they have a request for them; the first
    // request may come long after protocol detection gave up waiting.
    let (a, b) = (http_backend("web-a").await, http_backend("web-b").await);
    let snapshots = vec![split(1, &[("web-a", 1, &[a.addr]), ("web-b", 1, &[b.addr])])];
    let proxy =
        start_proxy(shifter_proxy::ConfigSource::Static(shifter_proxy::StaticConfig { snapshots }), quick_detection())
            .await;
    let stream = TcpStream::connect(proxy.gateway_addrs()[0]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..40 {
        let request =
            hyper::Request::get("/").header("host", "web").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let backend = response.headers()["x-backend"].to_str().unwrap().to_string();
        *seen.entry(backend).or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "one connection, but each request split by weight: {seen:?}");
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    assert_eq!(metric(&text, "request_total", &[]), 40, "every request measured as HTTP");
    assert_eq!(metric(&text, "tcp_open_total", &[]), 0, "no opaque connection");
}

#[tokio::test]
async fn a_server_that_speaks_first_gets_through() {
    // SMTP- or MySQL-like: the server greets, then the client talks.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                stream.write_all(b"220 mail ready\r\n").await.unwrap();
                let mut line = [0u8; 64];
                let n = stream.read(&mut line).await.unwrap();
                stream.write_all(&[b"250 ", &line[..n]].concat()).await.unwrap();
            });
        }
    });
    let snapshots = vec![split(1, &[("mail", 1, &[addr])])];
    let proxy =
        start_proxy(shifter_proxy::ConfigSource::Static(shifter_proxy::StaticConfig { snapshots }), quick_detection())
            .await;
    let mut stream = TcpStream::connect(proxy.gateway_addrs()[0]).await.unwrap();
    let mut greeting = [0u8; 16];
    stream.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"220 mail ready\r\n");
    stream.write_all(b"HELO x\r\n").await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply, "250 HELO x\r\n");
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    assert_eq!(metric(&text, "tcp_open_total", &[("dst_service", "mail")]), 1);
}
