//! Gateway API routes (GAMMA: `parentRefs` naming a Service) as routing: the model each
//! HTTPRoute and GRPCRoute is reduced to, the rules that turn attached routes into a snapshot's
//! routes in the spec's precedence, and what each route's `status.parents` says.
//!
//! - Routes in the Service's own namespace (producer routes) attach to it for every client; routes
//!   in a client's namespace naming it (consumer routes) replace them for that client. A Service
//!   with any accepted route attached is routed by its routes alone: a request matching no rule
//!   gets 404.
//! - A Gateway API route and a TrafficSplit for the same Service: the route wins, and the split
//!   says so in its `Accepted` condition (reason `Superseded`).
//! - A backendRef that cannot be resolved answers its share of requests with 500; a resolved one
//!   without ready endpoints answers its share with 503.
//! - A route that uses a field or value shifter does not implement is not accepted
//!   (`UnsupportedValue`, naming each field) and routes nothing: never half-applied.

use std::cmp::Reverse;

use serde_json::Value;
use shifter_proto::v1 as pb;

use super::resolve::Check;
use super::state::{ClusterState, ServicePortInfo};
use crate::authority::Authority;

/// The `controllerName` shifter writes in `status.parents`.
pub const CONTROLLER_NAME: &str = "shifter.dev/controller";

/// Which Gateway API kind a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    Http,
    Grpc,
}

impl RouteKind {
    pub fn kind(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        }
    }
}

/// The Gateway API group and version shifter reads and writes routes at.
pub const GROUP: &str = "gateway.networking.k8s.io";
pub const VERSION: &str = "v1";

/// The API resource of a route kind, for dynamic reads and status writes.
pub fn api_resource(kind: RouteKind) -> kube::api::ApiResource {
    let plural = match kind {
        RouteKind::Http => "httproutes",
        RouteKind::Grpc => "grpcroutes",
    };
    kube::api::ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.kind().into(),
        plural: plural.into(),
    }
}

/// One route as routing needs it, translated from the object by a pure function.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteInfo {
    pub kind: RouteKind,
    pub name: String,
    pub generation: Option<i64>,
    /// Orders rules of equal precedence across routes: the oldest route first.
    pub created: String,
    pub uid: Option<String>,
    /// Every parentRef, in order, as written.
    pub parents: Vec<Parent>,
    pub rules: Vec<Rule>,
    /// Fields or values shifter does not implement, each naming its path.
    pub unsupported: Vec<String>,
    /// `status.parents` as last read (entries of every controller).
    pub status_parents: Vec<Value>,
    /// The field manager that last wrote the spec.
    pub spec_manager: Option<String>,
}

/// A parentRef. `service` is set when it names a Service (GAMMA); other parents (Gateways)
/// belong to other controllers and are left alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    pub service: Option<ServiceParent>,
    /// The parentRef as written, echoed in status.
    pub reference: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceParent {
    pub namespace: String,
    pub name: String,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rule {
    /// Empty: every request (a PathPrefix `/` match).
    pub matches: Vec<Match>,
    pub backends: Vec<BackendRef>,
    pub request_headers: Option<pb::HeaderModifier>,
    pub response_headers: Option<pb::HeaderModifier>,
    pub redirect: Option<pb::Redirect>,
    pub rewrite: Option<pb::Rewrite>,
    pub request_timeout_ms: u64,
    pub backend_timeout_ms: u64,
}

/// One match, already in the proxy's terms, with what ranks it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Match {
    pub matcher: pb::HttpMatch,
    pub rank: Rank,
}

/// Precedence between matches of all routes attached to a Service; larger sorts first.
/// HTTPRoute: an Exact path, then the longest prefix (regular expressions after prefixes, by
/// length), then a method, then most headers, then most query parameters. GRPCRoute: the
/// longest service, then the longest method, then most headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Rank {
    pub path_kind: u8,
    pub path_len: usize,
    pub method: usize,
    pub headers: usize,
    pub query: usize,
}

impl Rank {
    pub const EXACT: u8 = 3;
    pub const PREFIX: u8 = 2;
    pub const REGEX: u8 = 1;
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendRef {
    pub namespace: String,
    pub name: String,
    pub port: Option<u16>,
    pub weight: u64,
    /// Why the reference cannot be used whatever the cluster holds (`InvalidKind`,
    /// `RefNotPermitted`, …), with a message.
    pub invalid: Option<(&'static str, String)>,
}

/// What one route's status says for one of its Service parents.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentReport {
    /// Index into the route's parentRefs.
    pub parent: usize,
    pub accepted: Check,
    pub resolved_refs: Check,
}

/// A route's key: namespace, kind, name.
pub type RouteKey = (String, RouteKind, String);

/// Accepted routes attached to the Service behind `authority` for clients in `client_namespace`,
/// oldest first (then by key): the consumer routes in the client's namespace when it is not the
/// Service's and has any, else the Service's own (producer) routes.
pub fn attached<'a>(
    state: &'a ClusterState,
    authority: &Authority,
    client_namespace: &str,
) -> Vec<(&'a RouteKey, &'a RouteInfo)> {
    let from = |route_ns: &str| {
        let mut routes: Vec<(&RouteKey, &RouteInfo)> = state
            .gateway_routes
            .iter()
            .filter(|((ns, _, _), r)| {
                ns == route_ns
                    && r.unsupported.is_empty()
                    && attaches(r, &authority.namespace, &authority.service, Some(authority.port))
            })
            .collect();
        routes.sort_by(|a, b| (&a.1.created, a.0).cmp(&(&b.1.created, b.0)));
        routes
    };
    if client_namespace != authority.namespace {
        let consumer = from(client_namespace);
        if !consumer.is_empty() {
            return consumer;
        }
    }
    from(&authority.namespace)
}

/// Whether any accepted route attaches to the Service `service` in `namespace` (any port).
pub fn routes_service<'a>(state: &'a ClusterState, namespace: &str, service: &str) -> Option<&'a RouteKey> {
    state
        .gateway_routes
        .iter()
        .filter(|((ns, _, _), r)| ns == namespace && r.unsupported.is_empty() && attaches(r, ns, service, None))
        .min_by(|a, b| (&a.1.created, a.0).cmp(&(&b.1.created, b.0)))
        .map(|(k, _)| k)
}

/// Whether `route` names the Service `service` in `namespace` as a parent, for `port` (any port
/// when None).
fn attaches(route: &RouteInfo, namespace: &str, service: &str, port: Option<u16>) -> bool {
    route.parents.iter().filter_map(|p| p.service.as_ref()).any(|p| {
        p.namespace == namespace && p.name == service && (port.is_none() || p.port.is_none() || p.port == port)
    })
}

/// The snapshot routes for an authority with attached routes: every match of every rule becomes
/// one proxy route, sorted by precedence (ties: older route, then key, then rule and match order).
pub fn routes(
    state: &ClusterState,
    attached: &[(&RouteKey, &RouteInfo)],
    backend: impl Fn(&str, &str, &ServicePortInfo, u64) -> pb::WeightedBackend,
) -> Vec<pb::Route> {
    let mut entries: Vec<(Reverse<Rank>, usize, usize, usize, pb::Route)> = Vec::new();
    for (order, ((ns, kind, name), route)) in attached.iter().enumerate() {
        for (r, rule) in route.rules.iter().enumerate() {
            let backends = rule_backends(state, ns, rule, &backend);
            let template = pb::Route {
                name: format!("{}/{ns}/{name}/{r}", kind.kind()),
                matches: vec![],
                backends,
                request_headers: rule.request_headers.clone(),
                response_headers: rule.response_headers.clone(),
                redirect: rule.redirect.clone(),
                rewrite: rule.rewrite.clone(),
                request_timeout_ms: rule.request_timeout_ms,
                backend_timeout_ms: rule.backend_timeout_ms,
                empty_backend_fails: true,
            };
            // A rule without matches takes every request: for an HTTPRoute it ranks as a
            // PathPrefix `/` match, for a GRPCRoute below every method match.
            let rank = match kind {
                RouteKind::Http => Rank { path_kind: Rank::PREFIX, path_len: 1, ..Rank::default() },
                RouteKind::Grpc => Rank::default(),
            };
            let everything = [Match { matcher: pb::HttpMatch::default(), rank }];
            let matches = if rule.matches.is_empty() { &everything[..] } else { &rule.matches[..] };
            for (m, matched) in matches.iter().enumerate() {
                let route = pb::Route { matches: vec![matched.matcher.clone()], ..template.clone() };
                entries.push((Reverse(matched.rank), order, r, m, route));
            }
        }
    }
    entries.sort_by_key(|e| (e.0, e.1, e.2, e.3));
    entries.into_iter().map(|e| e.4).collect()
}

/// A rule's backends as the proxy gets them. A reference that cannot be resolved keeps its weight
/// and answers with 500; a rule with no backend that can take a share answers every request with
/// 500 (unless it redirects).
fn rule_backends(
    state: &ClusterState,
    namespace: &str,
    rule: &Rule,
    backend: &impl Fn(&str, &str, &ServicePortInfo, u64) -> pb::WeightedBackend,
) -> Vec<pb::WeightedBackend> {
    if rule.redirect.is_some() {
        return vec![];
    }
    let failing = |name: &str, weight: u64, why: String| pb::WeightedBackend {
        service: name.into(),
        namespace: namespace.into(),
        weight,
        fail_status: 500,
        fail_reason: why,
        ..Default::default()
    };
    let mut out: Vec<pb::WeightedBackend> = rule
        .backends
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b| match resolve_backend(state, b) {
            Ok(port) => backend(&b.namespace, &b.name, port, b.weight),
            Err((_, why)) => failing(&b.name, b.weight, why),
        })
        .collect();
    if out.is_empty() {
        let why =
            if rule.backends.is_empty() { "the rule has no backendRefs" } else { "every backendRef has weight 0" };
        out.push(failing("", 1, why.into()));
    }
    out
}

/// The Service port a backendRef resolves to, or why it does not.
fn resolve_backend<'a>(state: &'a ClusterState, b: &BackendRef) -> Result<&'a ServicePortInfo, (&'static str, String)> {
    if let Some(invalid) = &b.invalid {
        return Err(invalid.clone());
    }
    let Some(svc) = state.services.get(&(b.namespace.clone(), b.name.clone())) else {
        return Err(("BackendNotFound", format!("Service {}/{} not found", b.namespace, b.name)));
    };
    let Some(port) = b.port else {
        return Err(("UnsupportedValue", format!("backendRef to Service {} needs a port", b.name)));
    };
    svc.port(port).ok_or_else(|| ("BackendNotFound", format!("Service {}/{} has no port {port}", b.namespace, b.name)))
}

/// What the route's status says for each Service parent it names.
pub fn reports(state: &ClusterState, key: &RouteKey) -> Vec<ParentReport> {
    let Some(route) = state.gateway_routes.get(key) else { return vec![] };
    let mut refs: Vec<(&'static str, String)> = Vec::new();
    for rule in &route.rules {
        for b in &rule.backends {
            if let Err(problem) = resolve_backend(state, b)
                && !refs.contains(&problem)
            {
                refs.push(problem);
            }
        }
    }
    let resolved_refs: Check = match refs.first() {
        None => Ok(()),
        Some((reason, _)) => Err((reason, refs.iter().map(|r| r.1.clone()).collect::<Vec<_>>().join("; "))),
    };
    route
        .parents
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.service.as_ref()?)))
        .map(|(i, parent)| {
            let service = state.services.get(&(parent.namespace.clone(), parent.name.clone()));
            let accepted: Check = if !route.unsupported.is_empty() {
                Err(("UnsupportedValue", format!("not implemented by shifter: {}", route.unsupported.join("; "))))
            } else {
                match (service, parent.port) {
                    (None, _) => {
                        Err(("NoMatchingParent", format!("Service {}/{} not found", parent.namespace, parent.name)))
                    }
                    (Some(svc), Some(port)) if svc.port(port).is_none() => Err((
                        "NoMatchingParent",
                        format!("Service {}/{} has no port {port}", parent.namespace, parent.name),
                    )),
                    _ => Ok(()),
                }
            };
            ParentReport { parent: i, accepted, resolved_refs: resolved_refs.clone() }
        })
        .collect()
}

/// The `status.parents` a route should have: other controllers' entries as they are, then one
/// entry of shifter's per Service parent, keeping condition transition times when nothing changed.
pub fn desired_parents(route: &RouteInfo, reports: &[ParentReport]) -> Vec<Value> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use shifter_crds::conditions::{condition, set_condition};

    let ours = |entry: &Value| entry.get("controllerName").and_then(Value::as_str) == Some(CONTROLLER_NAME);
    let mut parents: Vec<Value> = route.status_parents.iter().filter(|e| !ours(e)).cloned().collect();
    for report in reports {
        let Some(parent) = route.parents.get(report.parent) else { continue };
        let previous: Vec<Condition> = route
            .status_parents
            .iter()
            .filter(|e| ours(e) && e.get("parentRef") == Some(&parent.reference))
            .filter_map(|e| serde_json::from_value(e.get("conditions")?.clone()).ok())
            .next()
            .unwrap_or_default();
        let mut conditions = previous;
        let generation = route.generation;
        let cond = |type_: &str, check: &Check, ok_message: &str| match check {
            Ok(()) => condition(type_, true, type_, ok_message, generation),
            Err((reason, message)) => condition(type_, false, reason, message.clone(), generation),
        };
        set_condition(&mut conditions, cond("Accepted", &report.accepted, "the route is attached to the Service"));
        set_condition(&mut conditions, cond("ResolvedRefs", &report.resolved_refs, "every backendRef was resolved"));
        conditions.retain(|c| c.type_ == "Accepted" || c.type_ == "ResolvedRefs");
        parents.push(serde_json::json!({
            "parentRef": parent.reference,
            "controllerName": CONTROLLER_NAME,
            "conditions": conditions,
        }));
    }
    parents
}
