//! shifter's data plane. A proxy sits between clients and the versions of a service and sends each
//! request (or, for protocols it cannot read, each connection) to a backend chosen by the weights
//! the controller streams to it, balancing across endpoints by power of two choices on peak-EWMA
//! load, and exporting Linkerd-compatible metrics so a canary can be judged.
//!
//! It must never be the reason a request fails: it keeps serving its last known configuration when
//! the controller is away, never drops in-flight requests when configuration changes, answers with
//! a short reason and a `shifter-proxy-error` header when nothing can serve, and never logs request
//! bodies or secrets.

mod admin;
mod app;
mod authorities;
mod balance;
mod body;
mod config;
mod destinations;
mod detect;
mod error;
mod forward;
mod listener;
mod metrics;
mod pool;
#[cfg(test)]
mod props;
mod route;
mod tcp;
mod telemetry;

pub use app::{Args, GatewayListener, Proxy, ProxyConfig, run, run_blocking};
pub use config::{ConfigSource, ControllerConfig, Settings, StaticConfig};
pub use error::{ConfigError, PROXY_ERROR_HEADER, ProxyError, RouteError};
