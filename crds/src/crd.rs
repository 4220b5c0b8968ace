//! CustomResourceDefinitions generated from the Rust types: what `shifter crds` prints and what
//! `charts/shifter/crds/` holds.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, ServiceReference, WebhookClientConfig, WebhookConversion,
};
use kube::CustomResourceExt;
use kube::core::crd::merge_crds;

use crate::{canary, route_group, traffic_split};

/// Where a real cluster's API server sends TrafficSplit conversion requests: the controller's
/// webhook port, in the namespace the Helm chart installs into by default. The controller fills in
/// `caBundle` at start-up.
pub const CONVERSION_SERVICE: (&str, &str, &str, i32) = ("shifter-system", "shifter-controller", "/convert", 9443);

/// Every CRD shifter serves, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut split = merge_crds(
        vec![
            traffic_split::v1alpha1::TrafficSplit::crd(),
            traffic_split::v1alpha2::TrafficSplit::crd(),
            traffic_split::v1alpha3::TrafficSplit::crd(),
            traffic_split::v1alpha4::TrafficSplit::crd(),
        ],
        traffic_split::STORED_VERSION,
    )
    .expect("TrafficSplit versions share names and scope");
    let (namespace, name, path, port) = CONVERSION_SERVICE;
    split.spec.conversion = Some(CustomResourceConversion {
        strategy: "Webhook".into(),
        webhook: Some(WebhookConversion {
            conversion_review_versions: vec!["v1".into()],
            client_config: Some(WebhookClientConfig {
                service: Some(ServiceReference {
                    namespace: namespace.into(),
                    name: name.into(),
                    path: Some(path.into()),
                    port: Some(port),
                }),
                ..Default::default()
            }),
        }),
    });
    let routes = merge_crds(
        vec![route_group::v1alpha3::HTTPRouteGroup::crd(), route_group::v1alpha4::HTTPRouteGroup::crd()],
        route_group::STORED_VERSION,
    )
    .expect("HTTPRouteGroup versions share names and scope");
    vec![split, routes, canary::Canary::crd()]
}

/// All CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> String {
    all_crds().iter().map(|crd| format!("---\n{}", serde_yaml::to_string(crd).expect("CRDs serialise"))).collect()
}
