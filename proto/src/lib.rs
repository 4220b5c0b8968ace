//! The gRPC API between shifter's controller and its proxies: `Destinations.Watch` streams full
//! routing snapshots and `Telemetry.Report` streams per-backend outcome windows. See
//! `proto/shifter/proxy/v1/destination.proto` for the rules both sides follow.
//!
//! This crate holds only generated code and the constants both sides must agree on; it never holds
//! behaviour.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("shifter.proxy.v1");
}

/// Upper bounds (milliseconds) of the latency histogram buckets proxies report and export, the same
/// as Linkerd's `response_latency_ms` so existing dashboards read them unchanged. `+Inf` follows.
pub const LATENCY_BOUNDS_MS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 1000.0, 2000.0, 3000.0,
    4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];
