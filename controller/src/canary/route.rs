//! A Canary's weights on a Gateway API route (`spec.routeRef`), the way it keeps them on a
//! TrafficSplit: read what the route says, tell the state machine whether it is as written, and
//! write the phase's weights.
//!
//! The route belongs to its author (or their GitOps tool); shifter changes only the `weight` of
//! the stable and canary backendRefs, in every rule that routes to either (the canary's is added
//! next to the stable one when missing), and writes only when a weight must change. Upstream's
//! CRDs make `rules` one atomic list, so the write carries the rules exactly as read — matches,
//! filters and other rules included — and the `resourceVersion` they were read at: a change made
//! in between is never overwritten, the write is refused and retried on the next tick. A route
//! shifter did not write that carries other weights is a manual override, as for a split.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use shifter_crds::canary::{Canary, CanaryStatus, RouteRef, RouteRefKind};

use super::machine::SplitObservation;
use super::reconcile::{SPLIT_MANAGER, desired_backends};
use crate::index::gateway::{CONTROLLER_NAME, api_resource};
use crate::index::{RouteKind, state::last_spec_manager};

fn kind_of(r: &RouteRef) -> RouteKind {
    match r.kind {
        RouteRefKind::HTTPRoute => RouteKind::Http,
        RouteRefKind::GRPCRoute => RouteKind::Grpc,
    }
}

/// The route's API in the Canary's namespace.
pub fn api(client: &Client, canary: &Canary, r: &RouteRef) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), &canary.namespace().unwrap_or_default(), &api_resource(kind_of(r)))
}

/// Whether a backendRef names the Service `name` (kind Service in the core group, the default).
fn refers_to(b: &Value, name: &str) -> bool {
    let group = b.get("group").and_then(Value::as_str).unwrap_or("");
    let kind = b.get("kind").and_then(Value::as_str).unwrap_or("Service");
    b.get("name").and_then(Value::as_str) == Some(name) && kind == "Service" && (group.is_empty() || group == "core")
}

fn rules(route: &DynamicObject) -> Vec<Value> {
    route.data.pointer("/spec/rules").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The versions whose weights the Canary owns: the stable it started from, the current stable
/// (the canary once promoted) and the canary.
fn owned(canary: &Canary, status: &CanaryStatus) -> (Vec<String>, String) {
    let spec = &canary.spec;
    let current = status.canary.clone().unwrap_or_else(|| spec.canary.clone());
    let mut names = vec![spec.stable.clone(), super::machine::stable_of(spec, status), current.clone()];
    names.dedup();
    names.sort();
    names.dedup();
    (names, current)
}

/// The rules the Canary moves weights in: those that route to a stable version. A rule that
/// sends only to the canary (a pinned header, say) is the author's and left alone.
fn moved_rules(rules: &[Value], canary: &Canary, status: &CanaryStatus) -> Vec<usize> {
    let stables = [canary.spec.stable.clone(), super::machine::stable_of(&canary.spec, status)];
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.get("backendRefs")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|b| stables.iter().any(|s| refers_to(b, s))))
        })
        .map(|(i, _)| i)
        .collect()
}

/// The weight status wants for `service` (0 for an owned version it does not name).
fn wanted(want: &[(String, u32)], service: &str) -> u64 {
    want.iter().find(|(s, _)| s == service).map_or(0, |(_, w)| u64::from(*w))
}

/// What the route says compared with what status says it must.
pub fn observe(route: Option<&DynamicObject>, canary: &Canary, status: &CanaryStatus) -> SplitObservation {
    let Some(route) = route else { return SplitObservation::Missing };
    let want = desired_backends(&canary.spec, status, status.canary_weight);
    let (names, _) = owned(canary, status);
    let rules = rules(route);
    let moved = moved_rules(&rules, canary, status);
    if moved.is_empty() {
        return SplitObservation::Missing;
    }
    let mut seen = Vec::new();
    let mut as_written = true;
    for i in moved {
        let refs = rules[i].get("backendRefs").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut shown = Vec::new();
        for name in &names {
            let present: Vec<u64> = refs
                .iter()
                .filter(|b| refers_to(b, name))
                .map(|b| b.get("weight").and_then(Value::as_u64).unwrap_or(1))
                .collect();
            let have: u64 = present.iter().sum();
            as_written &= have == wanted(&want, name) && (!present.is_empty() || wanted(&want, name) == 0);
            shown.push(format!("{name}={have}"));
        }
        seen.push(shown.join(" "));
    }
    if as_written {
        return SplitObservation::AsWritten;
    }
    let manager = last_spec_manager(&route.metadata).unwrap_or_default();
    if manager == SPLIT_MANAGER || manager.is_empty() {
        // Our own earlier write: status decides what it must say now.
        return SplitObservation::Missing;
    }
    SplitObservation::Edited(format!("{} by {manager}", seen.join(", ")))
}

/// Why the Canary may not judge yet: the route is not Accepted, by any controller, for a
/// Service parent naming the Canary's Service at the route's current generation.
pub fn waiting(route: Option<&DynamicObject>, canary: &Canary) -> Option<String> {
    let Some(route) = route else { return Some("the route does not exist yet".into()) };
    let generation = route.metadata.generation;
    let service = &canary.spec.service;
    let parents = route.data.pointer("/status/parents").and_then(Value::as_array).cloned().unwrap_or_default();
    let accepted = parents.iter().any(|p| {
        let names_service = p.pointer("/parentRef/kind").and_then(Value::as_str) == Some("Service")
            && p.pointer("/parentRef/name").and_then(Value::as_str) == Some(service.as_str());
        names_service
            && p.get("conditions").and_then(Value::as_array).is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Accepted")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                        && c.get("observedGeneration").and_then(Value::as_i64) == generation
                })
            })
    });
    (!accepted).then(|| {
        format!(
            "waiting for {} {} to be Accepted at generation {} for Service {service} (by {CONTROLLER_NAME} or the data plane that programs it)",
            route.types.as_ref().map_or("route", |t| t.kind.as_str()),
            route.name_any(),
            generation.unwrap_or_default()
        )
    })
}

/// Writes `canary_weight` (stable gets the rest) on the route, creating it when absent.
pub async fn write(
    client: &Client,
    canary: &Canary,
    r: &RouteRef,
    route: Option<&DynamicObject>,
    status: &CanaryStatus,
    canary_weight: u32,
) -> Result<(), kube::Error> {
    let spec = &canary.spec;
    let api = api(client, canary, r);
    let resource = api_resource(kind_of(r));
    let name = r.name_or(&spec.service);
    let want = desired_backends(spec, status, canary_weight);
    let stable = super::machine::stable_of(spec, status);
    let canary_name = status.canary.clone().unwrap_or(spec.canary.clone());
    let weight = |service: &str| wanted(&want, service);
    let Some(route) = route else {
        let port = service_port(client, canary).await?;
        let backend = |service: &str| json!({"name": service, "port": port, "weight": weight(service)});
        let created = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": name, "namespace": canary.namespace()},
            "spec": {
                "parentRefs": [{"group": "", "kind": "Service", "name": spec.service, "port": port}],
                "rules": [{"backendRefs": [backend(&stable), backend(&canary_name)]}],
            },
        });
        let obj: DynamicObject = serde_json::from_value(created).map_err(kube::Error::SerdeError)?;
        let params = PostParams { field_manager: Some(SPLIT_MANAGER.into()), ..Default::default() };
        return api.create(&params, &obj).await.map(drop);
    };
    let mut rules = rules(route);
    let (names, current) = owned(canary, status);
    let stables = [spec.stable.clone(), stable.clone()];
    for i in moved_rules(&rules, canary, status) {
        let Some(refs) = rules[i].get_mut("backendRefs").and_then(Value::as_array_mut) else { continue };
        if !refs.iter().any(|b| refers_to(b, &current))
            && let Some(mut added) = refs.iter().find(|b| stables.iter().any(|s| refers_to(b, s))).cloned()
        {
            // The canary goes next to the stable version, on the same port.
            added["name"] = json!(current);
            refs.push(added);
        }
        for b in refs.iter_mut() {
            if let Some(name) = names.iter().find(|n| refers_to(b, n)) {
                b["weight"] = json!(wanted(&want, name));
            }
        }
    }
    let patch = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": name, "resourceVersion": route.resource_version()},
        "spec": {"rules": rules},
    });
    api.patch(name, &PatchParams::apply(SPLIT_MANAGER).force(), &Patch::Apply(&patch)).await.map(drop)
}

/// The apex Service's first port, for a route shifter creates.
async fn service_port(client: &Client, canary: &Canary) -> Result<i32, kube::Error> {
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), &canary.namespace().unwrap_or_default());
    let svc = services.get(&canary.spec.service).await?;
    Ok(svc.spec.and_then(|s| s.ports).and_then(|p| p.first().map(|p| p.port)).unwrap_or(80))
}
