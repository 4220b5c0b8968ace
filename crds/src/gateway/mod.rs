//! Gateway API routes as shifter reads them: `HTTPRoute` and `GRPCRoute` at
//! `gateway.networking.k8s.io/v1`, with every field of the Standard channel.
//!
//! These types are an input to translate, not a model to route by: they keep what the user wrote.
//! Defaults are applied by helper methods (`ParentReference::kind()`, `HTTPPathMatch::value()`,
//! `BackendRef::weight()`…), never by rewriting fields, and every struct a user writes keeps the
//! fields it does not know in `extra`, so a route from the Experimental channel or a later release
//! reads, and writes back, unchanged. Values upstream may add to (match types, filter types,
//! methods) are open enums whose `Other` variant carries what was written, so a translator can
//! say "unsupported value X" instead of failing to parse the route.

pub mod common;
pub mod filters;
pub mod grpc_route;
pub mod http_route;

use std::collections::BTreeMap;

pub use common::{
    BackendObjectReference, BackendRef, HTTPHeader, HTTPHeaderMatch, HeaderMatchType, LocalObjectReference,
    ParentReference, RouteParentStatus, RouteStatus,
};
pub use filters::{
    CORSMethod, Fraction, HTTPCORSFilter, HTTPHeaderFilter, HTTPPathModifier, HTTPPathModifierType,
    HTTPRequestMirrorFilter, HTTPRequestRedirectFilter, HTTPURLRewriteFilter, Scheme,
};
pub use grpc_route::{
    GRPCBackendRef, GRPCHeaderMatch, GRPCMethodMatch, GRPCMethodMatchType, GRPCRoute, GRPCRouteFilter,
    GRPCRouteFilterType, GRPCRouteMatch, GRPCRouteRule, GRPCRouteSpec,
};
pub use http_route::{
    HTTPBackendRef, HTTPMethod, HTTPPathMatch, HTTPQueryParamMatch, HTTPRoute, HTTPRouteFilter, HTTPRouteFilterType,
    HTTPRouteMatch, HTTPRouteRule, HTTPRouteSpec, HTTPRouteTimeouts, PathMatchType,
};

/// The API group of every Gateway API kind.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The one version shifter reads.
pub const VERSION: &str = "v1";
/// The upstream release whose Standard channel these types and CRDs follow.
pub const BUNDLE_VERSION: &str = "v1.5.1";
/// The upstream release channel the CRDs reproduce.
pub const CHANNEL: &str = "standard";

/// Fields present in an object that this version of shifter does not model, kept as written.
pub type Extra = BTreeMap<String, serde_json::Value>;

/// Declares a string enum that upstream may extend: known values get a variant, anything else
/// is kept in `Other` rather than failing to parse. The CRD schema lists the known values, as
/// upstream's does.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version of shifter does not know, as written.
            Other(String),
        }

        impl $name {
            /// Every value this version of shifter knows, as written in YAML.
            pub const KNOWN: &'static [&'static str] = &[$($text),+];

            /// The value as written in YAML.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(other) => other,
                }
            }

            /// False for a value this version of shifter does not know.
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_string()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok(Self::from(text.as_ref()))
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({"type": "string", "enum": Self::KNOWN})
            }

            fn inline_schema() -> bool {
                true
            }
        }
    };
}

pub(crate) use open_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_enum_keeps_values_it_does_not_know() {
        let known: PathMatchType = serde_json::from_str("\"Exact\"").unwrap();
        assert_eq!(known, PathMatchType::Exact);
        let other: PathMatchType = serde_json::from_str("\"Glob\"").unwrap();
        assert_eq!(other, PathMatchType::Other("Glob".into()));
        assert!(!other.is_known());
        assert_eq!(serde_json::to_string(&other).unwrap(), "\"Glob\"");
    }
}
