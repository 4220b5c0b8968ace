//! A snapshot compiled for routing: regexes built once, endpoints resolved to shared state, metric
//! handles looked up once, so the per-request path does no parsing and no map lookups.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;
use shifter_proto::v1::{HttpMatch, Snapshot, WeightedBackend};

use crate::balance::{EndpointRegistry, EndpointState, pick_weighted};
use crate::config::Settings;
use crate::error::RouteError;
use crate::metrics::{BackendKey, BackendStats, Metrics};

/// What compiling needs from the running proxy.
pub(crate) struct Compiler {
    pub metrics: Arc<Metrics>,
    pub endpoints: EndpointRegistry,
    pub settings: Settings,
}

/// One authority's routing table, immutable once built; a new snapshot builds a new table.
pub(crate) struct RouteTable {
    pub snapshot: Snapshot,
    routes: Vec<CompiledRoute>,
}

pub(crate) struct CompiledRoute {
    pub name: String,
    matches: Vec<CompiledMatch>,
    pub backends: Vec<Backend>,
    total_weight: u64,
    ready_weight: u64,
}

pub(crate) struct Backend {
    pub weight: u64,
    pub endpoints: Vec<Arc<EndpointState>>,
    pub stats: Arc<BackendStats>,
}

struct CompiledMatch {
    path: Option<Regex>,
    methods: Option<Vec<Method>>,
    headers: Vec<(HeaderName, Regex)>,
}

impl RouteTable {
    pub fn compile(snapshot: Snapshot, c: &Compiler) -> Result<Self, RouteError> {
        let mut routes = Vec::with_capacity(snapshot.routes.len());
        for r in &snapshot.routes {
            let matches = r.matches.iter().map(|m| compile_match(&r.name, m)).collect::<Result<_, _>>()?;
            let backends: Vec<Backend> =
                r.backends.iter().map(|b| compile_backend(&snapshot, b, c)).collect::<Result<_, _>>()?;
            let total_weight = backends.iter().map(|b| b.weight).sum();
            let ready_weight = backends.iter().filter(|b| !b.endpoints.is_empty()).map(|b| b.weight).sum();
            routes.push(CompiledRoute { name: r.name.clone(), matches, backends, total_weight, ready_weight });
        }
        Ok(Self { snapshot, routes })
    }

    pub fn exists(&self) -> bool {
        self.snapshot.exists
    }

    pub fn version(&self) -> u64 {
        self.snapshot.version
    }

    /// The first route whose matches accept the request (a route without matches accepts all).
    pub fn route_for(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<&CompiledRoute> {
        self.routes.iter().find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.accepts(method, path, headers)))
    }

    /// Opaque connections carry no request to match, so they take the catch-all (apex) route.
    pub fn tcp_route(&self) -> Option<&CompiledRoute> {
        self.routes.iter().rev().find(|r| r.matches.is_empty()).or(self.routes.last())
    }
}

impl CompiledRoute {
    /// A backend by weight. A backend the draw lands on that has no ready endpoint is counted as
    /// skipped and the draw is repeated over the backends that can serve, keeping their ratios.
    pub fn pick_backend(&self) -> Option<&Backend> {
        let i = pick_weighted(self.backends.iter().map(|b| b.weight), self.total_weight)?;
        let chosen = &self.backends[i];
        if !chosen.endpoints.is_empty() {
            return Some(chosen);
        }
        chosen.stats.record_skip();
        let ready = |b: &Backend| if b.endpoints.is_empty() { 0 } else { b.weight };
        let j = pick_weighted(self.backends.iter().map(ready), self.ready_weight)?;
        Some(&self.backends[j])
    }
}

impl CompiledMatch {
    fn accepts(&self, method: &Method, path: &str, headers: &HeaderMap) -> bool {
        if let Some(methods) = &self.methods
            && !methods.contains(method)
        {
            return false;
        }
        if let Some(re) = &self.path
            && !re.is_match(path)
        {
            return false;
        }
        self.headers
            .iter()
            .all(|(name, re)| headers.get_all(name).iter().any(|v| v.to_str().is_ok_and(|v| re.is_match(v))))
    }
}

fn regex(route: &str, pattern: String) -> Result<Regex, RouteError> {
    Regex::new(&pattern).map_err(|source| RouteError::InvalidRegex { route: route.into(), pattern, source })
}

fn compile_match(route: &str, m: &HttpMatch) -> Result<CompiledMatch, RouteError> {
    // SMI path regexes are anchored at the start of the path only ("/api" matches "/api/v1").
    let path = (!m.path_regex.is_empty()).then(|| regex(route, format!("^(?:{})", m.path_regex))).transpose()?;
    let methods = if m.methods.is_empty() || m.methods.iter().any(|x| x == "*") {
        None
    } else {
        Some(m.methods.iter().filter_map(|x| Method::from_bytes(x.to_ascii_uppercase().as_bytes()).ok()).collect())
    };
    // Header values must match as a whole, as Envoy's safe_regex (which SMI implementations
    // compile to) does: "1" must not accept "10".
    let headers = m
        .headers
        .iter()
        .map(|h| {
            let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes())
                .map_err(|_| RouteError::InvalidHeaderName { route: route.into(), name: h.name.clone() })?;
            Ok((name, regex(route, format!("^(?:{})$", h.value_regex))?))
        })
        .collect::<Result<_, RouteError>>()?;
    Ok(CompiledMatch { path, methods, headers })
}

fn compile_backend(s: &Snapshot, b: &WeightedBackend, c: &Compiler) -> Result<Backend, RouteError> {
    let namespace = if b.namespace.is_empty() { &s.namespace } else { &b.namespace };
    let stats = c.metrics.backend(BackendKey {
        authority: s.authority.clone(),
        dst_namespace: namespace.clone(),
        dst_service: b.service.clone(),
    });
    stats.set_apex(&s.namespace, &s.service, s.version);
    let endpoints = b
        .endpoints
        .iter()
        .map(|e| {
            let ip: IpAddr = e
                .address
                .parse()
                .map_err(|_| RouteError::InvalidEndpoint { service: b.service.clone(), address: e.address.clone() })?;
            let port = if e.port != 0 { e.port } else { b.port };
            let port = u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| RouteError::InvalidEndpoint {
                service: b.service.clone(),
                address: format!("{}:{port}", e.address),
            })?;
            let s = &c.settings;
            Ok(c.endpoints.get(SocketAddr::new(ip, port), s.max_idle_per_endpoint, s.connect_timeout))
        })
        .collect::<Result<_, RouteError>>()?;
    Ok(Backend { weight: b.weight, endpoints, stats })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shifter_proto::v1::{Endpoint, HeaderMatch, Route};

    fn backend(service: &str, weight: u64, ports: &[u32]) -> WeightedBackend {
        let endpoints =
            ports.iter().map(|p| Endpoint { address: "127.0.0.1".into(), port: *p, ..Default::default() }).collect();
        WeightedBackend { service: service.into(), namespace: "shop".into(), weight, endpoints, port: 0 }
    }

    fn compiler() -> Compiler {
        Compiler { metrics: Arc::default(), endpoints: EndpointRegistry::default(), settings: Settings::default() }
    }

    fn table(routes: Vec<Route>) -> RouteTable {
        let s = Snapshot { authority: "web.shop:80".into(), exists: true, routes, ..Default::default() };
        RouteTable::compile(s, &compiler()).unwrap()
    }

    #[test]
    fn matches_path_prefix_method_and_whole_header_value() {
        let m = HttpMatch {
            path_regex: "/api".into(),
            methods: vec!["get".into()],
            headers: vec![HeaderMatch { name: "X-Canary".into(), value_regex: "1".into() }],
        };
        let t = table(vec![
            Route { name: "beta".into(), matches: vec![m], backends: vec![backend("v2", 1, &[2])] },
            Route { name: "default".into(), matches: vec![], backends: vec![backend("v1", 1, &[1])] },
        ]);
        let mut h = HeaderMap::new();
        h.insert("x-canary", "1".parse().unwrap());
        assert_eq!(t.route_for(&Method::GET, "/api/x", &h).unwrap().name, "beta");
        assert_eq!(t.route_for(&Method::POST, "/api/x", &h).unwrap().name, "default");
        assert_eq!(t.route_for(&Method::GET, "/v1/api", &h).unwrap().name, "default");
        h.insert("x-canary", "10".parse().unwrap());
        assert_eq!(t.route_for(&Method::GET, "/api", &h).unwrap().name, "default");
        assert_eq!(t.tcp_route().unwrap().name, "default");
    }

    #[test]
    fn backend_without_endpoints_is_skipped_and_counted() {
        let t = table(vec![Route {
            name: "default".into(),
            matches: vec![],
            backends: vec![backend("v1", 1, &[]), backend("v2", 1, &[2])],
        }]);
        let r = t.route_for(&Method::GET, "/", &HeaderMap::new()).unwrap();
        for _ in 0..200 {
            assert!(Arc::ptr_eq(&r.pick_backend().unwrap().stats, &r.backends[1].stats));
        }
        assert!(r.backends[0].stats.render_skips() > 0);
    }

    #[test]
    fn invalid_regex_rejects_the_snapshot() {
        let m = HttpMatch { path_regex: "(".into(), ..Default::default() };
        let s = Snapshot { routes: vec![Route { matches: vec![m], ..Default::default() }], ..Default::default() };
        assert!(matches!(RouteTable::compile(s, &compiler()), Err(RouteError::InvalidRegex { .. })));
    }
}
