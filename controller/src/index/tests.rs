//! The index, tested by applying objects and reading the snapshot channel.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;
use shifter_crds::TrafficSplit;
use shifter_crds::route_group::HTTPRouteGroup;
use shifter_proto::v1 as pb;

use super::{DestinationIndex, Index};
use crate::Authority;

pub(super) const NS: &str = "shop";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), namespace: Some(NS.into()), ..Default::default() }
}

/// A Service with named ports `(name, port, targetPort)`.
pub(super) fn mk_service(name: &str, ports: &[(&str, i32, i32)]) -> Service {
    Service {
        metadata: meta(name),
        spec: Some(ServiceSpec {
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, t)| ServicePort {
                        name: Some(n.to_string()),
                        port: *p,
                        target_port: Some(IntOrString::Int(*t)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An EndpointSlice for `service` exposing port `(name, number)` on `(address, ready)` endpoints.
pub(super) fn mk_slice(name: &str, service: &str, port: (&str, i32), endpoints: &[(&str, bool)]) -> EndpointSlice {
    let mut m = meta(name);
    m.labels = Some([("kubernetes.io/service-name".to_string(), service.to_string())].into());
    EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort { name: Some(port.0.into()), port: Some(port.1), ..Default::default() }]),
        endpoints: endpoints
            .iter()
            .map(|(a, ready)| Endpoint {
                addresses: vec![a.to_string()],
                conditions: Some(EndpointConditions { ready: Some(*ready), ..Default::default() }),
                ..Default::default()
            })
            .collect(),
    }
}

pub(super) fn mk_split(name: &str, apex: &str, backends: &[(&str, i64)]) -> TrafficSplit {
    mk_split_at(name, apex, backends, "2026-01-01T00:00:00Z")
}

fn mk_split_at(name: &str, apex: &str, backends: &[(&str, i64)], created: &str) -> TrafficSplit {
    let mut ts: TrafficSplit = serde_json::from_value(json!({
        "apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"service": apex, "backends": backends.iter().map(|(s, w)| json!({"service": s, "weight": w})).collect::<Vec<_>>()}
    }))
    .unwrap();
    ts.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
    ts
}

fn mk_route_group(name: &str, header: (&str, &str)) -> HTTPRouteGroup {
    serde_json::from_value(json!({
        "apiVersion": "specs.smi-spec.io/v1alpha4", "kind": "HTTPRouteGroup",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"matches": [{"name": "beta", "headers": {header.0: header.1}}]}
    }))
    .unwrap()
}

fn authority(s: &str) -> Authority {
    s.parse().unwrap()
}

/// `(backend, weight, [endpoint address:port])` per route.
fn routes(snap: &pb::Snapshot) -> Vec<Vec<(String, u64, Vec<String>)>> {
    snap.routes
        .iter()
        .map(|r| {
            r.backends
                .iter()
                .map(|b| {
                    (
                        b.service.clone(),
                        b.weight,
                        b.endpoints.iter().map(|e| format!("{}:{}", e.address, e.port)).collect(),
                    )
                })
                .collect()
        })
        .collect()
}

/// web (80→8080) with one endpoint, web-v1 and web-v2 with one endpoint each.
fn shop() -> Arc<Index> {
    let index = Index::new();
    index.apply_service(&mk_service("web", &[("http", 80, 8080)]));
    index.apply_endpoint_slice(&mk_slice("web-abc", "web", ("http", 8080), &[("10.0.0.1", true)]));
    for (svc, ip) in [("web-v1", "10.0.1.1"), ("web-v2", "10.0.2.1")] {
        index.apply_service(&mk_service(svc, &[("http", 80, 8080)]));
        index.apply_endpoint_slice(&mk_slice(&format!("{svc}-abc"), svc, ("http", 8080), &[(ip, true)]));
    }
    index
}

#[test]
fn a_service_without_a_split_resolves_to_its_own_endpoints() {
    let index = shop();
    let snap = index.current(&authority("web.shop.svc.cluster.local:80"));
    assert!(snap.exists);
    assert_eq!(routes(&snap), vec![vec![("web".into(), 1, vec!["10.0.0.1:8080".into()])]]);
    assert_eq!(snap.split, "");
}

#[test]
fn every_authority_form_gets_the_same_routing() {
    let index = shop();
    let a = index.current(&authority("web.shop.svc.cluster.local:80"));
    for form in ["web.shop.svc:80", "web.shop:80", "web.shop"] {
        let b = index.current(&authority(form));
        assert_eq!(routes(&b), routes(&a), "{form}");
        assert_eq!(b.authority, "web.shop.svc.cluster.local:80");
    }
}

#[test]
fn unknown_services_and_ports_do_not_exist() {
    let index = shop();
    assert!(!index.current(&authority("nope.shop:80")).exists);
    assert!(!index.current(&authority("web.shop:9999")).exists);
    assert!(index.current(&authority("web.shop:9999")).routes.is_empty());
}

#[test]
fn a_split_routes_by_weight_and_follows_changes() {
    let index = shop();
    let mut rx = index.watch(&authority("web.shop:80"));
    index.apply_split(&mk_split("web", "web", &[("web-v1", 90), ("web-v2", 10)]));
    assert!(rx.has_changed().unwrap());
    let snap = rx.borrow_and_update().snapshot.clone();
    assert_eq!(
        routes(&snap),
        vec![vec![
            ("web-v1".into(), 90, vec!["10.0.1.1:8080".into()]),
            ("web-v2".into(), 10, vec!["10.0.2.1:8080".into()])
        ]]
    );
    assert_eq!(snap.split, "shop/web");
    let v1 = snap.version;
    index.apply_split(&mk_split("web", "web", &[("web-v1", 50), ("web-v2", 50)]));
    let snap = rx.borrow_and_update().snapshot.clone();
    assert!(snap.version > v1, "versions increase");
    assert_eq!(routes(&snap)[0][1].1, 50);
    // Deleting the split returns traffic to the plain Service.
    index.delete_split(&("shop".into(), "web".into()));
    assert_eq!(routes(&rx.borrow_and_update().snapshot), vec![vec![("web".into(), 1, vec!["10.0.0.1:8080".into()])]]);
}

#[test]
fn unrelated_changes_send_nothing() {
    let index = shop();
    let mut rx = index.watch(&authority("web.shop:80"));
    rx.borrow_and_update();
    // Same object again, another namespace, and a Service the apex does not use.
    index.apply_service(&mk_service("web", &[("http", 80, 8080)]));
    let mut other = mk_service("web", &[("http", 80, 8080)]);
    other.metadata.namespace = Some("elsewhere".into());
    index.apply_service(&other);
    index.apply_service(&mk_service("db", &[("pg", 5432, 5432)]));
    assert!(!rx.has_changed().unwrap(), "no snapshot for changes that do not affect web.shop:80");
}

#[test]
fn a_backend_that_is_the_apex_uses_the_apex_endpoints() {
    let index = shop();
    index.apply_split(&mk_split("web", "web", &[("web", 900), ("web-v2", 100)]));
    let snap = index.current(&authority("web.shop:80"));
    assert_eq!(
        routes(&snap),
        vec![vec![
            ("web".into(), 900, vec!["10.0.0.1:8080".into()]),
            ("web-v2".into(), 100, vec!["10.0.2.1:8080".into()])
        ]]
    );
}

#[test]
fn a_missing_backend_gets_nothing_until_it_exists() {
    let index = Index::new();
    index.apply_service(&mk_service("web", &[("http", 80, 8080)]));
    index.apply_service(&mk_service("web-v1", &[("http", 80, 8080)]));
    index.apply_endpoint_slice(&mk_slice("web-v1-a", "web-v1", ("http", 8080), &[("10.0.1.1", true)]));
    index.apply_split(&mk_split("web", "web", &[("web-v1", 50), ("web-v2", 50)]));
    let mut rx = index.watch(&authority("web.shop:80"));
    assert_eq!(
        routes(&rx.borrow_and_update().snapshot),
        vec![vec![("web-v1".into(), 50, vec!["10.0.1.1:8080".into()])]]
    );
    let report = index.report(&("shop".into(), "web".into())).unwrap();
    assert_eq!(report.resolved_refs.as_ref().unwrap_err().0, "BackendNotFound");
    let shares: Vec<_> = report.backends.iter().map(|b| (b.service.as_str(), b.percent, b.reason)).collect();
    assert_eq!(shares, vec![("web-v1", 100.0, None), ("web-v2", 0.0, Some("BackendNotFound"))]);

    index.apply_service(&mk_service("web-v2", &[("http", 80, 8080)]));
    index.apply_endpoint_slice(&mk_slice("web-v2-a", "web-v2", ("http", 9090), &[("10.0.2.1", true)]));
    let slice_named_other_port = routes(&rx.borrow_and_update().snapshot);
    assert_eq!(slice_named_other_port[0][1].0, "web-v2");
    assert_eq!(slice_named_other_port[0][1].2, vec!["10.0.2.1:9090".to_string()], "targetPort comes from the slice");
    let report = index.report(&("shop".into(), "web".into())).unwrap();
    assert_eq!(report.resolved_refs, Ok(()));
    assert_eq!((report.backends[1].percent, report.backends[1].reason), (50.0, None));
}

#[test]
fn a_backend_without_the_apex_port_is_left_out_and_reported() {
    let index = shop();
    index.apply_service(&mk_service("web-v2", &[("http", 1024, 8080)]));
    index.apply_split(&mk_split("web", "web", &[("web-v1", 50), ("web-v2", 50)]));
    let snap = index.current(&authority("web.shop:80"));
    assert_eq!(routes(&snap), vec![vec![("web-v1".into(), 50, vec!["10.0.1.1:8080".into()])]]);
    let report = index.report(&("shop".into(), "web".into())).unwrap();
    let (reason, message) = report.resolved_refs.unwrap_err();
    assert_eq!(reason, "PortMismatch");
    assert!(message.contains("lacks port 80"), "{message}");
    assert_eq!(report.backends[1].reason, Some("PortMismatch"));
    assert_eq!(report.backends[0].percent, 100.0);
}

#[test]
fn unready_endpoints_are_not_sent() {
    let index = shop();
    index.apply_endpoint_slice(&mk_slice(
        "web-v1-abc",
        "web-v1",
        ("http", 8080),
        &[("10.0.1.1", false), ("10.0.1.2", true)],
    ));
    index.apply_split(&mk_split("web", "web", &[("web-v1", 1)]));
    assert_eq!(routes(&index.current(&authority("web.shop:80")))[0][0].2, vec!["10.0.1.2:8080".to_string()]);
}

#[test]
fn a_backend_with_no_endpoints_stays_in_the_snapshot_for_the_proxy_to_skip() {
    let index = shop();
    index.delete_endpoint_slice(&("shop".into(), "web-v2-abc".into()));
    index.apply_split(&mk_split("web", "web", &[("web-v1", 50), ("web-v2", 50)]));
    let r = routes(&index.current(&authority("web.shop:80")));
    assert_eq!(r[0][1], ("web-v2".into(), 50, vec![]));
}

#[test]
fn matches_split_matching_requests_and_send_the_rest_to_the_apex() {
    let index = shop();
    let mut ts = mk_split("web", "web", &[("web-v2", 100)]);
    ts.spec.matches = vec![shifter_crds::traffic_split::MatchRef {
        kind: "HTTPRouteGroup".into(),
        name: "beta".into(),
        api_group: None,
    }];
    index.apply_split(&ts);
    // The group does not exist yet: no request is matched by it, and the split says so.
    let snap = index.current(&authority("web.shop:80"));
    assert_eq!(routes(&snap), vec![vec![("web".into(), 1, vec!["10.0.0.1:8080".into()])]]);
    assert_eq!(
        index.report(&("shop".into(), "web".into())).unwrap().resolved_refs.unwrap_err().0,
        "RouteGroupNotFound"
    );

    index.apply_route_group(&mk_route_group("beta", ("x-beta", "on")));
    let snap = index.current(&authority("web.shop:80"));
    assert_eq!(snap.routes.len(), 2);
    assert_eq!(
        snap.routes[0].matches[0].headers,
        vec![pb::HeaderMatch { name: "x-beta".into(), value_regex: "on".into() }]
    );
    assert_eq!(routes(&snap)[0], vec![("web-v2".into(), 100, vec!["10.0.2.1:8080".into()])]);
    assert!(snap.routes[1].matches.is_empty(), "the last route is the apex default");
    assert_eq!(routes(&snap)[1], vec![("web".into(), 1, vec!["10.0.0.1:8080".into()])]);
}

#[test]
fn the_oldest_of_competing_splits_applies_and_the_other_is_told_why() {
    let index = shop();
    index.apply_split(&mk_split_at("newer", "web", &[("web-v2", 1)], "2026-03-01T00:00:00Z"));
    index.apply_split(&mk_split_at("older", "web", &[("web-v1", 1)], "2026-02-01T00:00:00Z"));
    assert_eq!(routes(&index.current(&authority("web.shop:80")))[0][0].0, "web-v1");
    let loser = index.report(&("shop".into(), "newer".into())).unwrap();
    let (reason, message) = loser.accepted.unwrap_err();
    assert_eq!(reason, "Conflict");
    assert!(message.contains("shop/older"), "{message}");
    assert!(!loser.active);
    assert!(index.report(&("shop".into(), "older".into())).unwrap().active);
}

#[test]
fn an_invalid_split_is_ignored_for_routing_and_reported() {
    let index = shop();
    index.apply_split(&mk_split("web", "web", &[("web-v1", 0), ("web-v2", 0)]));
    assert_eq!(routes(&index.current(&authority("web.shop:80")))[0][0].0, "web", "the apex keeps serving");
    let report = index.report(&("shop".into(), "web".into())).unwrap();
    let (reason, message) = report.accepted.unwrap_err();
    assert_eq!(reason, "AllWeightsZero");
    assert!(message.contains("spec.backends"), "{message}");
}

#[test]
fn a_split_whose_weighted_backends_all_lack_services_falls_back_to_the_apex() {
    let index = shop();
    index.apply_split(&mk_split("web", "web", &[("web-v9", 100), ("web-v1", 0)]));
    let snap = index.current(&authority("web.shop:80"));
    assert_eq!(routes(&snap), vec![vec![("web".into(), 1, vec!["10.0.0.1:8080".into()])]]);
}

#[test]
fn a_relist_forgets_objects_that_vanished() {
    let index = shop();
    index.apply_split(&mk_split("web", "web", &[("web-v2", 1)]));
    index.retain(super::Kind::TrafficSplit, &[]);
    assert_eq!(routes(&index.current(&authority("web.shop:80")))[0][0].0, "web");
    assert!(index.split_keys().is_empty());
}

#[test]
fn authorities_asked_about_once_do_not_pile_up() {
    let index = shop();
    for i in 0..20_000 {
        // A proxy asks about a made-up name, gets "does not exist", and hangs up.
        let rx = index.watch(&authority(&format!("junk-{i}.shop.svc.cluster.local:80")));
        assert!(!rx.borrow().snapshot.exists);
    }
    let kept = index.watch(&authority("web.shop.svc.cluster.local:80"));
    assert!(index.channels() <= 2 * super::SWEEP_AT, "{} channels kept", index.channels());
    assert!(kept.borrow().snapshot.exists, "a real authority is still served");
}

/// `svc` with `spec.clusterIP(s)` set.
fn with_cluster_ips(mut svc: Service, ips: &[&str]) -> Service {
    let spec = svc.spec.get_or_insert_with(Default::default);
    spec.cluster_ip = ips.first().map(|ip| ip.to_string());
    spec.cluster_ips = Some(ips.iter().map(|ip| ip.to_string()).collect());
    svc
}

#[test]
fn a_cluster_ip_and_port_resolve_to_the_service_authority() {
    let idx = Index::new();
    idx.apply_service(&with_cluster_ips(mk_service("web", &[("http", 80, 8080)]), &["10.96.0.10", "fd00::10"]));
    idx.apply_service(&with_cluster_ips(mk_service("db", &[("pg", 5432, 5432)]), &["10.96.0.11"]));
    let at = |addr: &str| idx.authority_at(addr.parse().unwrap()).map(|a| a.to_string());
    assert_eq!(at("10.96.0.10:80").as_deref(), Some("web.shop.svc.cluster.local:80"));
    assert_eq!(at("[fd00::10]:80").as_deref(), Some("web.shop.svc.cluster.local:80"));
    assert_eq!(at("10.96.0.11:5432").as_deref(), Some("db.shop.svc.cluster.local:5432"));
    // A port the Service does not have, and an address no Service has: passed through.
    assert_eq!(at("10.96.0.10:81"), None);
    assert_eq!(at("10.96.0.99:80"), None);
    // A Service's address moves with it, and goes when it goes.
    idx.apply_service(&with_cluster_ips(mk_service("web", &[("http", 80, 8080)]), &["10.96.0.20"]));
    assert_eq!(at("10.96.0.10:80"), None);
    assert_eq!(at("10.96.0.20:80").as_deref(), Some("web.shop.svc.cluster.local:80"));
    idx.delete_service(&(NS.to_string(), "web".to_string()));
    assert_eq!(at("10.96.0.20:80"), None);
    idx.retain(super::Kind::Service, &[]);
    assert_eq!(at("10.96.0.11:5432"), None);
}

#[test]
fn a_headless_service_has_no_address() {
    let idx = Index::new();
    idx.apply_service(&with_cluster_ips(mk_service("web", &[("http", 80, 8080)]), &["None"]));
    assert!(idx.lock().state.addresses.is_empty());
}
