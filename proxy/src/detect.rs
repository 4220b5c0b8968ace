//! Protocol detection: read the first bytes of a connection (bounded in size and time) and decide
//! between HTTP/2 prior knowledge (h2c, gRPC), HTTP/1 and opaque TCP. The bytes read are replayed
//! to whichever protocol handler takes the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest method token we wait for before deciding a connection is not HTTP/1.
pub(crate) const MAX_METHOD: usize = 24;
/// Longest request line read whole to see its `HTTP/1.x` version; a longer one is left to the
/// HTTP/1 server and its limits.
pub(crate) const MAX_REQUEST_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
    Opaque,
    /// The client sent nothing within the timeout: a server-first protocol, or a client that
    /// opened the connection ahead of need (HTTP connection pools do).
    Silent,
}

/// Classifies what has been read so far; `None` means more bytes are needed.
pub(crate) fn classify(buf: &[u8]) -> Option<Protocol> {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Protocol::Http2);
    }
    // An HTTP/1 request line is a method token (upper-case letters), a space, a target and the
    // version: `GET / HTTP/1.1`. A line-based protocol whose commands look like methods (`PING
    // x`) differs in the version, so the whole line is read when it comes.
    for (i, b) in buf.iter().enumerate().take(MAX_METHOD + 1) {
        match b {
            b'A'..=b'Z' | b'-' | b'_' => continue,
            b' ' if i > 0 => return request_line(buf),
            _ => return Some(Protocol::Opaque),
        }
    }
    (buf.len() > MAX_METHOD).then_some(Protocol::Opaque)
}

/// After a method token and a space: HTTP/1 once the line ends in an HTTP/1 version, opaque when it
/// ends otherwise, `None` while it has not ended.
fn request_line(buf: &[u8]) -> Option<Protocol> {
    for (i, b) in buf.iter().enumerate() {
        match b {
            b'\n' => {
                let line = buf[..i].strip_suffix(b"\r").unwrap_or(&buf[..i]);
                let http = line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0");
                return Some(if http { Protocol::Http1 } else { Protocol::Opaque });
            }
            // A carriage return may end the line; no other control character is in one.
            b'\r' => {}
            0..=0x1f | 0x7f => return Some(Protocol::Opaque),
            _ => {}
        }
    }
    (buf.len() > MAX_REQUEST_LINE).then_some(Protocol::Http1)
}

/// Whether what arrived before the client paused is the start of an HTTP/1 request line (a
/// method token and a space, no line end yet): a slow client, left to the HTTP/1 server's
/// header-read timeout rather than taken for another protocol.
fn partial_request_line(buf: &[u8]) -> bool {
    let method = buf.iter().take(MAX_METHOD + 1).take_while(|b| matches!(b, b'A'..=b'Z' | b'-' | b'_')).count();
    method > 0 && buf.get(method) == Some(&b' ') && !buf.contains(&b'\n')
}

/// Reads until the protocol is known, the peer stops sending for `timeout` (opaque, or silent when
/// nothing at all arrived: some protocols wait for the server to speak first) or closes.
pub(crate) async fn detect<T: AsyncRead + Unpin>(io: &mut T, timeout: Duration) -> io::Result<(Protocol, Bytes)> {
    let mut buf = BytesMut::with_capacity(256);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            read = io.read_buf(&mut buf) => {
                if read? == 0 {
                    return Ok((Protocol::Opaque, buf.freeze()));
                }
                if let Some(p) = classify(&buf) {
                    return Ok((p, buf.freeze()));
                }
            }
            _ = &mut deadline => {
                let protocol = if buf.is_empty() {
                    Protocol::Silent
                } else if partial_request_line(&buf) {
                    Protocol::Http1
                } else {
                    Protocol::Opaque
                };
                return Ok((protocol, buf.freeze()));
            }
        }
    }
}

/// A stream with already-read bytes put back in front.
pub(crate) struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Self { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_request_starts() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"POS"), None);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify(H2_PREFACE), Some(Protocol::Http2));
        assert_eq!(classify(b"hello"), Some(Protocol::Opaque));
        assert_eq!(classify(b"\x16\x03\x01"), Some(Protocol::Opaque));
        assert_eq!(classify(&[b'A'; 40]), Some(Protocol::Opaque));
        // A line protocol whose commands look like methods is not HTTP.
        assert_eq!(classify(b"PING one\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"SET key 1\r\n"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GET / HTTP/1.0\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"GET /long-path"), None);
        assert!(partial_request_line(b"GET /long-path") && !partial_request_line(b"PING x\n"));
    }

    #[tokio::test]
    async fn replays_detected_bytes() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        drop(client);
        let mut server = server;
        let (p, prefix) = detect(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(p, Protocol::Http1);
        let mut all = Vec::new();
        Prefixed::new(prefix, server).read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn nothing_sent_is_silent_and_a_partial_token_is_opaque() {
        let (_client, mut server) = tokio::io::duplex(64);
        let (p, prefix) = detect(&mut server, Duration::from_millis(50)).await.unwrap();
        assert_eq!((p, prefix.len()), (Protocol::Silent, 0));
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET").await.unwrap();
        let (p, prefix) = detect(&mut server, Duration::from_millis(50)).await.unwrap();
        assert_eq!((p, &prefix[..]), (Protocol::Opaque, &b"GET"[..]));
    }
}
