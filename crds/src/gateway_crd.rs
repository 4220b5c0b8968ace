//! CustomResourceDefinitions for the Gateway API routes shifter reads, for clusters (and the
//! embedded API server) that do not have upstream's installed. They follow upstream's Standard
//! channel and carry its bundle annotations, so tools that check them see what they expect.
//!
//! These are not shifter's own CRDs: they are installed only where absent, never over a cluster's
//! copy, and are not part of [`crate::all_crds`] or the Helm chart.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::gateway::{BUNDLE_VERSION, CHANNEL, GRPCRoute, HTTPRoute};

/// Annotation upstream puts on its CRDs naming the release they come from.
pub const BUNDLE_VERSION_ANNOTATION: &str = "gateway.networking.k8s.io/bundle-version";
/// Annotation upstream puts on its CRDs naming the release channel.
pub const CHANNEL_ANNOTATION: &str = "gateway.networking.k8s.io/channel";

/// HTTPRoute and GRPCRoute, in that order.
pub fn gateway_crds() -> Vec<CustomResourceDefinition> {
    [HTTPRoute::crd(), GRPCRoute::crd()].into_iter().map(annotated).collect()
}

/// The Gateway API CRDs as one multi-document YAML stream.
pub fn gateway_crds_yaml() -> String {
    gateway_crds().iter().map(|crd| format!("---\n{}", serde_yaml::to_string(crd).expect("CRDs serialise"))).collect()
}

fn annotated(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let annotations = crd.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(BUNDLE_VERSION_ANNOTATION.into(), BUNDLE_VERSION.into());
    annotations.insert(CHANNEL_ANNOTATION.into(), CHANNEL.into());
    crd
}
