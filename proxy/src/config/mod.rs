//! Where routing configuration comes from (the controller or a static file) and the knobs every
//! listener shares. Defaults are chosen so that nobody has to set any of them.

mod file;
pub(crate) mod watch;

use std::time::Duration;

pub use file::StaticConfig;
use shifter_proto::v1::ProxyIdentity;

/// Timeouts and limits; [`Settings::default`] is what `shifter proxy` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Dialling one upstream endpoint.
    pub connect_timeout: Duration,
    /// From dispatching a request upstream until its response headers arrive.
    pub request_timeout: Duration,
    /// How long a new connection may stay silent before it is treated as opaque TCP.
    pub detect_timeout: Duration,
    /// How long an HTTP/1 client may take to send a complete request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Largest request head accepted (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Downstream connections open at once, over all listeners; more are closed at accept.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests and connections.
    pub drain_timeout: Duration,
    /// How long a request for a newly seen authority waits for its first snapshot.
    pub first_snapshot_timeout: Duration,
    /// Authorities the outbound listener watches at most; a new one past this displaces an idle,
    /// unresolved or least recently used one (gateway and static authorities are not counted).
    pub max_authorities: usize,
    /// An outbound authority no request used for this long is dropped and its watch stopped.
    pub authority_idle_timeout: Duration,
    /// How long an authority the controller said does not exist is answered from memory (503
    /// `service not found`, no watch) before the controller is asked again.
    pub unknown_authority_ttl: Duration,
    /// Authorities remembered as not existing, at most; the oldest is forgotten first.
    pub max_unknown_authorities: usize,
    /// Attempts per request when dialling fails (requests are retried only when nothing was sent).
    pub max_attempts: usize,
    /// Idle HTTP/1 connections kept per upstream endpoint.
    pub max_idle_per_endpoint: usize,
    /// Reconnect backoff towards the controller: first delay and cap (jitter is added).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Telemetry window length and how many windows are kept while the controller is away.
    pub telemetry_interval: Duration,
    pub telemetry_buffer: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            detect_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(30),
            first_snapshot_timeout: Duration::from_secs(5),
            max_authorities: 1_000,
            authority_idle_timeout: Duration::from_secs(60),
            unknown_authority_ttl: Duration::from_secs(5),
            max_unknown_authorities: 10_000,
            max_attempts: 3,
            max_idle_per_endpoint: 64,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            telemetry_interval: Duration::from_secs(1),
            telemetry_buffer: 300,
        }
    }
}

/// How the controller is reached.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `http://host:port` (h2c) or `https://host:port`.
    pub uri: String,
    /// PEM CA bundle that signs the controller's certificate (`https` only).
    pub ca_pem: Option<Vec<u8>>,
    /// Bearer token presented on every call (`authorization: Bearer ...`), when the controller
    /// requires one.
    pub token: Option<String>,
    /// Who this proxy is, sent with every watch and telemetry window.
    pub identity: ProxyIdentity,
}

/// Where snapshots come from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// `Destinations.Watch` per authority; fail-static when the controller is away.
    Controller(ControllerConfig),
    /// Fixed snapshots (from `--config`); unknown authorities get 503.
    Static(StaticConfig),
}

/// Canonical lookup key for what a client dialled: lower case, with a port (80 when absent).
pub(crate) fn normalize_authority(authority: &str) -> String {
    let lower = authority.trim().trim_end_matches('.').to_ascii_lowercase();
    let has_port = match lower.rfind(':') {
        Some(i) => lower[i + 1..].bytes().all(|b| b.is_ascii_digit()) && !lower.ends_with(']') && i + 1 < lower.len(),
        None => false,
    };
    if has_port { lower } else { format!("{lower}:80") }
}

/// Longest authority the outbound listener routes: a DNS name (253) plus `:65535`, with room for
/// a bracketed IPv6 literal.
pub(crate) const MAX_AUTHORITY_LEN: usize = 261;

/// Whether a normalised authority could name anything: a host name, IPv4 or bracketed IPv6
/// literal and a port, within [`MAX_AUTHORITY_LEN`]. Anything else is a bad request and never
/// reaches the controller.
pub(crate) fn is_valid_authority(normalized: &str) -> bool {
    let Some((host, port)) = normalized.rsplit_once(':') else { return false };
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            !host.is_empty()
                && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
        }
    };
    normalized.len() <= MAX_AUTHORITY_LEN && host_ok && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// The short names a client inside the cluster may dial for a canonical
/// `name.namespace.svc.cluster.local:port` authority (each maps to the same destination).
pub(crate) fn authority_aliases(canonical: &str) -> Vec<String> {
    let canonical = normalize_authority(canonical);
    let mut out = vec![canonical.clone()];
    let Some((host, port)) = canonical.rsplit_once(':') else { return out };
    if let Some(base) = host.strip_suffix(".svc.cluster.local") {
        for alias in [format!("{base}.svc:{port}"), format!("{base}:{port}")] {
            if !out.contains(&alias) {
                out.push(alias);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_get_a_default_port_and_lower_case() {
        assert_eq!(normalize_authority("Web.Shop"), "web.shop:80");
        assert_eq!(normalize_authority("web.shop:8080"), "web.shop:8080");
        assert_eq!(normalize_authority("[::1]"), "[::1]:80");
        assert_eq!(normalize_authority("[::1]:9"), "[::1]:9");
    }

    #[test]
    fn only_host_and_port_shaped_authorities_are_valid() {
        for ok in ["web.shop:80", "web.shop.svc.cluster.local:8080", "10.0.0.1:80", "[::1]:80", "my_host:1"] {
            assert!(is_valid_authority(&normalize_authority(ok)), "{ok}");
        }
        for bad in
            ["", ":80", "web shop:80", "web.shop:0", "web.shop:99999", "[::1:80", "[zz]:80", "a/b:80", "web.shop:"]
        {
            assert!(!is_valid_authority(&normalize_authority(bad)), "{bad}");
        }
        let long = format!("{}.shop:80", "a".repeat(300));
        assert!(!is_valid_authority(&long));
    }

    #[test]
    fn cluster_local_authorities_have_short_aliases() {
        assert_eq!(
            authority_aliases("web.shop.svc.cluster.local:80"),
            vec!["web.shop.svc.cluster.local:80", "web.shop.svc:80", "web.shop:80"]
        );
        assert_eq!(authority_aliases("example.com"), vec!["example.com:80"]);
    }
}
