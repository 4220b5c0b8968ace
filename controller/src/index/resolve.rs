//! Pure functions from cluster state to routing: the SMI rules live here.
//!
//! - A Service with no TrafficSplit resolves to its own endpoints.
//! - With a split, each backend Service must exist and have the apex port; one that does not is
//!   left out (it receives nothing) and reported. A backend that is the apex itself uses the apex
//!   Service's own endpoints, never the split again, so there is no loop.
//! - With `matches`, matching requests are split and everything else goes to the apex Service.
//! - Competing splits for one apex: the oldest valid one applies; the others are reported.

use shifter_crds::normalise::NormalisedSplit;
use shifter_crds::route_group::HttpMatch;
use shifter_proto::v1 as pb;

use super::gateway;
use super::state::{ClusterState, Key, ServicePortInfo, SplitInfo};
use crate::authority::Authority;

/// A status condition outcome: `Ok` or `(reason, message)`.
pub type Check = Result<(), (&'static str, String)>;

/// What the controller tells users about one split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitReport {
    pub accepted: Check,
    pub resolved_refs: Check,
    /// Effective share per backend, with a reason for each left-out backend.
    pub backends: Vec<BackendReport>,
    /// Whether this split is the one routing its apex now.
    pub active: bool,
}

/// One backend as users see it in status.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendReport {
    pub service: String,
    /// Weight at the split's common integer scale.
    pub weight: u64,
    /// Effective share of the split's traffic, in percent (rounded to 0.01).
    pub percent: f64,
    /// Why the backend receives nothing, when it cannot serve.
    pub reason: Option<&'static str>,
}

/// The split that routes `service` in `namespace`, if any: the oldest valid one.
pub fn active_split<'a>(state: &'a ClusterState, namespace: &str, service: &str) -> Option<(&'a Key, &'a SplitInfo)> {
    state
        .splits
        .iter()
        .filter(|((ns, _), s)| ns == namespace && s.service == service && s.split.is_ok())
        .min_by(|a, b| (&a.1.created, &a.0.1).cmp(&(&b.1.created, &b.0.1)))
}

/// Computes the routing snapshot for one authority (version 0; the index assigns versions).
/// `client_namespace` is where the clients that get it run (consumer routes there apply).
pub fn snapshot(state: &ClusterState, authority: &Authority, client_namespace: &str) -> pb::Snapshot {
    let ns = &authority.namespace;
    let mut snap = pb::Snapshot {
        authority: authority.to_string(),
        namespace: ns.clone(),
        service: authority.service.clone(),
        port: u32::from(authority.port),
        ..Default::default()
    };
    let Some(apex) = state.services.get(&(ns.clone(), authority.service.clone())) else { return snap };
    let Some(apex_port) = apex.port(authority.port) else { return snap };
    snap.exists = true;
    let apex_backend = backend(state, ns, &authority.service, apex_port, 1);
    let attached = gateway::attached(state, authority, client_namespace);
    if let Some(((route_ns, kind, name), _)) = attached.first() {
        snap.routes = gateway::routes(state, &attached, |backend_ns, svc, port, weight| {
            backend(state, backend_ns, svc, port, weight)
        });
        snap.split = format!("{}/{route_ns}/{name}", kind.kind());
        return snap;
    }
    let default_route = pb::Route {
        name: "default".into(),
        matches: vec![],
        backends: vec![apex_backend.clone()],
        ..Default::default()
    };

    let Some(((_, split_name), info)) = active_split(state, ns, &authority.service) else {
        snap.routes = vec![default_route];
        return snap;
    };
    let Ok(split) = &info.split else { unreachable!("active_split only returns valid splits") };
    let backends: Vec<pb::WeightedBackend> = split
        .backends
        .iter()
        .filter_map(|b| {
            if b.service == authority.service {
                return Some(pb::WeightedBackend { weight: b.weight, ..apex_backend.clone() });
            }
            let svc = state.services.get(&(ns.clone(), b.service.clone()))?;
            let port = svc.port(authority.port)?;
            Some(backend(state, ns, &b.service, port, b.weight))
        })
        .collect();
    if !backends.iter().any(|b| b.weight > 0) {
        // Nothing the split names can take traffic: serve the apex as if there were no split.
        snap.routes = vec![default_route];
        return snap;
    }
    snap.split = format!("{ns}/{split_name}");
    if split.route_groups.is_empty() {
        snap.routes = vec![pb::Route { name: split_name.clone(), backends, ..Default::default() }];
        return snap;
    }
    let matches: Vec<pb::HttpMatch> = split
        .route_groups
        .iter()
        .filter_map(|g| state.route_groups.get(&(ns.clone(), g.clone())))
        .flatten()
        .map(to_proto_match)
        .collect();
    snap.routes = if matches.is_empty() {
        vec![default_route]
    } else {
        vec![pb::Route { name: split_name.clone(), matches, backends, ..Default::default() }, default_route]
    };
    snap
}

/// A backend Service's ready endpoints on the port that carries `service_port`.
fn backend(
    state: &ClusterState,
    ns: &str,
    service: &str,
    service_port: &ServicePortInfo,
    weight: u64,
) -> pb::WeightedBackend {
    let mut endpoints = Vec::new();
    let mut backend_port = 0;
    for ((slice_ns, _), slice) in &state.slices {
        if slice_ns != ns || slice.service != service {
            continue;
        }
        let port = slice
            .ports
            .iter()
            .find(|(name, _)| *name == service_port.name)
            .map(|(_, p)| *p)
            .or(if slice.ports.is_empty() { service_port.target_number } else { None });
        let Some(port) = port else { continue };
        backend_port = port;
        for e in slice.endpoints.iter().filter(|e| e.ready) {
            let ep = pb::Endpoint {
                address: e.address.clone(),
                port: u32::from(port),
                name: e.name.clone(),
                zone: e.zone.clone(),
            };
            if !endpoints.contains(&ep) {
                endpoints.push(ep);
            }
        }
    }
    endpoints.sort_by(|a, b| (&a.address, a.port).cmp(&(&b.address, b.port)));
    pb::WeightedBackend {
        service: service.into(),
        namespace: ns.into(),
        weight,
        endpoints,
        port: u32::from(backend_port),
        ..Default::default()
    }
}

fn to_proto_match(m: &HttpMatch) -> pb::HttpMatch {
    pb::HttpMatch {
        path_regex: m.path_regex.clone().unwrap_or_default(),
        methods: m.methods.clone(),
        headers: m
            .headers
            .as_ref()
            .map(|h| h.pairs().into_iter().map(|(name, value_regex)| pb::HeaderMatch { name, value_regex }).collect())
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// The status shifter reports for the split at `key`.
pub fn report(state: &ClusterState, key: &Key) -> Option<SplitReport> {
    let info = state.splits.get(key)?;
    let (ns, name) = key;
    let split: &NormalisedSplit = match &info.split {
        Ok(s) => s,
        Err(errors) => {
            let reason = errors.0.first().map_or("Invalid", |e| e.kind.reason());
            return Some(SplitReport {
                accepted: Err((reason, errors.to_string())),
                resolved_refs: Err(("InvalidSplit", "the split is not accepted; fix the errors in Accepted".into())),
                backends: vec![],
                active: false,
            });
        }
    };
    let active = active_split(state, ns, &info.service).map(|(k, _)| k.clone());
    let superseded = gateway::routes_service(state, ns, &info.service);
    let accepted = match (&active, superseded) {
        (_, Some((_, kind, route))) => Err((
            "Superseded",
            format!(
                "{} {ns}/{route} routes {}; a Gateway API route takes precedence over a TrafficSplit for the same Service",
                kind.kind(),
                info.service
            ),
        )),
        (Some((_, winner)), None) if winner != name => Err((
            "Conflict",
            format!(
                "TrafficSplit {ns}/{winner} is older and already routes {}; only one split per apex Service applies",
                info.service
            ),
        )),
        _ => Ok(()),
    };
    let apex = state.services.get(&(ns.clone(), info.service.clone()));
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    if apex.is_none() {
        problems.push(("ServiceNotFound", format!("apex Service {ns}/{} not found", info.service)));
    }
    let mut backends = Vec::new();
    for b in &split.backends {
        let left_out = if b.service == info.service {
            None
        } else {
            match (state.services.get(&(ns.clone(), b.service.clone())), apex) {
                (None, _) => {
                    problems.push((
                        "BackendNotFound",
                        format!("backend Service {ns}/{} not found; it receives no traffic until it exists", b.service),
                    ));
                    Some("BackendNotFound")
                }
                (Some(svc), Some(apex)) => {
                    let missing: Vec<String> =
                        apex.ports.iter().filter(|p| svc.port(p.port).is_none()).map(|p| p.port.to_string()).collect();
                    if missing.is_empty() {
                        None
                    } else {
                        problems.push((
                            "PortMismatch",
                            format!(
                                "backend Service {} lacks port {} of apex {}; it receives no traffic on that port",
                                b.service,
                                missing.join(", "),
                                info.service
                            ),
                        ));
                        Some("PortMismatch")
                    }
                }
                (Some(_), None) => None,
            }
        };
        backends.push((b.service.clone(), b.weight, left_out));
    }
    for group in &split.route_groups {
        if !state.route_groups.contains_key(&(ns.clone(), group.clone())) {
            problems.push((
                "RouteGroupNotFound",
                format!("HTTPRouteGroup {ns}/{group} not found; requests are not matched by it"),
            ));
        }
    }
    let serving: u64 = backends.iter().filter(|b| b.2.is_none()).map(|b| b.1).sum();
    let backends = backends
        .into_iter()
        .map(|(service, weight, reason)| {
            let percent = if reason.is_some() || serving == 0 { 0.0 } else { weight as f64 * 100.0 / serving as f64 };
            BackendReport { service, weight, percent: (percent * 100.0).round() / 100.0, reason }
        })
        .collect();
    let resolved_refs = match problems.first() {
        None => Ok(()),
        Some((reason, _)) => Err((*reason, problems.iter().map(|p| p.1.clone()).collect::<Vec<_>>().join("; "))),
    };
    let is_active = superseded.is_none() && active.as_ref() == Some(key);
    Some(SplitReport { accepted, resolved_refs, backends, active: is_active })
}
