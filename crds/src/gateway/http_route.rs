//! `HTTPRoute` (`gateway.networking.k8s.io/v1`): HTTP requests matched by path, headers, query
//! parameters and method, changed by filters, and split by weight across backends.

use std::borrow::Cow;
use std::time::Duration;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    BackendRef, HEADER_NAME_PATTERN, HTTPHeaderMatch, HeaderMatchType, LocalObjectReference, ParentReference,
    RouteStatus, SUBDOMAIN_PATTERN,
};
use super::filters::{
    HTTPCORSFilter, HTTPHeaderFilter, HTTPRequestMirrorFilter, HTTPRequestRedirectFilter, HTTPURLRewriteFilter,
};
use super::{Extra, open_enum};
use crate::duration::{DurationError, parse_duration};

/// A hostname, optionally with a leading `*.` wildcard label; no IP addresses.
pub(crate) const HOSTNAME_PATTERN: &str = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A Gateway API duration: one to four terms of up to five digits and a unit.
pub(crate) const DURATION_PATTERN: &str = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$";

/// How HTTP requests for the route's parents (Gateways, or Services in a mesh) are routed.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    plural = "httproutes",
    doc = "HTTPRoute routes HTTP requests: it matches them by host, path, headers, query parameters and method, applies filters, and sends them to weighted backends.",
    namespaced,
    status = "RouteStatus",
    category = "gateway-api",
    printcolumn(name = "Hostnames", type_ = "string", json_path = ".spec.hostnames"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPRouteSpec {
    /// The objects this route attaches to: Gateways, or (for a mesh) the Service whose traffic
    /// it routes, with kind Service and group "".
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub parent_refs: Option<Vec<ParentReference>>,
    /// Hosts (the Host header, port ignored) this route applies to. A leading `*.` label
    /// matches any subdomain. Unset means any host its parents accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253), pattern(HOSTNAME_PATTERN)))]
    pub hostnames: Option<Vec<String>>,
    /// Rules: which requests (matches), what to do with them (filters), and where they go
    /// (backendRefs). Unset means one rule matching every path.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("default" = [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]))]
    pub rules: Option<Vec<HTTPRouteRule>>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl HTTPRouteSpec {
    /// The parents, none when unset.
    pub fn parent_refs(&self) -> &[ParentReference] {
        self.parent_refs.as_deref().unwrap_or_default()
    }

    /// The hostnames, none (any host) when unset.
    pub fn hostnames(&self) -> &[String] {
        self.hostnames.as_deref().unwrap_or_default()
    }

    /// The rules as written, none when unset. (An API server fills an unset list with
    /// upstream's default: one rule matching every path, with no backends.)
    pub fn rules(&self) -> &[HTTPRouteRule] {
        self.rules.as_deref().unwrap_or_default()
    }
}

/// One routing rule: requests that satisfy any of its matches get its filters and go to its
/// backends.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPRouteRule {
    /// Name of the rule, unique in the route; lets status and policies refer to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(SUBDOMAIN_PATTERN))]
    pub name: Option<String>,
    /// Conditions a request must meet; any one match suffices, and every condition within a
    /// match must hold. Unset means every path (PathPrefix "/"). When several rules match, the
    /// most specific match wins: an Exact path, then the longest prefix, then the method, then
    /// the most headers, then the most query parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("default" = [{"path": {"type": "PathPrefix", "value": "/"}}]))]
    pub matches: Option<Vec<HTTPRouteMatch>>,
    /// Processing steps applied to every matching request, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub filters: Option<Vec<HTTPRouteFilter>>,
    /// Where matching requests go, split by weight. A backend that cannot be resolved gets its
    /// share answered with 500; no backends and no redirect answers every request with 500.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub backend_refs: Option<Vec<HTTPBackendRef>>,
    /// Time limits for matching requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HTTPRouteTimeouts>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl HTTPRouteRule {
    /// The matches as written, none when unset.
    pub fn matches(&self) -> &[HTTPRouteMatch] {
        self.matches.as_deref().unwrap_or_default()
    }

    /// The matches with upstream's default applied: a rule without matches matches every
    /// path, as if it had one match of PathPrefix "/".
    pub fn effective_matches(&self) -> Cow<'_, [HTTPRouteMatch]> {
        match self.matches.as_deref() {
            Some(matches) if !matches.is_empty() => Cow::Borrowed(matches),
            _ => Cow::Owned(vec![HTTPRouteMatch::default()]),
        }
    }

    /// The rule's filters, none when unset.
    pub fn filters(&self) -> &[HTTPRouteFilter] {
        self.filters.as_deref().unwrap_or_default()
    }

    /// The rule's backends, none when unset.
    pub fn backend_refs(&self) -> &[HTTPBackendRef] {
        self.backend_refs.as_deref().unwrap_or_default()
    }
}

/// A backend of an HTTPRoute rule, with filters of its own.
pub type HTTPBackendRef = BackendRef<HTTPRouteFilter>;

/// Conditions a request must all meet. An empty match (or a match with only a path left unset)
/// matches every path.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPRouteMatch {
    /// The request path; unset means PathPrefix "/".
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {"type": "PathPrefix", "value": "/"}))]
    pub path: Option<HTTPPathMatch>,
    /// Headers the request must carry, each with a matching value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub headers: Option<Vec<HTTPHeaderMatch>>,
    /// Query parameters the request must carry, each with a matching value.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub query_params: Option<Vec<HTTPQueryParamMatch>>,
    /// The request method; unset means any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<HTTPMethod>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl HTTPRouteMatch {
    /// The path condition with upstream's defaults applied: (PathPrefix, "/") when unset.
    pub fn effective_path(&self) -> (PathMatchType, &str) {
        match &self.path {
            Some(path) => (path.match_type(), path.value()),
            None => (PathMatchType::PathPrefix, "/"),
        }
    }

    /// The header conditions, none when unset.
    pub fn headers(&self) -> &[HTTPHeaderMatch] {
        self.headers.as_deref().unwrap_or_default()
    }

    /// The query parameter conditions, none when unset.
    pub fn query_params(&self) -> &[HTTPQueryParamMatch] {
        self.query_params.as_deref().unwrap_or_default()
    }
}

open_enum! {
    /// How a request path is compared.
    pub enum PathMatchType {
        /// The path equals the value, case-sensitively.
        Exact = "Exact",
        /// The path starts with the value, a whole `/`-separated segment at a time: `/abc`
        /// matches `/abc` and `/abc/def`, not `/abcdef`. The default.
        PathPrefix = "PathPrefix",
        /// The path matches the value as a regular expression (the implementation's dialect).
        RegularExpression = "RegularExpression",
    }
}

/// The path condition of a match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPPathMatch {
    /// Exact, PathPrefix (the default) or RegularExpression.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "PathPrefix"))]
    pub type_: Option<PathMatchType>,
    /// The path (or expression) to compare with; unset means "/".
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), extend("default" = "/"))]
    pub value: Option<String>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl HTTPPathMatch {
    /// The comparison, upstream's default (PathPrefix) applied.
    pub fn match_type(&self) -> PathMatchType {
        self.type_.clone().unwrap_or(PathMatchType::PathPrefix)
    }

    /// The value, upstream's default ("/") applied.
    pub fn value(&self) -> &str {
        self.value.as_deref().unwrap_or("/")
    }
}

/// Selects requests by one query parameter. Names compare exactly (case-sensitively).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPQueryParamMatch {
    /// How the value is compared: Exact (the default) or RegularExpression.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Exact"))]
    pub type_: Option<HeaderMatchType>,
    /// Parameter name. Only the first of several matches naming the same parameter counts.
    #[schemars(length(min = 1, max = 256), pattern(HEADER_NAME_PATTERN))]
    pub name: String,
    /// The value to compare with.
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl HTTPQueryParamMatch {
    /// The comparison, upstream's default (Exact) applied.
    pub fn match_type(&self) -> HeaderMatchType {
        self.type_.clone().unwrap_or(HeaderMatchType::Exact)
    }
}

open_enum! {
    /// An HTTP request method.
    pub enum HTTPMethod {
        Get = "GET",
        Head = "HEAD",
        Post = "POST",
        Put = "PUT",
        Delete = "DELETE",
        Connect = "CONNECT",
        Options = "OPTIONS",
        Trace = "TRACE",
        Patch = "PATCH",
    }
}

open_enum! {
    /// Which filter an HTTPRoute filter entry is; names the field that holds its settings.
    pub enum HTTPRouteFilterType {
        RequestHeaderModifier = "RequestHeaderModifier",
        ResponseHeaderModifier = "ResponseHeaderModifier",
        RequestMirror = "RequestMirror",
        RequestRedirect = "RequestRedirect",
        URLRewrite = "URLRewrite",
        ExtensionRef = "ExtensionRef",
        CORS = "CORS",
    }
}

/// One processing step for a request or response; `type` says which field below applies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPRouteFilter {
    /// The filter: RequestHeaderModifier, ResponseHeaderModifier, RequestMirror,
    /// RequestRedirect, URLRewrite, CORS, or ExtensionRef for an implementation's own.
    #[serde(rename = "type")]
    pub type_: HTTPRouteFilterType,
    /// Headers to set, add or remove on the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HTTPHeaderFilter>,
    /// Headers to set, add or remove on the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HTTPHeaderFilter>,
    /// A backend that receives copies of the requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<HTTPRequestMirrorFilter>,
    /// Answer with a redirect instead of forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<HTTPRequestRedirectFilter>,
    /// Rewrite host and path before forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<HTTPURLRewriteFilter>,
    /// Answer cross-origin requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<HTTPCORSFilter>,
    /// An implementation's own filter, as an object in the route's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<LocalObjectReference>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// Time limits for the requests a rule matches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPRouteTimeouts {
    /// Longest time from receiving the request to finishing the response, retries included
    /// (for example 10s, 1m30s, 500ms). "0s" disables the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub request: Option<String>,
    /// Longest time for one attempt to a backend; at most `request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub backend_request: Option<String>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl HTTPRouteTimeouts {
    /// `request` as a duration, when set.
    pub fn request(&self) -> Option<Result<Duration, DurationError>> {
        self.request.as_deref().map(parse_duration)
    }

    /// `backendRequest` as a duration, when set.
    pub fn backend_request(&self) -> Option<Result<Duration, DurationError>> {
        self.backend_request.as_deref().map(parse_duration)
    }
}
