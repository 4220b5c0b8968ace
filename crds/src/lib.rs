//! shifter's Kubernetes contracts: the SMI `TrafficSplit` at every published version, the SMI
//! `HTTPRouteGroup`, and shifter's own `Canary`, with their CRDs, version conversion and validation.
//!
//! This crate is pure data and pure functions: it never talks to a cluster, so the API server, the
//! controller, the CLI and the tests all share one definition of what a valid object means.

pub mod canary;
pub mod conditions;
pub mod convert;
pub mod crd;
pub mod duration;
pub mod normalise;
pub mod quantity;
pub mod route_group;
pub mod traffic_split;

pub use canary::{Canary, CanaryPhase, CanarySpec, CanaryStatus};
pub use crd::{all_crds, crds_yaml};
pub use normalise::{NormalisedSplit, SplitError, SplitErrors, WeightedBackend, normalise};
pub use route_group::HTTPRouteGroup;
pub use traffic_split::{TrafficSplit, TrafficSplitSpec, TrafficSplitStatus};
