//! A snapshot compiled for routing: regexes built once, endpoints resolved to shared state, metric
//! handles looked up once, so the per-request path does no parsing and no map lookups.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use regex::Regex;
use shifter_proto::v1::{self as pb, HttpMatch, Snapshot, WeightedBackend, path_modifier};

use crate::balance::{EndpointRegistry, EndpointState, pick_sequenced, pick_weighted};
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
    /// What happens to a matched request besides choosing a backend (Gateway API filters).
    pub filters: Filters,
    /// A bound on each attempt that replaces the proxy's own.
    pub timeout: Option<Duration>,
    /// A drawn backend with no ready endpoint answers 503 rather than the draw moving on.
    empty_backend_fails: bool,
    /// Draws so far (from a random start), for [`pick_sequenced`].
    draws: AtomicU64,
}

/// A route's filters, checked when the snapshot is compiled.
#[derive(Default)]
pub(crate) struct Filters {
    pub request_headers: Option<HeaderEdits>,
    pub response_headers: Option<HeaderEdits>,
    pub redirect: Option<Redirect>,
    pub rewrite: Option<Rewrite>,
}

/// Set, add and remove, with names and values already valid.
#[derive(Default)]
pub(crate) struct HeaderEdits {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

/// How a path is replaced by a redirect or a rewrite.
pub(crate) enum PathEdit {
    Full(String),
    /// Replaces the prefix the request matched on.
    Prefix(String),
}

pub(crate) struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub status: StatusCode,
    pub path: Option<PathEdit>,
}

pub(crate) struct Rewrite {
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathEdit>,
}

pub(crate) struct Backend {
    pub weight: u64,
    pub endpoints: Vec<Arc<EndpointState>>,
    pub stats: Arc<BackendStats>,
    /// A backend that cannot be used answers its share with this status and reason.
    pub invalid: Option<(StatusCode, String)>,
}

struct CompiledMatch {
    path: Option<Regex>,
    methods: Option<Vec<Method>>,
    headers: Vec<(HeaderName, Regex)>,
    query: Vec<(String, Regex)>,
    /// The literal prefix matched on, for prefix rewrites.
    prefix: String,
}

/// The route a request matched, and the path prefix it matched on (empty when none).
pub(crate) struct Selected<'a> {
    pub route: &'a CompiledRoute,
    pub prefix: &'a str,
}

impl RouteTable {
    pub fn compile(snapshot: Snapshot, c: &Compiler) -> Result<Self, RouteError> {
        let mut routes = Vec::with_capacity(snapshot.routes.len());
        for r in &snapshot.routes {
            let matches = r.matches.iter().map(|m| compile_match(&r.name, m)).collect::<Result<_, _>>()?;
            let backends: Vec<Backend> =
                r.backends.iter().map(|b| compile_backend(&snapshot, b, c)).collect::<Result<_, _>>()?;
            let total_weight = backends.iter().map(|b| b.weight).sum();
            let ready_weight = backends.iter().filter(|b| b.can_serve()).map(|b| b.weight).sum();
            let timeout = [r.request_timeout_ms, r.backend_timeout_ms]
                .into_iter()
                .filter(|ms| *ms > 0)
                .min()
                .map(Duration::from_millis);
            routes.push(CompiledRoute {
                name: r.name.clone(),
                matches,
                backends,
                total_weight,
                ready_weight,
                filters: compile_filters(&r.name, r)?,
                timeout,
                empty_backend_fails: r.empty_backend_fails,
                draws: AtomicU64::new(rand::random()),
            });
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
    /// Routes arrive in precedence order, so the first is the one that applies.
    pub fn route_for(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Option<Selected<'_>> {
        self.routes.iter().find_map(|route| {
            if route.matches.is_empty() {
                return Some(Selected { route, prefix: "" });
            }
            let m = route.matches.iter().find(|m| m.accepts(method, path, query, headers))?;
            Some(Selected { route, prefix: &m.prefix })
        })
    }

    /// Opaque connections carry no request to match, so they take the catch-all (apex) route.
    pub fn tcp_route(&self) -> Option<&CompiledRoute> {
        self.routes.iter().rev().find(|r| r.matches.is_empty()).or(self.routes.last())
    }
}

impl CompiledRoute {
    /// A backend by weight. A backend the draw lands on that has no ready endpoint is counted as
    /// skipped and the draw is repeated over the backends that can serve, keeping their ratios.
    ///
    /// On a route whose empty backends fail (Gateway API), and for a backend that cannot be used
    /// at all, the draw stands: that backend's share is answered with an error.
    ///
    /// A request's first attempt takes the route's next sequenced draw, so every run of requests
    /// splits by the weights; a retry (`attempt` > 1) draws at random, independent of where the
    /// failed attempt went, as every attempt's backend is a fresh draw by weight.
    pub fn pick_backend(&self, attempt: usize) -> Option<&Backend> {
        let weights = self.backends.iter().map(|b| b.weight);
        let i = if attempt <= 1 {
            pick_sequenced(weights, self.total_weight, self.draws.fetch_add(1, Ordering::Relaxed))?
        } else {
            pick_weighted(weights, self.total_weight)?
        };
        let chosen = &self.backends[i];
        if chosen.can_serve() || chosen.invalid.is_some() || self.empty_backend_fails {
            return Some(chosen);
        }
        chosen.stats.record_skip();
        let ready = |b: &Backend| if b.can_serve() { b.weight } else { 0 };
        let j = pick_weighted(self.backends.iter().map(ready), self.ready_weight)?;
        Some(&self.backends[j])
    }
}

impl Backend {
    fn can_serve(&self) -> bool {
        self.invalid.is_none() && !self.endpoints.is_empty()
    }
}

impl HeaderEdits {
    /// Applies set, then add, then remove, as the Gateway API orders them.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

impl PathEdit {
    /// The new path for `path`, which matched on `prefix`.
    pub fn apply(&self, path: &str, prefix: &str) -> String {
        match self {
            PathEdit::Full(full) => full.clone(),
            PathEdit::Prefix(replacement) => {
                let rest = path.strip_prefix(prefix.trim_end_matches('/')).unwrap_or(path);
                let joined = match (replacement.ends_with('/'), rest.starts_with('/')) {
                    (true, true) => format!("{replacement}{}", &rest[1..]),
                    (false, false) if !rest.is_empty() => format!("{replacement}/{rest}"),
                    _ => format!("{replacement}{rest}"),
                };
                if joined.is_empty() { "/".into() } else { joined }
            }
        }
    }
}

impl CompiledMatch {
    fn accepts(&self, method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap) -> bool {
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
        if !self
            .headers
            .iter()
            .all(|(name, re)| headers.get_all(name).iter().any(|v| v.to_str().is_ok_and(|v| re.is_match(v))))
        {
            return false;
        }
        self.query.iter().all(|(name, re)| {
            // The first parameter of that name decides, as the Gateway API specifies.
            let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
            pairs.into_iter().find(|(k, _)| k == name).is_some_and(|(_, v)| re.is_match(&v))
        })
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
        .map(|h| Ok((header_name(route, &h.name)?, regex(route, format!("^(?:{})$", h.value_regex))?)))
        .collect::<Result<_, RouteError>>()?;
    let query = m
        .query_params
        .iter()
        .map(|q| Ok((q.name.clone(), regex(route, format!("^(?:{})$", q.value_regex))?)))
        .collect::<Result<_, RouteError>>()?;
    Ok(CompiledMatch { path, methods, headers, query, prefix: m.path_prefix.clone() })
}

fn header_name(route: &str, name: &str) -> Result<HeaderName, RouteError> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| RouteError::InvalidHeaderName { route: route.into(), name: name.into() })
}

fn header_value(route: &str, name: &str, value: &str) -> Result<HeaderValue, RouteError> {
    HeaderValue::from_str(value).map_err(|_| RouteError::InvalidHeaderValue { route: route.into(), name: name.into() })
}

fn compile_edits(route: &str, m: Option<&pb::HeaderModifier>) -> Result<Option<HeaderEdits>, RouteError> {
    let Some(m) = m else { return Ok(None) };
    let pairs = |list: &[pb::Header]| {
        list.iter()
            .map(|h| Ok((header_name(route, &h.name)?, header_value(route, &h.name, &h.value)?)))
            .collect::<Result<Vec<_>, RouteError>>()
    };
    Ok(Some(HeaderEdits {
        set: pairs(&m.set)?,
        add: pairs(&m.add)?,
        remove: m.remove.iter().map(|n| header_name(route, n)).collect::<Result<_, _>>()?,
    }))
}

fn path_edit(m: Option<&pb::PathModifier>) -> Option<PathEdit> {
    match m?.kind.as_ref()? {
        path_modifier::Kind::ReplaceFullPath(p) => Some(PathEdit::Full(p.clone())),
        path_modifier::Kind::ReplacePrefixMatch(p) => Some(PathEdit::Prefix(p.clone())),
    }
}

fn compile_filters(route: &str, r: &pb::Route) -> Result<Filters, RouteError> {
    let redirect = r.redirect.as_ref().map(|d| Redirect {
        scheme: Some(d.scheme.clone()).filter(|s| !s.is_empty()),
        hostname: Some(d.hostname.clone()).filter(|s| !s.is_empty()),
        port: u16::try_from(d.port).ok().filter(|p| *p != 0),
        status: match d.status_code {
            301 => StatusCode::MOVED_PERMANENTLY,
            _ => StatusCode::FOUND,
        },
        path: path_edit(d.path.as_ref()),
    });
    let rewrite = match &r.rewrite {
        None => None,
        Some(w) => Some(Rewrite {
            hostname: (!w.hostname.is_empty()).then(|| header_value(route, "host", &w.hostname)).transpose()?,
            path: path_edit(w.path.as_ref()),
        }),
    };
    Ok(Filters {
        request_headers: compile_edits(route, r.request_headers.as_ref())?,
        response_headers: compile_edits(route, r.response_headers.as_ref())?,
        redirect,
        rewrite,
    })
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
    let invalid = (b.fail_status != 0).then(|| {
        let status = u16::try_from(b.fail_status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, b.fail_reason.clone())
    });
    Ok(Backend { weight: b.weight, endpoints, stats, invalid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shifter_proto::v1::{Endpoint, HeaderMatch, Route};

    fn backend(service: &str, weight: u64, ports: &[u32]) -> WeightedBackend {
        let endpoints =
            ports.iter().map(|p| Endpoint { address: "127.0.0.1".into(), port: *p, ..Default::default() }).collect();
        WeightedBackend { service: service.into(), namespace: "shop".into(), weight, endpoints, ..Default::default() }
    }

    fn compiler() -> Compiler {
        Compiler { metrics: Arc::default(), endpoints: EndpointRegistry::default(), settings: Settings::default() }
    }

    fn name_for(t: &RouteTable, method: Method, target: &str, h: &HeaderMap) -> String {
        let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
        t.route_for(&method, path, query, h).map_or("none".into(), |s| s.route.name.clone())
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
            ..Default::default()
        };
        let t = table(vec![
            Route {
                name: "beta".into(),
                matches: vec![m],
                backends: vec![backend("v2", 1, &[2])],
                ..Default::default()
            },
            Route { name: "default".into(), backends: vec![backend("v1", 1, &[1])], ..Default::default() },
        ]);
        let mut h = HeaderMap::new();
        h.insert("x-canary", "1".parse().unwrap());
        assert_eq!(name_for(&t, Method::GET, "/api/x", &h), "beta");
        assert_eq!(name_for(&t, Method::POST, "/api/x", &h), "default");
        assert_eq!(name_for(&t, Method::GET, "/v1/api", &h), "default");
        h.insert("x-canary", "10".parse().unwrap());
        assert_eq!(name_for(&t, Method::GET, "/api", &h), "default");
        assert_eq!(t.tcp_route().unwrap().name, "default");
    }

    #[test]
    fn backend_without_endpoints_is_skipped_and_counted() {
        let t = table(vec![Route {
            name: "default".into(),
            backends: vec![backend("v1", 1, &[]), backend("v2", 1, &[2])],
            ..Default::default()
        }]);
        let r = t.route_for(&Method::GET, "/", None, &HeaderMap::new()).unwrap().route;
        for _ in 0..200 {
            assert!(Arc::ptr_eq(&r.pick_backend(1).unwrap().stats, &r.backends[1].stats));
        }
        assert!(r.backends[0].stats.render_skips() > 0);
    }

    #[test]
    fn every_run_of_draws_splits_by_the_weights() {
        let t = table(vec![Route {
            name: "r".into(),
            backends: vec![backend("v1", 70, &[1]), backend("v2", 30, &[2])],
            ..Default::default()
        }]);
        let r = t.route_for(&Method::GET, "/", None, &HeaderMap::new()).unwrap().route;
        for _ in 0..20 {
            let to_v1 =
                (0..500).filter(|_| Arc::ptr_eq(&r.pick_backend(1).unwrap().stats, &r.backends[0].stats)).count();
            assert!((345..=355).contains(&to_v1), "500 draws at 70/30 sent {to_v1} to v1");
        }
    }

    #[test]
    fn query_parameters_match_the_first_value_decoded_and_whole() {
        let m = HttpMatch {
            query_params: vec![HeaderMatch { name: "tier".into(), value_regex: "gold plus".into() }],
            ..Default::default()
        };
        let t = table(vec![Route { name: "gold".into(), matches: vec![m], ..Default::default() }]);
        let h = HeaderMap::new();
        assert_eq!(name_for(&t, Method::GET, "/?tier=gold+plus", &h), "gold");
        assert_eq!(name_for(&t, Method::GET, "/?a=1&tier=gold%20plus&tier=x", &h), "gold");
        assert_eq!(name_for(&t, Method::GET, "/?tier=x&tier=gold+plus", &h), "none", "only the first counts");
        assert_eq!(name_for(&t, Method::GET, "/?tier=gold+plus+x", &h), "none");
        assert_eq!(name_for(&t, Method::GET, "/", &h), "none");
    }

    #[test]
    fn a_prefix_replacement_keeps_the_rest_of_the_path_on_segment_boundaries() {
        let edit = PathEdit::Prefix("/v2".into());
        assert_eq!(edit.apply("/api/users", "/api"), "/v2/users");
        assert_eq!(edit.apply("/api", "/api"), "/v2");
        assert_eq!(edit.apply("/api/", "/api/"), "/v2/");
        assert_eq!(PathEdit::Prefix("/".into()).apply("/api/users", "/api"), "/users");
        assert_eq!(PathEdit::Prefix("/".into()).apply("/api", "/api"), "/");
        assert_eq!(PathEdit::Prefix("/new/".into()).apply("/old/x", "/old"), "/new/x");
        assert_eq!(PathEdit::Full("/fixed".into()).apply("/anything", ""), "/fixed");
    }

    #[test]
    fn a_gateway_route_keeps_the_draw_on_an_invalid_or_empty_backend() {
        let mut invalid = backend("gone", 1, &[]);
        invalid.fail_status = 500;
        let t = table(vec![Route {
            name: "r".into(),
            backends: vec![invalid, backend("v2", 1, &[2])],
            empty_backend_fails: true,
            ..Default::default()
        }]);
        let r = t.route_for(&Method::GET, "/", None, &HeaderMap::new()).unwrap().route;
        let picks: Vec<bool> = (0..400).map(|_| r.pick_backend(1).unwrap().invalid.is_some()).collect();
        let invalid_share = picks.iter().filter(|x| **x).count();
        assert!((120..280).contains(&invalid_share), "about half the draws keep the invalid backend: {invalid_share}");
        let t = table(vec![Route {
            name: "r".into(),
            backends: vec![backend("empty", 1, &[]), backend("v2", 1, &[2])],
            empty_backend_fails: true,
            ..Default::default()
        }]);
        let r = t.route_for(&Method::GET, "/", None, &HeaderMap::new()).unwrap().route;
        assert!((0..400).any(|_| r.pick_backend(1).unwrap().endpoints.is_empty()));
    }

    #[test]
    fn invalid_regex_rejects_the_snapshot() {
        let m = HttpMatch { path_regex: "(".into(), ..Default::default() };
        let s = Snapshot { routes: vec![Route { matches: vec![m], ..Default::default() }], ..Default::default() };
        assert!(matches!(RouteTable::compile(s, &compiler()), Err(RouteError::InvalidRegex { .. })));
    }
}
