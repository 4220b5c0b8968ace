//! SMI `HTTPRouteGroup` (`specs.smi-spec.io`), served at v1alpha3 and v1alpha4 (stored).
//!
//! The two versions share one schema, so no conversion is needed between them.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "specs.smi-spec.io";
pub const KIND: &str = "HTTPRouteGroup";
pub const VERSIONS: [&str; 2] = ["v1alpha3", "v1alpha4"];
pub const STORED_VERSION: &str = "v1alpha4";

/// One named HTTP route: every given criterion must hold for a request to match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatch {
    /// Route name, unique in the group.
    pub name: String,
    /// Regular expression matched against the request path, anchored at its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// HTTP methods; `*` matches any method. Empty matches any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header name → regular expression on its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderMatches>,
}

/// Header criteria as written in the wild: a map (`{x-debug: "1"}`, the SMI spec) or a list of
/// one-entry maps (`[{user-agent: ".*Android.*"}]`, as Open Service Mesh writes them). Both are kept
/// as written and read the same.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum HeaderMatches {
    Map(BTreeMap<String, String>),
    List(Vec<BTreeMap<String, String>>),
}

impl HeaderMatches {
    /// Every (header name, value regex) pair, in order.
    pub fn pairs(&self) -> Vec<(String, String)> {
        match self {
            HeaderMatches::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            HeaderMatches::List(l) => l.iter().flat_map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone()))).collect(),
        }
    }
}

impl JsonSchema for HeaderMatches {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HeaderMatches".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Header name to value regex: a map, or a list of one-entry maps.",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

macro_rules! route_group_version {
    ($module:ident, $version:literal) => {
        #[doc = concat!("HTTPRouteGroup at ", $version, ".")]
        pub mod $module {
            use super::*;

            /// Named HTTP routes that TrafficSplits refer to in `spec.matches`.
            #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
            #[kube(
                group = "specs.smi-spec.io",
                version = $version,
                kind = "HTTPRouteGroup",
                plural = "httproutegroups",
                doc = "HTTPRouteGroup names HTTP routes (path, methods, headers) that TrafficSplits select with spec.matches (SMI).",
                namespaced,
                shortname = "htr",
                category = "smi",
                category = "shifter",
                printcolumn(name = "Routes", type_ = "string", json_path = ".spec.matches[*].name", description = "Route names"),
                printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
            )]
            #[serde(rename_all = "camelCase")]
            pub struct HTTPRouteGroupSpec {
                /// The routes of this group.
                #[serde(default)]
                pub matches: Vec<HttpMatch>,
            }
        }
    };
}

route_group_version!(v1alpha3, "v1alpha3");
route_group_version!(v1alpha4, "v1alpha4");

pub use v1alpha4::{HTTPRouteGroup, HTTPRouteGroupSpec};
