//! Property tests for what the proxy reads from untrusted clients before any backend is chosen:
//! the first bytes of a connection (protocol detection) and the request head (authority,
//! hop-by-hop headers, the upstream request target). Arbitrary input must never panic, and the
//! answers must be consistent: a decision, once made, never changes with more bytes; an HTTP/1
//! request line is HTTP/1 however it is split into reads; the HTTP/2 preface is HTTP/2; whatever
//! was read is replayed exactly. These functions are private to the crate, hence a module here
//! rather than a test in `tests/`.

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::body::grpc_status;
use crate::config::{MAX_AUTHORITY_LEN, authority_aliases, is_valid_authority, normalize_authority};
use crate::detect::{H2_PREFACE, MAX_METHOD, Prefixed, Protocol, classify, detect};
use crate::forward::{HOP_BY_HOP, prepare_request, request_authority, strip_hop_by_hop};
use crate::pool::UpstreamProtocol;

const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

/// One runtime for every case: building one per case would dominate the run time.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

/// A peer that sends `data` in reads that stop at each of `cuts` (and wherever the reader's
/// buffer is full), then closes.
struct Chunked {
    data: Vec<u8>,
    cuts: Vec<usize>,
    pos: usize,
}

impl Chunked {
    fn new(data: Vec<u8>, mut cuts: Vec<usize>) -> Self {
        cuts.retain(|c| *c > 0 && *c < data.len());
        cuts.sort_unstable();
        cuts.dedup();
        Self { data, cuts, pos: 0 }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let pos = self.pos;
        let next_cut = self.cuts.iter().copied().find(|c| *c > pos).unwrap_or(self.data.len());
        let n = (next_cut - pos).min(out.remaining());
        out.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Hop-by-hop names, then end-to-end ones a `Connection` header may list.
const HEADER_NAMES: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "x-a",
    "x-trace",
    "x-hop",
    "content-type",
    "accept",
];

fn chunked_bytes() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    (prop::collection::vec(any::<u8>(), 0..80), prop::collection::vec(0usize..80, 0..6))
}

/// Text of `len` bytes drawn from `bytes` (cheaper to generate than a regular expression).
fn text(bytes: &'static [u8], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(bytes), len).prop_map(|b| String::from_utf8(b).expect("ASCII"))
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LABEL: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
/// Visible ASCII and space: what a header value or request target may hold.
const VISIBLE: &[u8] =
    b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

/// A method token as the detector knows them: upper-case letters, `-` and `_`.
fn method() -> impl Strategy<Value = String> {
    (text(UPPER, 1..2), text(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ-_", 0..MAX_METHOD)).prop_map(|(a, b)| a + &b)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_detection_once_made_never_changes_with_more_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let full = classify(&bytes);
        for k in 0..=bytes.len() {
            if let Some(p) = classify(&bytes[..k]) {
                prop_assert_eq!(full, Some(p), "decided {:?} after {} bytes", p, k);
            }
        }
        // Past the longest token (or the preface) nothing is left undecided once a line has
        // ended or a byte no request line holds has come.
        let line_over = bytes.iter().any(|b| (*b < 0x20 && *b != b'\r') || *b == 0x7f);
        if bytes.len() > MAX_METHOD.max(H2_PREFACE.len()) && line_over {
            prop_assert!(full.is_some());
        }
    }

    #[test]
    fn an_http1_request_line_is_http1_however_it_is_read(
        method in method(),
        target in text(&VISIBLE[1..], 0..40).prop_map(|t| format!("/{t}")),
        minor in 0u8..2,
        rest in prop::collection::vec(any::<u8>(), 0..32),
        cuts in prop::collection::vec(0usize..120, 0..6),
    ) {
        let mut bytes = format!("{method} {target} HTTP/1.{minor}\r\n").into_bytes();
        bytes.extend(rest);
        prop_assert_eq!(classify(&bytes), Some(Protocol::Http1));
        for k in 0..=bytes.len() {
            prop_assert!(matches!(classify(&bytes[..k]), None | Some(Protocol::Http1)), "{k}");
        }
        let (protocol, prefix) = runtime().block_on(detect(&mut Chunked::new(bytes.clone(), cuts), Duration::from_secs(5)))?;
        prop_assert_eq!(protocol, Protocol::Http1);
        prop_assert!(bytes.starts_with(&prefix));
    }

    #[test]
    fn the_h2_preface_is_h2_and_any_part_of_it_waits(rest in prop::collection::vec(any::<u8>(), 0..32), cut in 0usize..24) {
        prop_assert_eq!(classify(&H2_PREFACE[..cut]), None);
        let mut bytes = H2_PREFACE.to_vec();
        bytes.extend(rest);
        prop_assert_eq!(classify(&bytes), Some(Protocol::Http2));
    }

    #[test]
    fn bytes_no_request_line_starts_with_are_opaque(
        // Every byte but the upper-case letters, `-` (45) and `_` (95) that start a method.
        first in prop_oneof![0u8..b'-', b'-' + 1..b'A', b'Z' + 1..b'_', b'_' + 1..=u8::MAX],
        rest in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bytes = vec![first];
        bytes.extend(rest);
        prop_assert_eq!(classify(&bytes), Some(Protocol::Opaque));
    }

    #[test]
    fn detection_over_any_reads_agrees_with_the_bytes_and_replays_them((bytes, cuts) in chunked_bytes(), tail in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut peer = Chunked::new(bytes.clone(), cuts);
        let (protocol, prefix) = runtime().block_on(detect(&mut peer, Duration::from_secs(5)))?;
        prop_assert!(bytes.starts_with(&prefix));
        match classify(&bytes) {
            // Decided before the peer closed: on the bytes read so far, and the same as on all.
            Some(p) => {
                prop_assert_eq!(protocol, p);
                prop_assert_eq!(classify(&prefix), Some(p));
            }
            // The peer closed undecided: opaque, with everything it sent.
            None => {
                prop_assert_eq!(protocol, Protocol::Opaque);
                prop_assert_eq!(&prefix[..], &bytes[..]);
            }
        }
        // Whoever takes the connection reads what detection read, then the rest, unchanged.
        let unread = bytes[prefix.len()..].to_vec();
        let mut replay = Vec::new();
        let mut stream = Prefixed::new(Bytes::from(prefix.to_vec()), Chunked::new([unread, tail.clone()].concat(), vec![3]));
        runtime().block_on(stream.read_to_end(&mut replay))?;
        prop_assert_eq!(replay, [bytes, tail].concat());
    }

    #[test]
    fn normalised_authorities_are_stable_lower_case_and_carry_a_port(raw in any::<String>()) {
        let n = normalize_authority(&raw);
        prop_assert_eq!(normalize_authority(&n), n.clone());
        prop_assert!(!n.bytes().any(|b| b.is_ascii_uppercase()));
        let (_, port) = n.rsplit_once(':').expect("a port");
        prop_assert!(!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()), "{n:?}");
        let aliases = authority_aliases(&raw);
        prop_assert_eq!(&aliases[0], &n);
        prop_assert!(aliases.len() == 1 || aliases.len() == 3);
        for a in &aliases {
            prop_assert_eq!(&normalize_authority(a), a);
        }
        if is_valid_authority(&n) {
            prop_assert!(n.len() <= MAX_AUTHORITY_LEN && n.is_ascii());
        }
    }

    #[test]
    fn service_names_as_clients_dial_them_are_valid(
        labels in prop::collection::vec(text(LABEL, 1..20).prop_map(|l| format!("a{l}0")), 1..5),
        port in prop::option::of(1u16..),
        upper in any::<bool>(),
    ) {
        let host = labels.join(".");
        let raw = match port { Some(p) => format!("{host}:{p}"), None => host.clone() };
        let raw = if upper { raw.to_ascii_uppercase() } else { raw };
        let n = normalize_authority(&raw);
        prop_assert!(is_valid_authority(&n), "{n:?}");
        for alias in authority_aliases(&n) {
            prop_assert!(is_valid_authority(&alias), "{alias:?}");
        }
    }

    #[test]
    fn the_authority_comes_from_the_target_else_the_host_header(
        target in prop_oneof![prop::collection::vec(any::<u8>(), 0..40), text(VISIBLE, 0..40).prop_map(String::into_bytes)],
        host in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut builder = Request::builder();
        if let Ok(uri) = Uri::try_from(target.as_slice()) {
            builder = builder.uri(uri);
        }
        if let Ok(value) = HeaderValue::from_bytes(&host) {
            builder = builder.header(header::HOST, value);
        }
        let Ok(req) = builder.body(()) else { return Ok(()) };
        let found = request_authority(&req);
        match req.uri().authority() {
            Some(a) => prop_assert_eq!(found.as_deref(), Some(a.as_str())),
            None => prop_assert_eq!(found, req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_string)),
        }
    }

    #[test]
    fn upstream_targets_have_the_form_each_protocol_needs(
        target in prop_oneof![
            text(&VISIBLE[1..], 0..40),
            (text(b"abcz09.:-", 1..20), text(&VISIBLE[1..], 0..20)).prop_map(|(a, p)| format!("http://{a}/{p}")),
            text(&VISIBLE[1..], 0..30).prop_map(|p| format!("/{p}")),
        ],
        host in prop::option::of(text(VISIBLE, 0..30)),
        authority in text(VISIBLE, 0..30),
        h2 in any::<bool>(),
    ) {
        let Ok(uri) = Uri::try_from(target.as_str()) else { return Ok(()) };
        let mut req = Request::builder().uri(uri.clone());
        if let Some(h) = &host {
            req = req.header(header::HOST, h.as_str());
        }
        let Ok(mut req) = req.body(()) else { return Ok(()) };
        let protocol = if h2 { UpstreamProtocol::Http2 } else { UpstreamProtocol::Http1 };
        prepare_request(&mut req, protocol, &authority);
        match protocol {
            // Origin form (or `*`): never a scheme or authority on the request line.
            UpstreamProtocol::Http1 => {
                prop_assert!(req.uri().scheme().is_none() && req.uri().authority().is_none(), "{}", req.uri());
                if host.is_some() || uri.authority().is_some() {
                    prop_assert!(req.headers().contains_key(header::HOST) || HeaderValue::from_str(uri.authority().map_or("", |a| a.as_str())).is_err());
                }
            }
            // A full URI when one could be made; otherwise the target is left as it was.
            UpstreamProtocol::Http2 => {
                prop_assert!(req.uri().authority().is_none() || req.uri().scheme().is_some(), "{}", req.uri());
                if uri.scheme().is_some() && uri.authority().is_some() {
                    prop_assert_eq!(req.uri(), &uri);
                }
            }
        }
    }

    #[test]
    fn hop_by_hop_headers_never_cross_and_everything_else_does(
        headers in prop::collection::vec((prop::sample::select(HEADER_NAMES), text(VISIBLE, 0..24)), 0..12),
        listed in prop::collection::vec(prop::sample::select(&HEADER_NAMES[6..]), 0..3),
    ) {
        let mut map = HeaderMap::new();
        for (name, value) in &headers {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(*name), HeaderValue::from_str(value)) {
                map.append(n, v);
            }
        }
        if !listed.is_empty() {
            map.append(header::CONNECTION, HeaderValue::from_str(&listed.join(", ")).expect("token list"));
        }
        let connection_lists: Vec<String> = map
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        let before = map.clone();
        strip_hop_by_hop(&mut map);
        for name in &HOP_BY_HOP {
            prop_assert!(!map.contains_key(name), "{name} crossed");
        }
        for name in before.keys() {
            let named = connection_lists.iter().any(|t| t == name.as_str());
            let hop = HOP_BY_HOP.contains(name) || named || (name == header::TE && before.get(header::TE).is_some_and(|v| v != "trailers"));
            if hop {
                prop_assert!(!map.contains_key(name), "{name} crossed");
            } else {
                let kept: Vec<_> = map.get_all(name).iter().collect();
                let had: Vec<_> = before.get_all(name).iter().collect();
                prop_assert_eq!(kept, had, "{} changed", name);
            }
        }
    }

    #[test]
    fn any_grpc_status_header_is_read_without_panicking(value in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.insert("grpc-status", v);
        }
        let status = grpc_status(&headers);
        if let Some(code) = status {
            let text = String::from_utf8_lossy(&value);
            prop_assert_eq!(text.trim().parse::<u32>().ok(), Some(code));
        }
    }
}
