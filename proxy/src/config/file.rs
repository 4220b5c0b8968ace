//! The static configuration file (`shifter proxy --config FILE`): snapshots written by hand, for
//! running a proxy with no controller at all.
//!
//! ```yaml
//! authorities:
//!   - authority: web.shop.svc.cluster.local:80
//!     routes:                        # tried in order; the last one should have no matches
//!       - name: beta
//!         matches:
//!           - path_regex: /api       # anchored at the start of the path
//!             methods: [GET, POST]
//!             headers: { x-canary: "1" }   # value regexes, all must match
//!         backends:
//!           - { service: web-v2, weight: 1, endpoints: ["127.0.0.1:8082"] }
//!       - name: default
//!         backends:
//!           - { service: web-v1, weight: 90, endpoints: ["127.0.0.1:8081"] }
//!           - { service: web-v2, weight: 10, endpoints: ["127.0.0.1:8082"] }
//! ```
//!
//! `namespace` and `service` default to the parts of a `name.namespace.svc...` authority, and a
//! backend's `namespace` to the authority's. Weights are 0 to 1000000000 (as in a TrafficSplit) and
//! ports 1 to 65535; a value out of range is an error that names its field, e.g.
//! `authorities[0].routes[1].backends[0].weight: ...`.
//! `proxy/static-config.example.yaml` is a commented example (a unit test keeps it valid).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use shifter_crds::quantity::MAX_WEIGHT;
use shifter_proto::v1::{Endpoint, HeaderMatch, HttpMatch, Route, Snapshot, WeightedBackend};

use crate::error::ConfigError;

/// Snapshots loaded from a file (or built in code), one per authority.
#[derive(Debug, Clone, Default)]
pub struct StaticConfig {
    pub snapshots: Vec<Snapshot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    authorities: Vec<FileAuthority>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuthority {
    #[serde(deserialize_with = "authority")]
    authority: String,
    namespace: Option<String>,
    service: Option<String>,
    #[serde(default = "yes")]
    exists: bool,
    #[serde(default)]
    split: String,
    #[serde(default = "one")]
    version: u64,
    #[serde(default)]
    routes: Vec<FileRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    #[serde(default)]
    name: String,
    #[serde(default)]
    matches: Vec<FileMatch>,
    #[serde(default)]
    backends: Vec<FileBackend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMatch {
    #[serde(default, alias = "pathRegex")]
    path_regex: String,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackend {
    service: String,
    namespace: Option<String>,
    #[serde(deserialize_with = "weight")]
    weight: u64,
    #[serde(default, deserialize_with = "port")]
    port: u32,
    #[serde(default)]
    endpoints: Vec<String>,
}

fn weight<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_u64(Bounded {
        max: MAX_WEIGHT,
        what: "weight",
        hint: "weights are relative, so divide them all by a common factor",
    })
}

/// A backend's port: 1 to 65535, or 0 when every endpoint names its own.
fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let hint = "ports are 1 to 65535 (0: each endpoint gives its own)";
    d.deserialize_u64(Bounded { max: u64::from(u16::MAX), what: "port", hint }).map(|p| p as u32)
}

/// `host` or `host:port`, with a port from 1 to 65535 when one is given.
fn authority<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(Authority)
}

/// Reads a whole number up to `max`. Checking inside the visitor, not after deserializing, makes
/// the YAML parser report the error with the field's full path and its line.
struct Bounded {
    max: u64,
    what: &'static str,
    hint: &'static str,
}

impl Visitor<'_> for Bounded {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} from 0 to {}", self.what, self.max)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if v <= self.max {
            Ok(v)
        } else {
            Err(E::custom(format!("{v} is above the largest {}, {}; {}", self.what, self.max, self.hint)))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
        }
    }
}

struct Authority;

impl Visitor<'_> for Authority {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("host:port, e.g. web.shop.svc.cluster.local:80")
    }

    fn visit_str<E: de::Error>(self, raw: &str) -> Result<String, E> {
        let canonical = super::normalize_authority(raw);
        let (host, port) = canonical.rsplit_once(':').unwrap_or(("", ""));
        if host.is_empty() || !port.parse::<u16>().is_ok_and(|p| p != 0) {
            let shown: String = raw.chars().take(80).collect();
            return Err(E::custom(format!(
                "{shown:?} is not host:port with a port from 1 to 65535; write e.g. web.shop.svc.cluster.local:80"
            )));
        }
        Ok(raw.to_string())
    }
}

fn yes() -> bool {
    true
}

fn one() -> u64 {
    1
}

impl StaticConfig {
    /// Reads and parses a YAML file.
    pub fn load(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_yaml(&text, path)
    }

    /// Parses YAML text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let doc: FileDoc =
            serde_yaml::from_str(text).map_err(|source| ConfigError::Parse { path: origin.into(), source })?;
        let mut snapshots: Vec<Snapshot> = Vec::with_capacity(doc.authorities.len());
        for a in doc.authorities {
            let authority = super::normalize_authority(&a.authority);
            if snapshots.iter().any(|s| s.authority == authority) {
                return Err(ConfigError::Duplicate(authority));
            }
            let host = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h);
            let port = authority.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).map_or(80, u32::from);
            let mut labels = host.split('.');
            let service = a.service.unwrap_or_else(|| labels.next().unwrap_or_default().to_string());
            let namespace = a.namespace.unwrap_or_else(|| labels.next().unwrap_or("default").to_string());
            let routes = a.routes.into_iter().map(|r| file_route(r, &namespace)).collect();
            snapshots.push(Snapshot {
                version: a.version,
                authority,
                namespace,
                service,
                port,
                exists: a.exists,
                routes,
                split: a.split,
                digest: String::new(),
            });
        }
        Ok(Self { snapshots })
    }
}

fn file_route(r: FileRoute, namespace: &str) -> Route {
    Route {
        name: r.name,
        matches: r
            .matches
            .into_iter()
            .map(|m| HttpMatch {
                path_regex: m.path_regex,
                methods: m.methods,
                headers: m.headers.into_iter().map(|(name, value_regex)| HeaderMatch { name, value_regex }).collect(),
                ..Default::default()
            })
            .collect(),
        backends: r
            .backends
            .into_iter()
            .map(|b| WeightedBackend {
                namespace: b.namespace.unwrap_or_else(|| namespace.to_string()),
                endpoints: b.endpoints.iter().map(|e| file_endpoint(e, b.port)).collect(),
                service: b.service,
                weight: b.weight,
                port: b.port,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// `"10.0.0.1:8080"`, `"[::1]:8080"`, or a bare address that takes the backend's port. A string
/// that is not an address is kept as is and rejected, with its name, when the snapshot is applied.
fn file_endpoint(text: &str, port: u32) -> Endpoint {
    if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
        return Endpoint {
            address: sa.ip().to_string(),
            port: sa.port().into(),
            name: text.into(),
            zone: String::new(),
        };
    }
    Endpoint { address: text.trim_matches(['[', ']']).to_string(), port, name: text.into(), zone: String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let yaml = r#"
authorities:
  - authority: web.shop.svc.cluster.local:80
    routes:
      - name: beta
        matches:
          - path_regex: /api
            methods: [GET]
            headers: { x-canary: "1" }
        backends:
          - { service: web-v2, weight: 1, endpoints: ["127.0.0.1:8082"] }
      - name: default
        backends:
          - { service: web-v1, weight: 90, port: 8081, endpoints: ["127.0.0.1"] }
"#;
        let cfg = StaticConfig::from_yaml(yaml, "test").unwrap();
        let s = &cfg.snapshots[0];
        assert_eq!((s.service.as_str(), s.namespace.as_str(), s.port), ("web", "shop", 80));
        assert_eq!(s.routes[0].matches[0].headers[0].name, "x-canary");
        assert_eq!(s.routes[1].backends[0].endpoints[0].port, 8081);
        assert_eq!(s.routes[1].backends[0].namespace, "shop");
    }

    #[test]
    fn the_shipped_example_parses_and_compiles() {
        let cfg = StaticConfig::from_yaml(include_str!("../../static-config.example.yaml"), "example").unwrap();
        assert_eq!(cfg.snapshots.len(), 2);
        let compiler = crate::route::Compiler {
            metrics: Default::default(),
            endpoints: Default::default(),
            settings: Default::default(),
        };
        for s in cfg.snapshots {
            crate::route::RouteTable::compile(s, &compiler).unwrap();
        }
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let backend = |b: &str| {
            format!("authorities:\n- authority: web:80\n  routes:\n  - backends:\n    - {{service: a, {b}}}\n")
        };
        for (yaml, says) in [
            (backend("weight: 18446744073709551616"), "authorities[0].routes[0].backends[0].weight: "),
            (backend("weight: -1"), "authorities[0].routes[0].backends[0].weight: "),
            (
                backend("weight: 1, port: 70000"),
                "authorities[0].routes[0].backends[0].port: 70000 is above the largest port, 65535",
            ),
            (
                "authorities: [{authority: 'web:99999'}]".to_string(),
                "authorities[0].authority: \"web:99999\" is not host:port",
            ),
            ("authorities: [{authority: ''}]".to_string(), "authorities[0].authority: "),
        ] {
            let message = StaticConfig::from_yaml(&yaml, "t").err().unwrap().to_string();
            assert!(message.contains(says), "{yaml}: {message}");
        }
        let max = backend("weight: 1000000000, port: 65535");
        assert_eq!(
            StaticConfig::from_yaml(&max, "t").unwrap().snapshots[0].routes[0].backends[0].weight,
            1_000_000_000
        );
    }

    #[test]
    fn rejects_unknown_fields_and_duplicates() {
        assert!(StaticConfig::from_yaml("authorities: [{authority: a, wieght: 1}]", "t").is_err());
        let dup = "authorities: [{authority: 'a:80'}, {authority: a}]";
        assert!(matches!(StaticConfig::from_yaml(dup, "t"), Err(ConfigError::Duplicate(_))));
    }
}
