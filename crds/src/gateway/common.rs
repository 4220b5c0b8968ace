//! Pieces HTTPRoute and GRPCRoute share: references to parents and backends, header matches,
//! and the per-parent status both kinds report.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Extra, GROUP, open_enum};

/// A DNS subdomain, or empty (the core API group).
pub(crate) const GROUP_PATTERN: &str = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// An API kind: a letter, then letters, digits and dashes.
pub(crate) const KIND_PATTERN: &str = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$";
/// A DNS label.
pub(crate) const NAMESPACE_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A DNS subdomain: section names, rule names, precise hostnames.
pub(crate) const SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// An HTTP header name (an RFC 7230 token).
pub(crate) const HEADER_NAME_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$";
/// A controller name: a domain, a slash, then a path.
pub(crate) const CONTROLLER_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$";

/// The object a route attaches to: a Gateway (north-south) or, for a mesh (GAMMA), a Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ParentReference {
    /// API group of the parent. Unset means gateway.networking.k8s.io; a Service parent needs
    /// it set to "" (the core group).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), pattern(GROUP_PATTERN), extend("default" = GROUP))]
    pub group: Option<String>,
    /// Kind of the parent: Gateway (the default), or Service for a mesh route.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(KIND_PATTERN), extend("default" = "Gateway"))]
    pub kind: Option<String>,
    /// Namespace of the parent; unset means the route's own namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(NAMESPACE_PATTERN))]
    pub namespace: Option<String>,
    /// Name of the parent.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// A part of the parent: a Gateway listener's name, or a Service port's name. Unset means
    /// the whole parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(SUBDOMAIN_PATTERN))]
    pub section_name: Option<String>,
    /// A port of the parent: a Gateway listener's port, or a Service port. Unset means every
    /// port the route can attach to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl ParentReference {
    /// A parent reference to the Service `name` in the route's namespace (a GAMMA route).
    pub fn service(name: impl Into<String>) -> Self {
        ParentReference {
            group: Some(String::new()),
            kind: Some("Service".into()),
            name: name.into(),
            ..Default::default()
        }
    }

    /// The parent's API group, upstream's default applied.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(GROUP)
    }

    /// The parent's kind, upstream's default applied.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("Gateway")
    }

    /// The parent's namespace: its own, or else the route's.
    pub fn namespace_or<'a>(&'a self, route_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(route_namespace)
    }

    /// True when the parent is a core Service, so the route is a mesh (GAMMA) route.
    pub fn is_service(&self) -> bool {
        self.kind() == "Service" && is_core_group(self.group())
    }

    /// True when the parent is a Gateway.
    pub fn is_gateway(&self) -> bool {
        self.kind() == "Gateway" && self.group() == GROUP
    }

    /// True when both name the same parent and section once defaults are applied: how a
    /// `status.parents[].parentRef` is paired with the `spec.parentRefs[]` entry it reports on.
    pub fn same_target(&self, other: &ParentReference, route_namespace: &str) -> bool {
        let group = |p: &ParentReference| if is_core_group(p.group()) { "" } else { p.group() }.to_string();
        group(self) == group(other)
            && self.kind() == other.kind()
            && self.name == other.name
            && self.namespace_or(route_namespace) == other.namespace_or(route_namespace)
            && self.section_name == other.section_name
            && self.port == other.port
    }
}

/// Kubernetes writes the core group as "", and Gateway API also accepts "core".
pub(crate) fn is_core_group(group: &str) -> bool {
    group.is_empty() || group == "core"
}

/// An object a filter sends traffic to, such as the target of a request mirror.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct BackendObjectReference {
    /// API group of the backend; unset or "" means the core group.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), pattern(GROUP_PATTERN), extend("default" = ""))]
    pub group: Option<String>,
    /// Kind of the backend; unset means Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(KIND_PATTERN), extend("default" = "Service"))]
    pub kind: Option<String>,
    /// Name of the backend.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the backend; unset means the route's own namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(NAMESPACE_PATTERN))]
    pub namespace: Option<String>,
    /// Destination port; required when the backend is a Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl BackendObjectReference {
    /// True when the backend is a core Service.
    pub fn is_service(&self) -> bool {
        self.kind.as_deref().unwrap_or("Service") == "Service" && is_core_group(self.group.as_deref().unwrap_or(""))
    }
}

// `F` is the route kind's filter type: HTTPRoute and GRPCRoute backends differ only in it.
/// A backend of a route rule and its share of the rule's requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct BackendRef<F> {
    /// API group of the backend; unset or "" means the core group.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), pattern(GROUP_PATTERN), extend("default" = ""))]
    pub group: Option<String>,
    /// Kind of the backend; unset means Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(KIND_PATTERN), extend("default" = "Service"))]
    pub kind: Option<String>,
    /// Name of the backend, e.g. the Service that runs one version of the application.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the backend; unset means the route's own namespace. Another namespace
    /// needs a ReferenceGrant there.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(NAMESPACE_PATTERN))]
    pub namespace: Option<String>,
    /// Destination port; required when the backend is a Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Relative share of the rule's requests this backend receives: its weight divided by the
    /// sum of all weights in the rule. 0 sends it nothing; unset means 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000), extend("default" = 1))]
    pub weight: Option<i32>,
    /// Filters applied only to requests sent to this backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub filters: Option<Vec<F>>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl<F> Default for BackendRef<F> {
    fn default() -> Self {
        BackendRef {
            group: None,
            kind: None,
            name: String::new(),
            namespace: None,
            port: None,
            weight: None,
            filters: None,
            extra: Extra::new(),
        }
    }
}

impl<F> BackendRef<F> {
    /// A backend reference to the Service `name` at `port`, with `weight`.
    pub fn service(name: impl Into<String>, port: i32, weight: i32) -> Self {
        BackendRef { name: name.into(), port: Some(port), weight: Some(weight), ..Default::default() }
    }

    /// The backend's API group, upstream's default ("", the core group) applied.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or("")
    }

    /// The backend's kind, upstream's default applied.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("Service")
    }

    /// The backend's namespace: its own, or else the route's.
    pub fn namespace_or<'a>(&'a self, route_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(route_namespace)
    }

    /// True when the backend is a core Service.
    pub fn is_service(&self) -> bool {
        self.kind() == "Service" && is_core_group(self.group())
    }

    /// The backend's weight, upstream's default (1) applied. May be out of range on an object
    /// that skipped schema validation; the translator reports that.
    pub fn weight(&self) -> i32 {
        self.weight.unwrap_or(1)
    }

    /// The backend's own filters (none when unset).
    pub fn filters(&self) -> &[F] {
        self.filters.as_deref().unwrap_or_default()
    }
}

/// A reference to an object in the route's namespace, such as an implementation's own filter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct LocalObjectReference {
    /// API group of the referent; "" is the core group.
    #[schemars(length(max = 253), pattern(GROUP_PATTERN))]
    pub group: String,
    /// Kind of the referent.
    #[schemars(length(min = 1, max = 63), pattern(KIND_PATTERN))]
    pub kind: String,
    /// Name of the referent.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

open_enum! {
    /// How a header (or query parameter) value is compared.
    pub enum HeaderMatchType {
        /// The value equals the given one (the default).
        Exact = "Exact",
        /// The value matches the given regular expression (its dialect is the implementation's).
        RegularExpression = "RegularExpression",
    }
}

/// Selects requests by one header. Header names compare case-insensitively.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPHeaderMatch {
    /// How the value is compared: Exact (the default) or RegularExpression.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Exact"))]
    pub type_: Option<HeaderMatchType>,
    /// Header name, compared case-insensitively. Only the first of several matches naming the
    /// same header counts.
    #[schemars(length(min = 1, max = 256), pattern(HEADER_NAME_PATTERN))]
    pub name: String,
    /// The value to compare with.
    #[schemars(length(min = 1, max = 4096))]
    pub value: String,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl HTTPHeaderMatch {
    /// The comparison, upstream's default (Exact) applied.
    pub fn match_type(&self) -> HeaderMatchType {
        self.type_.clone().unwrap_or(HeaderMatchType::Exact)
    }
}

/// A header name and value, as a filter sets or adds it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPHeader {
    /// Header name, compared case-insensitively.
    #[schemars(length(min = 1, max = 256), pattern(HEADER_NAME_PATTERN))]
    pub name: String,
    /// Header value.
    #[schemars(length(min = 1, max = 4096))]
    pub value: String,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// What the controllers that handle a route report about it, one entry per parent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct RouteStatus {
    /// One entry for each parent a controller handles this route for. Each controller writes
    /// only its own entries and removes them when it stops handling the parent.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub parents: Vec<RouteParentStatus>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl RouteStatus {
    /// The entry `controller_name` wrote for `parent`, if any.
    pub fn parent(
        &self,
        controller_name: &str,
        parent: &ParentReference,
        route_namespace: &str,
    ) -> Option<&RouteParentStatus> {
        self.parents
            .iter()
            .find(|p| p.controller_name == controller_name && p.parent_ref.same_target(parent, route_namespace))
    }
}

/// How one controller sees the route's attachment to one parent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct RouteParentStatus {
    /// The parent this entry is about, as written in spec.parentRefs.
    pub parent_ref: ParentReference,
    /// The controller that wrote this entry, as a domain-prefixed path such as
    /// shifter.dev/controller.
    #[schemars(length(min = 1, max = 253), pattern(CONTROLLER_NAME_PATTERN))]
    pub controller_name: String,
    /// Conditions of the attachment: Accepted (the route is valid and attached), ResolvedRefs
    /// (every reference resolved), and others the controller defines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 8), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}
