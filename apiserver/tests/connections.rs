//! Connection limits seen from raw sockets: a client that never completes the TLS handshake, one
//! that trickles a request head, and one connection too many are each closed, while clients that
//! behave (including those already connected when the limit is reached) are served.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::TestServer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Deadlines in these tests are this many times the limit under test: generous on a loaded
/// machine, yet far below any other limit configured alongside.
const SLACK: u32 = 10;

fn connector(t: &TestServer, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(t.server.ca_pem().as_bytes()) {
        roots.add(cert.expect("CA certificate parses")).expect("CA certificate accepted");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn tls(t: &TestServer, alpn: &[u8]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(t.server.addr()).await.expect("TCP connect");
    connector(t, alpn).connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake")
}

/// Reads until the server closes the connection (EOF or reset); returns how long that took,
/// or panics if it stays open past `within`.
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> Duration {
    let start = Instant::now();
    let mut sink = Vec::new();
    let outcome = tokio::time::timeout(within, stream.read_to_end(&mut sink)).await;
    assert!(outcome.is_ok(), "the server kept the connection open for {within:?}");
    start.elapsed()
}

/// One keep-alive HTTP/1.1 request for `/healthz` on an open connection.
async fn healthz(stream: &mut TlsStream<TcpStream>) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("request sent");
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while !response.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("response read");
        assert!(n > 0, "connection closed before the response: {}", String::from_utf8_lossy(&response));
        response.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn a_client_that_never_starts_tls_is_closed_after_the_handshake_timeout() {
    const HANDSHAKE: Duration = Duration::from_millis(300);
    let t = TestServer::start_with(|c| c.tls_handshake_timeout = HANDSHAKE).await;
    let mut silent = TcpStream::connect(t.server.addr()).await.unwrap();
    let took = closed_by_server(&mut silent, HANDSHAKE * SLACK).await;
    assert!(took >= HANDSHAKE, "closed after {took:?}, before the {HANDSHAKE:?} timeout");
    // A client that does complete the handshake in time is served.
    let mut prompt = tls(&t, b"http/1.1").await;
    assert!(healthz(&mut prompt).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_head_is_closed_after_the_header_timeout() {
    const HEADERS: Duration = Duration::from_millis(400);
    let t = TestServer::start_with(|c| c.header_read_timeout = HEADERS).await;

    let mut slow = tls(&t, b"http/1.1").await;
    slow.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bea").await.unwrap();
    let took = closed_by_server(&mut slow, HEADERS * SLACK).await;
    assert!(took >= HEADERS, "closed after {took:?}, before the {HEADERS:?} timeout");

    // Over HTTP/2, a client that stalls before its connection preface is closed the same way.
    let mut stalled = tls(&t, b"h2").await;
    stalled.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let took = closed_by_server(&mut stalled, HEADERS * SLACK).await;
    assert!(took >= HEADERS, "closed after {took:?}, before the {HEADERS:?} timeout");

    // A client that sends its whole head promptly is served.
    let mut prompt = tls(&t, b"http/1.1").await;
    assert!(healthz(&mut prompt).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn at_the_connection_cap_a_new_connection_is_closed_and_established_ones_keep_working() {
    // Long enough that neither timeout can be what closes a connection here.
    const TIMEOUTS: Duration = Duration::from_secs(30);
    let t = TestServer::start_with(|c| {
        c.max_connections = 2;
        c.tls_handshake_timeout = TIMEOUTS;
        c.header_read_timeout = TIMEOUTS;
    })
    .await;
    let mut first = tls(&t, b"http/1.1").await;
    let mut second = tls(&t, b"http/1.1").await;
    assert!(healthz(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(healthz(&mut second).await.starts_with("HTTP/1.1 200"));

    // One too many: closed at once, long before the handshake timeout could have closed it.
    let mut extra = TcpStream::connect(t.server.addr()).await.unwrap();
    closed_by_server(&mut extra, TIMEOUTS / SLACK).await;

    // The established connections are unaffected.
    assert!(healthz(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(healthz(&mut second).await.starts_with("HTTP/1.1 200"));

    // Once one goes, its slot serves a new client.
    drop(first);
    let deadline = Instant::now() + TIMEOUTS / SLACK;
    loop {
        let tcp = TcpStream::connect(t.server.addr()).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        if let Ok(mut again) = connector(&t, b"http/1.1").connect(name, tcp).await {
            assert!(healthz(&mut again).await.starts_with("HTTP/1.1 200"));
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
