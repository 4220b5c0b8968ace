//! The bodies of route filters: header modifiers, mirroring, redirects, rewrites and CORS.
//! Which of them a kind allows, and the `type` that selects one, live with the kind.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{BackendObjectReference, HEADER_NAME_PATTERN, HTTPHeader, SUBDOMAIN_PATTERN};
use super::{Extra, open_enum};

/// Changes the headers of a request or response: `set` replaces, `add` appends, `remove` drops.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPHeaderFilter {
    /// Headers to set, replacing any value already present.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub set: Option<Vec<HTTPHeader>>,
    /// Headers to add, after any value already present.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub add: Option<Vec<HTTPHeader>>,
    /// Names of headers to remove (case-insensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "set"))]
    pub remove: Option<Vec<String>>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// Copies requests to another backend and ignores its responses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPRequestMirrorFilter {
    /// Where the copies go.
    pub backend_ref: BackendObjectReference,
    /// Share of requests to copy, in percent (0 to 100). At most one of percent and fraction;
    /// neither means every request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub percent: Option<i32>,
    /// Share of requests to copy, as numerator/denominator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

/// A share written as numerator/denominator; the numerator may not exceed the denominator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct Fraction {
    /// Numerator, 0 or more.
    #[schemars(range(min = 0))]
    pub numerator: i32,
    /// Denominator, 1 or more; unset means 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 100))]
    pub denominator: Option<i32>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

open_enum! {
    /// The scheme of a redirect's Location.
    pub enum Scheme {
        Http = "http",
        Https = "https",
    }
}

/// Answers the request with a redirect instead of forwarding it. Parts left unset are kept
/// from the request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPRequestRedirectFilter {
    /// Scheme of the Location: http or https. Unset keeps the request's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    /// Host of the Location. Unset keeps the request's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(SUBDOMAIN_PATTERN))]
    pub hostname: Option<String>,
    /// How the path of the Location is derived from the request's. Unset keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathModifier>,
    /// Port of the Location. Unset means the scheme's well-known port when the scheme
    /// changes, else the request's port.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Status code of the redirect; unset means 302.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [301, 302, 303, 307, 308], "default" = 302))]
    pub status_code: Option<i32>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

impl HTTPRequestRedirectFilter {
    /// The redirect's status code, upstream's default (302) applied.
    pub fn status_code(&self) -> i32 {
        self.status_code.unwrap_or(302)
    }
}

/// Rewrites the request's host and path before it is forwarded.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPURLRewriteFilter {
    /// Host header to send instead of the request's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(SUBDOMAIN_PATTERN))]
    pub hostname: Option<String>,
    /// How the path is rewritten. Unset keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathModifier>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

open_enum! {
    /// How a path is rewritten.
    pub enum HTTPPathModifierType {
        /// Replace the whole path with `replaceFullPath`.
        ReplaceFullPath = "ReplaceFullPath",
        /// Replace the part the rule's PathPrefix match matched with `replacePrefixMatch`.
        ReplacePrefixMatch = "ReplacePrefixMatch",
    }
}

/// A path rewrite, in a redirect or a URL rewrite.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPPathModifier {
    /// ReplaceFullPath or ReplacePrefixMatch; names the field below that applies.
    #[serde(rename = "type")]
    pub type_: HTTPPathModifierType,
    /// The new path, for ReplaceFullPath.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub replace_full_path: Option<String>,
    /// What replaces the matched prefix, for ReplacePrefixMatch (only with a PathPrefix match).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub replace_prefix_match: Option<String>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}

open_enum! {
    /// A method a CORS filter allows, or `*` for any.
    pub enum CORSMethod {
        Get = "GET",
        Head = "HEAD",
        Post = "POST",
        Put = "PUT",
        Delete = "DELETE",
        Connect = "CONNECT",
        Options = "OPTIONS",
        Trace = "TRACE",
        Patch = "PATCH",
        Any = "*",
    }
}

/// Answers cross-origin (CORS) requests: preflight responses and the headers of actual ones.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct HTTPCORSFilter {
    /// Origins allowed to make requests (scheme://host[:port]); `*` allows any, and a host may
    /// start with a `*.` wildcard label.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)), extend("x-kubernetes-list-type" = "set"))]
    pub allow_origins: Option<Vec<String>>,
    /// Whether responses may be shared when the request carries credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Methods allowed for cross-origin requests; `*` allows any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 9), extend("x-kubernetes-list-type" = "set"))]
    pub allow_methods: Option<Vec<CORSMethod>>,
    /// Request headers allowed in cross-origin requests; `*` allows any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 256), pattern(HEADER_NAME_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub allow_headers: Option<Vec<String>>,
    /// Response headers a browser script may read; `*` allows any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 256), pattern(HEADER_NAME_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub expose_headers: Option<Vec<String>>,
    /// Seconds a browser may cache a preflight response; unset means 5.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 5))]
    pub max_age: Option<i32>,
    /// Fields this version of shifter does not model, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub extra: Extra,
}
