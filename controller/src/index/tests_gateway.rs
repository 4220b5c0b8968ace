//! Gateway API routes in the index: translation, precedence, unresolvable backends, status.

use kube::api::DynamicObject;
use serde_json::{Value, json};
use shifter_proto::v1 as pb;

use super::gateway::{CONTROLLER_NAME, RouteKind, desired_parents};
use super::tests::{NS, mk_service, mk_slice, mk_split};
use super::{DestinationIndex, Index};
use crate::Authority;

fn mk_route(kind: RouteKind, name: &str, created: &str, spec: Value) -> DynamicObject {
    let mut obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": kind.kind(),
        "metadata": {"name": name, "namespace": NS, "generation": 4, "creationTimestamp": created},
        "spec": spec,
    }))
    .unwrap();
    obj.metadata.generation = Some(4);
    obj
}

fn apply(index: &Index, kind: RouteKind, obj: &DynamicObject) {
    let info = super::translate::route(kind, obj);
    index.apply_gateway_route((NS.into(), kind, info.name.clone()), info);
}

fn web() -> Authority {
    "web.shop.svc.cluster.local:80".parse().unwrap()
}

/// A shop with `web` (the parent), `web-v1` and `web-v2`, each with one ready endpoint.
fn shop() -> std::sync::Arc<Index> {
    let index = Index::new();
    for (svc, addr) in [("web", "10.0.0.1"), ("web-v1", "10.0.1.1"), ("web-v2", "10.0.2.1")] {
        index.apply_service(&mk_service(svc, &[("http", 80, 8080)]));
        index.apply_endpoint_slice(&mk_slice(&format!("{svc}-x"), svc, ("http", 8080), &[(addr, true)]));
    }
    index
}

fn parent() -> Value {
    json!([{"group": "", "kind": "Service", "name": "web", "port": 80}])
}

fn names(s: &pb::Snapshot) -> Vec<String> {
    s.routes.iter().map(|r| r.name.clone()).collect()
}

#[test]
fn weighted_backends_route_with_the_gateway_rules_and_supersede_a_split() {
    let index = shop();
    index.apply_split(&mk_split("web", "web", &[("web-v1", 1)]));
    let rx = index.watch(&web());
    apply(
        &index,
        RouteKind::Http,
        &mk_route(
            RouteKind::Http,
            "web",
            "2026-01-01T00:00:00Z",
            json!({
                "parentRefs": parent(),
                "rules": [{"backendRefs": [
                    {"name": "web-v1", "port": 80, "weight": 70},
                    {"name": "web-v2", "port": 80, "weight": 30},
                ]}],
            }),
        ),
    );
    let snap = rx.borrow().snapshot.clone();
    assert_eq!(names(&snap), ["HTTPRoute/shop/web/0"], "no catch-all: unmatched requests get 404");
    let r = &snap.routes[0];
    assert!(r.empty_backend_fails);
    let weights: Vec<(String, u64, usize)> =
        r.backends.iter().map(|b| (b.service.clone(), b.weight, b.endpoints.len())).collect();
    assert_eq!(weights, [("web-v1".into(), 70, 1), ("web-v2".into(), 30, 1)]);
    let report = index.report(&(NS.into(), "web".into())).unwrap();
    let (reason, message) = report.accepted.unwrap_err();
    assert_eq!(reason, "Superseded");
    assert!(message.contains("HTTPRoute shop/web"), "{message}");
    assert!(!report.active);
}

#[test]
fn matches_are_ordered_by_the_spec_precedence_across_rules_and_routes() {
    let index = shop();
    let backend = json!([{"name": "web-v1", "port": 80}]);
    apply(
        &index,
        RouteKind::Http,
        &mk_route(
            RouteKind::Http,
            "a",
            "2026-01-01T00:00:00Z",
            json!({
                "parentRefs": parent(),
                "rules": [
                    {"backendRefs": backend},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": backend},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "POST"}], "backendRefs": backend},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "headers": [{"name": "x-v", "value": "2"}]}], "backendRefs": backend},
                ],
            }),
        ),
    );
    apply(
        &index,
        RouteKind::Http,
        &mk_route(
            RouteKind::Http,
            "b",
            "2026-01-02T00:00:00Z",
            json!({
                "parentRefs": parent(),
                "rules": [
                    {"matches": [{"path": {"type": "Exact", "value": "/api"}}], "backendRefs": backend},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/api/v2/"}}], "backendRefs": backend},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": backend},
                ],
            }),
        ),
    );
    let snap = index.current(&web());
    assert_eq!(
        names(&snap),
        [
            "HTTPRoute/shop/b/0", // Exact
            "HTTPRoute/shop/b/1", // the longest prefix
            "HTTPRoute/shop/a/2", // a method
            "HTTPRoute/shop/a/3", // a header
            "HTTPRoute/shop/a/1", // same prefix, older route first
            "HTTPRoute/shop/b/2",
            "HTTPRoute/shop/a/0", // everything else
        ]
    );
    assert_eq!(snap.routes[0].matches[0].path_regex, "/api$");
    assert_eq!(snap.routes[1].matches[0].path_regex, "/api/v2(?:/.*)?$");
    assert_eq!(snap.routes[1].matches[0].path_prefix, "/api/v2");
}

#[test]
fn an_unresolvable_backend_keeps_its_share_as_500_and_status_names_it() {
    let index = shop();
    let route = mk_route(
        RouteKind::Http,
        "web",
        "2026-01-01T00:00:00Z",
        json!({
            "parentRefs": parent(),
            "rules": [{"backendRefs": [
                {"name": "web-v1", "port": 80},
                {"name": "web-v3", "port": 80},
                {"kind": "Bucket", "group": "storage.example.com", "name": "b"},
            ]}],
        }),
    );
    apply(&index, RouteKind::Http, &route);
    let snap = index.current(&web());
    let fails: Vec<(String, u32)> =
        snap.routes[0].backends.iter().map(|b| (b.service.clone(), b.fail_status)).collect();
    assert_eq!(fails, [("web-v1".into(), 0), ("web-v3".into(), 500), ("b".into(), 500)]);
    let (info, reports) = index.gateway_route(&(NS.into(), RouteKind::Http, "web".into())).unwrap();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].accepted.is_ok());
    let (reason, message) = reports[0].resolved_refs.clone().unwrap_err();
    assert_eq!(reason, "BackendNotFound");
    assert!(message.contains("shop/web-v3 not found") && message.contains("is not a Service"), "{message}");
    let parents = desired_parents(&info, &reports);
    assert_eq!(parents[0]["controllerName"], CONTROLLER_NAME);
    assert_eq!(parents[0]["parentRef"], parent()[0]);
    let resolved = parents[0]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "ResolvedRefs").unwrap();
    assert_eq!((resolved["status"].as_str(), resolved["observedGeneration"].as_i64()), (Some("False"), Some(4)));
}

#[test]
fn status_keeps_other_controllers_entries_and_is_stable() {
    let index = shop();
    let mut route = mk_route(
        RouteKind::Http,
        "web",
        "2026-01-01T00:00:00Z",
        json!({
            "parentRefs": [parent()[0].clone(), {"name": "edge", "namespace": "infra"}],
            "rules": [{"backendRefs": [{"name": "web-v1", "port": 80}]}],
        }),
    );
    let theirs = json!({"parentRef": {"name": "edge", "namespace": "infra"}, "controllerName": "example.com/gateway", "conditions": []});
    route.data["status"] = json!({"parents": [theirs]});
    apply(&index, RouteKind::Http, &route);
    let (info, reports) = index.gateway_route(&(NS.into(), RouteKind::Http, "web".into())).unwrap();
    assert_eq!(reports.len(), 1, "only the Service parent is shifter's");
    let parents = desired_parents(&info, &reports);
    assert_eq!(parents.len(), 2);
    assert_eq!(parents[0], theirs, "the other controller's entry is carried over untouched");
    // Written and read back, nothing changes.
    route.data["status"] = json!({"parents": parents});
    apply(&index, RouteKind::Http, &route);
    let (info, reports) = index.gateway_route(&(NS.into(), RouteKind::Http, "web".into())).unwrap();
    assert_eq!(desired_parents(&info, &reports), info.status_parents);
}

#[test]
fn an_unsupported_field_is_named_and_the_route_routes_nothing() {
    let index = shop();
    let route = mk_route(
        RouteKind::Http,
        "web",
        "2026-01-01T00:00:00Z",
        json!({
            "parentRefs": parent(),
            "rules": [{
                "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "web-v2", "port": 80}}}],
                "sessionPersistence": {"sessionName": "s"},
                "backendRefs": [{"name": "web-v1", "port": 80}],
            }],
        }),
    );
    apply(&index, RouteKind::Http, &route);
    assert_eq!(names(&index.current(&web())), ["default"], "the Service keeps its own endpoints");
    let (_, reports) = index.gateway_route(&(NS.into(), RouteKind::Http, "web".into())).unwrap();
    let (reason, message) = reports[0].accepted.clone().unwrap_err();
    assert_eq!(reason, "UnsupportedValue");
    assert!(
        message.contains("spec.rules[0].filters[0].type: filter \"RequestMirror\" is not implemented"),
        "{message}"
    );
    assert!(message.contains("spec.rules[0].sessionPersistence"), "{message}");
}

#[test]
fn a_grpc_route_matches_service_and_method_as_a_path() {
    let index = shop();
    apply(
        &index,
        RouteKind::Grpc,
        &mk_route(
            RouteKind::Grpc,
            "web",
            "2026-01-01T00:00:00Z",
            json!({
                "parentRefs": parent(),
                "rules": [
                    {"matches": [{"method": {"service": "shop.Cart"}}], "backendRefs": [{"name": "web-v1", "port": 80}]},
                    {"matches": [{"method": {"service": "shop.Cart", "method": "Add"}}], "backendRefs": [{"name": "web-v2", "port": 80}]},
                ],
            }),
        ),
    );
    let snap = index.current(&web());
    assert_eq!(names(&snap), ["GRPCRoute/shop/web/1", "GRPCRoute/shop/web/0"], "a method beats the service alone");
    assert_eq!(snap.routes[0].matches[0].path_regex, r"/shop\.Cart/Add$");
    assert_eq!(snap.routes[1].matches[0].path_regex, r"/shop\.Cart/[^/]+$");
}

#[test]
fn a_grpc_rule_without_matches_takes_only_what_no_method_match_takes() {
    let index = shop();
    apply(
        &index,
        RouteKind::Grpc,
        &mk_route(
            RouteKind::Grpc,
            "web",
            "2026-01-01T00:00:00Z",
            json!({
                "parentRefs": parent(),
                "rules": [
                    {"backendRefs": [{"name": "web-v1", "port": 80}]},
                    {"matches": [{"method": {"service": "shop.Cart"}}], "backendRefs": [{"name": "web-v2", "port": 80}]},
                ],
            }),
        ),
    );
    assert_eq!(names(&index.current(&web())), ["GRPCRoute/shop/web/1", "GRPCRoute/shop/web/0"]);
}

#[test]
fn a_consumer_route_applies_to_clients_in_its_namespace_only() {
    let index = shop();
    let mut route = mk_route(
        RouteKind::Http,
        "web-timeouts",
        "2026-01-01T00:00:00Z",
        json!({
            "parentRefs": [{"group": "", "kind": "Service", "name": "web", "namespace": NS, "port": 80}],
            "rules": [{
                "timeouts": {"request": "2s"},
                "backendRefs": [{"name": "web", "namespace": NS, "port": 80}],
            }],
        }),
    );
    route.metadata.namespace = Some("checkout".into());
    let info = super::translate::route(RouteKind::Http, &route);
    assert_eq!(info.unsupported, Vec::<String>::new());
    index.apply_gateway_route(("checkout".into(), RouteKind::Http, "web-timeouts".into()), info);

    let for_checkout = index.watch_from(&web(), "checkout").borrow().snapshot.clone();
    assert_eq!(names(&for_checkout), ["HTTPRoute/checkout/web-timeouts/0"]);
    assert_eq!(for_checkout.routes[0].request_timeout_ms, 2000);
    let b = &for_checkout.routes[0].backends[0];
    assert_eq!((b.service.as_str(), b.namespace.as_str(), b.fail_status, b.endpoints.len()), ("web", NS, 0, 1));
    assert_eq!(names(&index.current(&web())), ["default"], "clients elsewhere keep the Service as it is");
    assert_eq!(names(&index.watch_from(&web(), "billing").borrow().snapshot), ["default"]);

    let (_, reports) = index.gateway_route(&("checkout".into(), RouteKind::Http, "web-timeouts".into())).unwrap();
    assert_eq!((reports[0].accepted.is_ok(), reports[0].resolved_refs.is_ok()), (true, true), "{reports:?}");
}
