//! `GRPCRoute` (`gateway.networking.k8s.io/v1`): gRPC calls matched by service, method and
//! headers, changed by filters, and split by weight across backends.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    BackendRef, HTTPHeaderMatch, LocalObjectReference, ParentReference, RouteStatus, SUBDOMAIN_PATTERN,
};
use super::filters::{HTTPHeaderFilter, HTTPRequestMirrorFilter};
use super::http_route::HOSTNAME_PATTERN;
use super::{Extra, open_enum};

/// How gRPC calls for the route's parents (Gateways, or Services in a mesh) are routed.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "GRPCRoute",
    plural = "grpcroutes",
    doc = "GRPCRoute routes gRPC calls: it matches them by host, service, method and headers, applies filters, and sends them to weighted backends.",
    namespaced,
    status = "RouteStatus",
    category = "gateway-api",
    printcolumn(name = "Hostnames", type_ = "string", json_path = ".spec.hostnames"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct GRPCRouteSpec {
    /// The objects this route attaches to: Gateways, or (for a mesh) the Service whose traffic
    /// it routes, with kind Service and group "".
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub parent_refs: Option<Vec<ParentReference>>,
    /// Hosts (the :authority, port ignored) this route applies to. A leading `*.` label
    /// matches any subdomain. Unset means any host its parents accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253), pattern(HOSTNAME_PATTERN)))]
    pub hostnames: Option<Vec<String>>,
    /// Rules: which calls (matches), what to do with them (filters), and where they go
    /// (backendRefs).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub rules: Option<Vec<GRPCRouteRule>>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl GRPCRouteSpec {
    /// The parents, none when unset.
    pub fn parent_refs(&self) -> &[ParentReference] {
        self.parent_refs.as_deref().unwrap_or_default()
    }

    /// The hostnames, none (any host) when unset.
    pub fn hostnames(&self) -> &[String] {
        self.hostnames.as_deref().unwrap_or_default()
    }

    /// The rules, none when unset.
    pub fn rules(&self) -> &[GRPCRouteRule] {
        self.rules.as_deref().unwrap_or_default()
    }
}

/// One routing rule: calls that satisfy any of its matches get its filters and go to its
/// backends.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct GRPCRouteRule {
    /// Name of the rule, unique in the route; lets status and policies refer to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(SUBDOMAIN_PATTERN))]
    pub name: Option<String>,
    /// Conditions a call must meet; any one match suffices, and every condition within a match
    /// must hold. Unset matches every call.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub matches: Option<Vec<GRPCRouteMatch>>,
    /// Processing steps applied to every matching call, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub filters: Option<Vec<GRPCRouteFilter>>,
    /// Where matching calls go, split by weight. A backend that cannot be resolved gets its
    /// share answered with UNAVAILABLE.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub backend_refs: Option<Vec<GRPCBackendRef>>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl GRPCRouteRule {
    /// The matches, none (every call) when unset.
    pub fn matches(&self) -> &[GRPCRouteMatch] {
        self.matches.as_deref().unwrap_or_default()
    }

    /// The rule's filters, none when unset.
    pub fn filters(&self) -> &[GRPCRouteFilter] {
        self.filters.as_deref().unwrap_or_default()
    }

    /// The rule's backends, none when unset.
    pub fn backend_refs(&self) -> &[GRPCBackendRef] {
        self.backend_refs.as_deref().unwrap_or_default()
    }
}

/// A backend of a GRPCRoute rule, with filters of its own.
pub type GRPCBackendRef = BackendRef<GRPCRouteFilter>;

/// Conditions a call must all meet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct GRPCRouteMatch {
    /// The gRPC service and method; unset means any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<GRPCMethodMatch>,
    /// Metadata (headers) the call must carry, each with a matching value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub headers: Option<Vec<GRPCHeaderMatch>>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl GRPCRouteMatch {
    /// The header conditions, none when unset.
    pub fn headers(&self) -> &[GRPCHeaderMatch] {
        self.headers.as_deref().unwrap_or_default()
    }
}

/// A gRPC header match has the same shape and rules as an HTTP one.
pub type GRPCHeaderMatch = HTTPHeaderMatch;

open_enum! {
    /// How a gRPC service and method are compared.
    pub enum GRPCMethodMatchType {
        /// Equal to the given names (the default).
        Exact = "Exact",
        /// Matching the given regular expressions (the implementation's dialect).
        RegularExpression = "RegularExpression",
    }
}

/// Selects calls by gRPC service and method (the `/service/method` request path). At least
/// one of service and method must be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct GRPCMethodMatch {
    /// Exact (the default) or RegularExpression.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Exact"))]
    pub type_: Option<GRPCMethodMatchType>,
    /// The fully qualified service, e.g. `shop.v1.Orders`; unset means any service.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub service: Option<String>,
    /// The method, e.g. `Create`; unset means any method.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub method: Option<String>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl GRPCMethodMatch {
    /// The comparison, upstream's default (Exact) applied.
    pub fn match_type(&self) -> GRPCMethodMatchType {
        self.type_.clone().unwrap_or(GRPCMethodMatchType::Exact)
    }
}

open_enum! {
    /// Which filter a GRPCRoute filter entry is; names the field that holds its settings.
    pub enum GRPCRouteFilterType {
        RequestHeaderModifier = "RequestHeaderModifier",
        ResponseHeaderModifier = "ResponseHeaderModifier",
        RequestMirror = "RequestMirror",
        ExtensionRef = "ExtensionRef",
    }
}

/// One processing step for a call; `type` says which field below applies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct GRPCRouteFilter {
    /// The filter: RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, or
    /// ExtensionRef for an implementation's own.
    #[serde(rename = "type")]
    pub type_: GRPCRouteFilterType,
    /// Metadata (headers) to set, add or remove on the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HTTPHeaderFilter>,
    /// Metadata (headers) to set, add or remove on the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HTTPHeaderFilter>,
    /// A backend that receives copies of the calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<HTTPRequestMirrorFilter>,
    /// An implementation's own filter, as an object in the route's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<LocalObjectReference>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}
