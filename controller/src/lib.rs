//! shifter's controller: watches TrafficSplits, HTTPRouteGroups, Services and EndpointSlices,
//! resolves them to routing snapshots per authority, streams those to proxies over gRPC, and tells
//! users the truth in status.
//!
//! The index (what the cluster says) and the gRPC server (who asks for it) meet only at
//! [`index::DestinationIndex`], so each is tested alone. The controller must never block one
//! proxy's stream on another's, and never write status unless it holds the leader lease.

pub mod authority;
pub mod index;

pub use authority::{Authority, AuthorityError};
pub use index::{DestinationIndex, Index};
pub mod admin;
pub mod canary;
pub mod conversion;
pub mod events;
pub mod fence;
pub mod lease;
pub mod metrics;
pub mod relay;
pub mod runtime;
pub mod server;
pub mod status;
pub mod supervise;
pub mod telemetry;
pub mod tls;
pub mod watch;
