//! shifter's Kubernetes contracts: the SMI `TrafficSplit` at every published version, the SMI
//! `HTTPRouteGroup`, and shifter's own `Canary`, with their CRDs, version conversion and validation;
//! and the Gateway API `HTTPRoute` and `GRPCRoute` shifter reads, with CRDs for clusters without them.
//!
//! This crate is pure data and pure functions: it never talks to a cluster, so the API server, the
//! controller, the CLI and the tests all share one definition of what a valid object means.

pub mod canary;
pub mod conditions;
pub mod convert;
pub mod crd;
pub mod duration;
pub mod gateway;
pub mod gateway_crd;
pub mod normalise;
pub mod quantity;
pub mod route_group;
pub mod traffic_split;

pub use canary::{Canary, CanaryPhase, CanarySpec, CanaryStatus};
pub use crd::{all_crds, crds_yaml};
pub use gateway::{GRPCRoute, HTTPRoute};
pub use gateway_crd::{gateway_crds, gateway_crds_yaml};
pub use normalise::{NormalisedSplit, SplitError, SplitErrors, WeightedBackend, normalise};
pub use route_group::HTTPRouteGroup;
pub use traffic_split::{TrafficSplit, TrafficSplitSpec, TrafficSplitStatus};
