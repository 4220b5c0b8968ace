//! SMI `TrafficSplit` (`split.smi-spec.io`) at v1alpha1, v1alpha2, v1alpha3 and v1alpha4.
//!
//! # One stored version plus conversion, not one loose schema
//!
//! v1alpha1 weights are Kubernetes quantities (`"500m"`); from v1alpha2 on they are integers, and Go
//! clients that speak those versions (Flagger, Argo Rollouts, hand-written operators) decode
//! `weight` into an `int`. A single int-or-string schema shared by all versions would hand them
//! `"500m"` and break them. So each version keeps its published schema, v1alpha4 is stored, and
//! [`crate::convert`] rewrites objects between versions: quantities become integers at the smallest
//! power-of-1000 scale that keeps every share exact, and fields a version cannot hold (`matches`
//! below v1alpha3, original quantity spellings above v1alpha1) ride in an annotation so a round
//! trip is lossless. The embedded API server calls that function directly; on a real cluster the
//! controller serves the same function as the CRD's conversion webhook.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "split.smi-spec.io";
pub const KIND: &str = "TrafficSplit";
/// Served versions, oldest first; the last one is stored.
pub const VERSIONS: [&str; 4] = ["v1alpha1", "v1alpha2", "v1alpha3", "v1alpha4"];
pub const STORED_VERSION: &str = "v1alpha4";

/// Most backends in one split.
pub const MAX_BACKENDS: usize = 100;
/// Most route-group references in one split's `spec.matches`.
pub const MAX_MATCHES: usize = 32;
/// Longest Service or route-group name (a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;

/// Status shared by every version. It is shifter's own, additive to the SMI spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSplitStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`, `ResolvedRefs` and `Programmed`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Effective share of traffic per backend after removing backends that cannot serve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendStatus>,
    /// One-line summary of the effective split, e.g. `web-v1=90% web-v2=10%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Proxies that acknowledged the current routing version, as `inSync/connected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxies: Option<String>,
    /// Connected proxies watching this split's apex service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxies_connected: Option<u32>,
    /// Connected proxies running the current routing version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxies_in_sync: Option<u32>,
}

/// Effective routing for one backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    pub service: String,
    /// The weight from spec this status was computed from; weight-change Events compare with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u64>,
    /// Share of the split's traffic this backend receives, in percent.
    pub percent: f64,
    /// Why the backend receives nothing, when it cannot serve (e.g. `BackendNotFound`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A reference to the route group that selects which requests a split applies to (v1alpha3+).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchRef {
    /// `HTTPRouteGroup`; other kinds are reported as unsupported in status.
    #[schemars(length(max = 63))]
    pub kind: String,
    /// Name of the route group in the split's namespace (at most 253 characters).
    #[schemars(length(min = 1, max = MAX_NAME_LEN))]
    pub name: String,
    /// `specs.smi-spec.io` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_NAME_LEN))]
    pub api_group: Option<String>,
}

/// Declares the printer columns, short name and category every served version shares.
macro_rules! traffic_split_version {
    ($module:ident, $version:literal, $doc:literal, $backend:ident { $($field:tt)* } $(, matches: $m:ident)?) => {
        #[doc = $doc]
        pub mod $module {
            use super::*;

            /// Routes traffic for one apex service across weighted backend services.
            #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
            #[kube(
                group = "split.smi-spec.io",
                version = $version,
                kind = "TrafficSplit",
                plural = "trafficsplits",
                doc = "TrafficSplit routes requests for an apex Service across weighted backend Services (SMI).",
                namespaced,
                status = "TrafficSplitStatus",
                shortname = "ts",
                category = "smi",
                category = "shifter",
                printcolumn(name = "Service", type_ = "string", json_path = ".spec.service", description = "Apex service clients call"),
                printcolumn(name = "Split", type_ = "string", json_path = ".status.split", description = "Effective share per backend"),
                printcolumn(name = "Programmed", type_ = "string", json_path = ".status.conditions[?(@.type==\"Programmed\")].status", description = "Proxies were sent this version"),
                printcolumn(name = "Proxies", type_ = "string", json_path = ".status.proxies", description = "Proxies in sync / connected"),
                printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
            )]
            #[serde(rename_all = "camelCase")]
            pub struct TrafficSplitSpec {
                /// The apex (root) service that clients call (at most 253 characters).
                #[schemars(length(min = 1, max = MAX_NAME_LEN))]
                pub service: String,
                $(
                    /// Route groups whose matching requests this split applies to; other requests go to the apex service. At most 32.
                    #[serde(default, skip_serializing_if = "Vec::is_empty")]
                    #[schemars(length(max = MAX_MATCHES))]
                    pub matches: Vec<$m>,
                )?
                /// Backend services and their relative weights; 1 to 100 of them.
                #[schemars(length(min = 1, max = MAX_BACKENDS))]
                pub backends: Vec<$backend>,
            }

            /// One backend service and its relative weight.
            #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
            #[serde(rename_all = "camelCase")]
            pub struct $backend {
                /// Name of a Service in the same namespace (at most 253 characters).
                #[schemars(length(min = 1, max = MAX_NAME_LEN))]
                pub service: String,
                $($field)*
            }
        }
    };
}

traffic_split_version!(v1alpha1, "v1alpha1", "SMI v1alpha1: weights are Kubernetes quantities.", Backend {
    /// Relative weight as a Kubernetes quantity, e.g. `500m`, `"90"` or `1`: 0 to 1G, at most nine
    /// decimal places (1n), and the split's weights at their common scale at most 1000000000.
    pub weight: crate::traffic_split::QuantityWeight,
});
traffic_split_version!(v1alpha2, "v1alpha2", "SMI v1alpha2: integer weights.", Backend {
    /// Relative weight from 0 (sends no traffic) to 1000000000.
    #[schemars(range(min = 0, max = crate::quantity::MAX_WEIGHT))]
    pub weight: i64,
});
traffic_split_version!(v1alpha3, "v1alpha3", "SMI v1alpha3: integer weights and route-group matches.", Backend {
    /// Relative weight from 0 (sends no traffic) to 1000000000.
    #[schemars(range(min = 0, max = crate::quantity::MAX_WEIGHT))]
    pub weight: i64,
}, matches: MatchRef);
traffic_split_version!(v1alpha4, "v1alpha4", "SMI v1alpha4 (stored): integer weights and route-group matches.", Backend {
    /// Relative weight from 0 (sends no traffic) to 1000000000.
    #[schemars(range(min = 0, max = crate::quantity::MAX_WEIGHT))]
    pub weight: i64,
}, matches: MatchRef);

pub use v1alpha4::{Backend, TrafficSplit, TrafficSplitSpec};

/// A v1alpha1 weight: a Kubernetes quantity, written as a string (`"500m"`) or a bare number (`1`).
///
/// It keeps the text the user wrote; [`crate::quantity::parse_quantity`] gives its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantityWeight(pub String);

impl Serialize for QuantityWeight {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for QuantityWeight {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(QuantityWeight(s)),
            serde_json::Value::Number(n) => Ok(QuantityWeight(n.to_string())),
            other => {
                Err(serde::de::Error::custom(format!("weight must be a quantity such as \"500m\" or 90, not {other}")))
            }
        }
    }
}

impl JsonSchema for QuantityWeight {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "QuantityWeight".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Relative weight as a Kubernetes quantity, e.g. 500m, \"90\" or 1.",
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": true,
            "minimum": 0,
            "maximum": crate::quantity::MAX_WEIGHT,
            "maxLength": crate::quantity::MAX_LEN,
            "pattern": crate::quantity::PATTERN
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

impl From<&str> for QuantityWeight {
    fn from(s: &str) -> Self {
        QuantityWeight(s.to_string())
    }
}
