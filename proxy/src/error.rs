//! Errors the library returns; `anyhow` appears only in [`crate::run`].

use std::net::SocketAddr;

/// The header a proxy adds to every response it generates itself, naming why it could not serve
/// (`upstream connect failed`, `no ready endpoints`, `response timeout`, ...).
pub const PROXY_ERROR_HEADER: &str = "shifter-proxy-error";

/// A snapshot that cannot be turned into a routing table; the previous table keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("route {route:?}: invalid regular expression {pattern:?}: {source}")]
    InvalidRegex { route: String, pattern: String, source: regex::Error },
    #[error("route {route:?}: invalid header name {name:?}")]
    InvalidHeaderName { route: String, name: String },
    #[error("route {route:?}: invalid value for header {name:?}")]
    InvalidHeaderValue { route: String, name: String },
    #[error("backend {service:?}: invalid endpoint address {address:?}")]
    InvalidEndpoint { service: String, address: String },
}

/// A static configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse { path: String, source: serde_yaml::Error },
    #[error("authority {0:?} is listed twice")]
    Duplicate(String),
    #[error("invalid controller address {uri:?}: {reason}")]
    Controller { uri: String, reason: String },
}

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("gateway authority {0:?} has no snapshot in the static configuration")]
    MissingGatewayAuthority(String),
}
