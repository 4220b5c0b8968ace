//! Gateway API routes as users write them for a mesh (GAMMA): what they read as, which upstream
//! defaults the accessors apply, that nothing shifter does not model is lost, and what the
//! generated CRDs hold.

use serde_json::{Value, json};
use shifter_crds::gateway::*;
use shifter_crds::{gateway_crds, gateway_crds_yaml};

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("valid YAML")
}

const CANARY_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-canary
  namespace: shop
spec:
  parentRefs:
  - name: web
    kind: Service
    group: ""
    port: 80
  hostnames: ["web.shop.svc.cluster.local"]
  rules:
  - name: beta-users
    matches:
    - path: {type: PathPrefix, value: /api}
      headers:
      - name: x-beta
        value: "1"
      - {type: RegularExpression, name: user-agent, value: ".*Android.*"}
      queryParams:
      - {name: debug, value: "true"}
      method: GET
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-route, value: beta}]
        add: [{name: x-trace, value: "on"}]
        remove: [x-internal]
    - type: URLRewrite
      urlRewrite:
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2/api}
    backendRefs:
    - {name: web-v1, port: 8080, weight: 90}
    - name: web-v2
      port: 8080
      weight: 10
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier:
          set: [{name: x-version, value: v2}]
    timeouts: {request: 10s, backendRequest: 2s}
  - matches:
    - path: {type: Exact, value: /old}
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: new.example.com, port: 443, statusCode: 301,
                        path: {type: ReplaceFullPath, replaceFullPath: /new}}
  - backendRefs:
    - name: web-v1
      port: 8080
"#;

#[test]
fn a_gamma_http_route_reads_as_written() {
    let route: HTTPRoute = serde_json::from_value(yaml(CANARY_ROUTE)).unwrap();
    assert_eq!(route.metadata.namespace.as_deref(), Some("shop"));
    let spec = &route.spec;

    let parent = &spec.parent_refs()[0];
    assert!(parent.is_service() && !parent.is_gateway());
    assert_eq!((parent.name.as_str(), parent.port, parent.namespace_or("shop")), ("web", Some(80), "shop"));
    assert_eq!(spec.hostnames(), ["web.shop.svc.cluster.local"]);

    let beta = &spec.rules()[0];
    assert_eq!(beta.name.as_deref(), Some("beta-users"));
    let m = &beta.matches()[0];
    assert_eq!(m.effective_path(), (PathMatchType::PathPrefix, "/api"));
    assert_eq!(m.method, Some(HTTPMethod::Get));
    let headers: Vec<_> = m.headers().iter().map(|h| (h.match_type(), h.name.as_str(), h.value.as_str())).collect();
    assert_eq!(
        headers,
        [(HeaderMatchType::Exact, "x-beta", "1"), (HeaderMatchType::RegularExpression, "user-agent", ".*Android.*")]
    );
    assert_eq!(
        (m.query_params()[0].name.as_str(), m.query_params()[0].match_type()),
        ("debug", HeaderMatchType::Exact)
    );

    let [modifier, rewrite] = beta.filters() else { panic!("two filters: {:?}", beta.filters()) };
    assert_eq!(modifier.type_, HTTPRouteFilterType::RequestHeaderModifier);
    let headers = modifier.request_header_modifier.as_ref().unwrap();
    assert_eq!(headers.set.as_ref().unwrap()[0].value, "beta");
    assert_eq!(headers.remove.as_deref(), Some(&["x-internal".to_string()][..]));
    assert_eq!(rewrite.type_, HTTPRouteFilterType::URLRewrite);
    let path = rewrite.url_rewrite.as_ref().unwrap().path.as_ref().unwrap();
    assert_eq!(
        (path.type_.clone(), path.replace_prefix_match.as_deref()),
        (HTTPPathModifierType::ReplacePrefixMatch, Some("/v2/api"))
    );

    let weights: Vec<_> = beta.backend_refs().iter().map(|b| (b.name.as_str(), b.port, b.weight())).collect();
    assert_eq!(weights, [("web-v1", Some(8080), 90), ("web-v2", Some(8080), 10)]);
    assert!(beta.backend_refs().iter().all(|b| b.is_service() && b.namespace_or("shop") == "shop"));
    assert_eq!(beta.backend_refs()[1].filters()[0].type_, HTTPRouteFilterType::ResponseHeaderModifier);

    let timeouts = beta.timeouts.as_ref().unwrap();
    assert_eq!(timeouts.request(), Some(Ok(std::time::Duration::from_secs(10))));
    assert_eq!(timeouts.backend_request(), Some(Ok(std::time::Duration::from_secs(2))));

    let redirect = spec.rules()[1].filters()[0].request_redirect.as_ref().unwrap();
    assert_eq!(redirect.scheme, Some(Scheme::Https));
    assert_eq!(
        (redirect.hostname.as_deref(), redirect.port, redirect.status_code()),
        (Some("new.example.com"), Some(443), 301)
    );
    assert_eq!(spec.rules()[1].matches()[0].effective_path(), (PathMatchType::Exact, "/old"));
}

#[test]
fn unset_fields_read_with_upstream_defaults() {
    let route: HTTPRoute = serde_json::from_value(yaml(CANARY_ROUTE)).unwrap();
    let catch_all = &route.spec.rules()[2];
    assert!(catch_all.matches().is_empty());
    let matches = catch_all.effective_matches();
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].effective_path(), (PathMatchType::PathPrefix, "/"));
    assert_eq!(catch_all.backend_refs()[0].weight(), 1, "an unset weight is 1");
    assert_eq!((catch_all.backend_refs()[0].group(), catch_all.backend_refs()[0].kind()), ("", "Service"));

    let gateway: ParentReference = serde_json::from_value(json!({"name": "edge"})).unwrap();
    assert_eq!((gateway.group(), gateway.kind()), ("gateway.networking.k8s.io", "Gateway"));
    assert!(gateway.is_gateway() && !gateway.is_service());
    let core: ParentReference =
        serde_json::from_value(json!({"name": "web", "kind": "Service", "group": "core"})).unwrap();
    assert!(core.is_service(), "\"core\" names the core group too");
    let no_group: ParentReference = serde_json::from_value(json!({"name": "web", "kind": "Service"})).unwrap();
    assert!(!no_group.is_service(), "without group \"\" a Service parent is in the Gateway API group");

    let path: HTTPPathMatch = serde_json::from_value(json!({"type": "Exact"})).unwrap();
    assert_eq!((path.match_type(), path.value()), (PathMatchType::Exact, "/"));
    let header: HTTPHeaderMatch = serde_json::from_value(json!({"name": "x", "value": "1"})).unwrap();
    assert_eq!(header.match_type(), HeaderMatchType::Exact);
    let redirect: HTTPRequestRedirectFilter = serde_json::from_value(json!({})).unwrap();
    assert_eq!(redirect.status_code(), 302);
    assert_eq!(HTTPRouteSpec::default().rules().len(), 0);
}

#[test]
fn status_entries_pair_with_the_parent_refs_they_report_on() {
    let written = ParentReference::service("web");
    let status: RouteStatus = serde_json::from_value(json!({"parents": [{
        "parentRef": {"group": "core", "kind": "Service", "name": "web", "namespace": "shop"},
        "controllerName": "shifter.dev/controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    }]}))
    .unwrap();
    let entry = status.parent("shifter.dev/controller", &written, "shop").expect("paired despite defaults");
    assert_eq!(entry.conditions[0].type_, "Accepted");
    assert!(status.parent("other.example/controller", &written, "shop").is_none());
    assert!(status.parent("shifter.dev/controller", &written, "elsewhere").is_none());
}

const GRPC_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: orders, namespace: shop}
spec:
  parentRefs:
  - {group: "", kind: Service, name: orders}
  rules:
  - matches:
    - method: {service: shop.v1.Orders, method: Create}
      headers: [{name: x-tenant, value: acme}]
    - method: {type: RegularExpression, service: "shop\\.v1\\..*"}
    filters:
    - type: RequestMirror
      requestMirror:
        backendRef: {name: orders-shadow, port: 9090}
        fraction: {numerator: 5}
    backendRefs:
    - {name: orders-v1, port: 9090, weight: 95}
    - {name: orders-v2, port: 9090, weight: 5}
"#;

#[test]
fn a_gamma_grpc_route_reads_as_written() {
    let route: GRPCRoute = serde_json::from_value(yaml(GRPC_ROUTE)).unwrap();
    assert!(route.spec.parent_refs()[0].is_service());
    let rule = &route.spec.rules()[0];
    let [exact, pattern] = rule.matches() else { panic!("two matches") };
    let method = exact.method.as_ref().unwrap();
    assert_eq!(
        (method.match_type(), method.service.as_deref(), method.method.as_deref()),
        (GRPCMethodMatchType::Exact, Some("shop.v1.Orders"), Some("Create"))
    );
    assert_eq!(exact.headers()[0].name, "x-tenant");
    assert_eq!(pattern.method.as_ref().unwrap().match_type(), GRPCMethodMatchType::RegularExpression);
    let mirror = rule.filters()[0].request_mirror.as_ref().unwrap();
    assert_eq!(rule.filters()[0].type_, GRPCRouteFilterType::RequestMirror);
    assert!(mirror.backend_ref.is_service());
    assert_eq!(mirror.fraction.as_ref().map(|f| (f.numerator, f.denominator)), Some((5, None)));
    let weights: Vec<_> = rule.backend_refs().iter().map(|b| (b.name.as_str(), b.weight())).collect();
    assert_eq!(weights, [("orders-v1", 95), ("orders-v2", 5)]);
}

#[test]
fn values_upstream_may_add_parse_and_say_what_they_were() {
    let route: HTTPRoute = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "x"},
        "spec": {"rules": [{
            "matches": [{"path": {"type": "Glob", "value": "/a/*"}, "method": "QUERY",
                         "headers": [{"type": "Prefix", "name": "x", "value": "y"}]}],
            "filters": [{"type": "ExternalAuth", "externalAuth": {"protocol": "HTTP"}}]
        }]}
    }))
    .unwrap();
    let rule = &route.spec.rules()[0];
    let m = &rule.matches()[0];
    assert_eq!(m.effective_path().0, PathMatchType::Other("Glob".into()));
    assert_eq!(m.method.as_ref().map(HTTPMethod::as_str), Some("QUERY"));
    assert!(!m.headers()[0].match_type().is_known());
    let filter = &rule.filters()[0];
    assert_eq!(filter.type_.to_string(), "ExternalAuth");
    assert_eq!(filter.extra["externalAuth"], json!({"protocol": "HTTP"}));
}

/// An HTTPRoute from the Experimental channel of a later release, with fields shifter does not
/// model at every level it has a type for.
fn route_with_unknown_fields() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "web", "futureParentField": {"a": 1}}],
            "useDefaultGateways": "All",
            "rules": [{
                "matches": [{
                    "path": {"type": "PathPrefix", "value": "/", "caseInsensitive": true},
                    "headers": [{"name": "x", "value": "y", "invert": true}],
                    "queryParams": [{"name": "q", "value": "1", "note": "kept"}],
                    "futureMatch": [1, 2, 3]
                }],
                "filters": [{
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "a", "value": "b", "sensitive": false}], "mode": "x"},
                    "externalAuth": null
                }],
                "backendRefs": [{
                    "name": "web-v1", "port": 80, "weight": 0, "appProtocol": "h2c",
                    "filters": [{"type": "RequestMirror", "requestMirror": {
                        "backendRef": {"name": "shadow", "port": 80, "extra": "x"},
                        "fraction": {"numerator": 1, "denominator": 10, "mode": "random"}}}]
                }],
                "timeouts": {"request": "5s", "idle": "1m"},
                "retry": {"codes": [503], "attempts": 2, "backoff": "100ms"},
                "sessionPersistence": {"sessionName": "s", "type": "Cookie"}
            }]
        },
        "status": {"parents": [{
            "parentRef": {"group": "", "kind": "Service", "name": "web"},
            "controllerName": "shifter.dev/controller",
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok",
                            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3}],
            "futureStatus": "kept"
        }], "futureTop": 1}
    })
}

#[test]
fn fields_shifter_does_not_model_round_trip_byte_for_byte() {
    let original = route_with_unknown_fields();
    let route: HTTPRoute = serde_json::from_value(original.clone()).unwrap();
    assert_eq!(route.spec.extra["useDefaultGateways"], "All");
    assert_eq!(route.spec.rules()[0].extra["retry"]["attempts"], 2);
    let back = serde_json::to_value(&route).unwrap();
    assert_eq!(back, original);
    assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&original).unwrap());

    let grpc = json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute", "metadata": {"name": "g"},
        "spec": {"rules": [{"matches": [{"method": {"service": "s", "future": 1}, "extraMatch": true}],
                            "sessionPersistence": {"type": "Header"},
                            "backendRefs": [{"name": "b", "port": 1, "zone": "a"}]}], "future": {}}
    });
    let route: GRPCRoute = serde_json::from_value(grpc.clone()).unwrap();
    assert_eq!(serde_json::to_value(&route).unwrap(), grpc);
}

fn version_schema(kind: &str) -> Value {
    let crd = gateway_crds().into_iter().find(|c| c.spec.names.kind == kind).expect("CRD for kind");
    let v = serde_json::to_value(&crd.spec.versions[0]).unwrap();
    v["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn the_crds_name_upstream_kinds_and_carry_its_annotations() {
    let crds = gateway_crds();
    let names: Vec<_> = crds.iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io"]);
    for crd in &crds {
        let annotations = crd.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations["gateway.networking.k8s.io/bundle-version"], BUNDLE_VERSION);
        assert_eq!(annotations["gateway.networking.k8s.io/channel"], "standard");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["gateway-api".to_string()][..]));
        let [version] = &crd.spec.versions[..] else { panic!("one version") };
        assert_eq!((version.name.as_str(), version.served, version.storage), ("v1", true, true));
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "status subresource");
        let columns: Vec<_> = version.additional_printer_columns.iter().flatten().map(|c| c.name.as_str()).collect();
        assert_eq!(columns, ["Hostnames", "Age"]);
    }
    let names: Vec<_> = shifter_crds::all_crds().iter().map(|c| c.spec.group.clone()).collect();
    assert!(!names.contains(&GROUP.to_string()), "not part of shifter's own CRDs");
    assert_eq!(gateway_crds_yaml().matches("kind: CustomResourceDefinition").count(), 2);
}

#[test]
fn the_http_route_schema_keeps_upstream_bounds_defaults_and_descriptions() {
    let s = version_schema("HTTPRoute");
    let spec = &s["properties"]["spec"];
    assert_eq!(spec["x-kubernetes-preserve-unknown-fields"], true);
    assert_eq!(spec["properties"]["parentRefs"]["maxItems"], 32);
    assert_eq!(spec["properties"]["hostnames"]["maxItems"], 16);
    assert_eq!(spec["properties"]["hostnames"]["items"]["maxLength"], 253);
    let rules = &spec["properties"]["rules"];
    assert_eq!(rules["maxItems"], 16);
    assert_eq!(rules["default"], json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]));
    let rule = &rules["items"]["properties"];
    assert_eq!(rule["matches"]["maxItems"], 64);
    let path = &rule["matches"]["items"]["properties"]["path"]["properties"];
    assert_eq!(path["value"]["maxLength"], 1024);
    assert_eq!(path["type"]["default"], "PathPrefix");
    assert!(path["type"]["enum"].as_array().unwrap().contains(&json!("RegularExpression")));
    let backend = &rule["backendRefs"]["items"];
    assert_eq!(backend["x-kubernetes-preserve-unknown-fields"], true);
    let weight = &backend["properties"]["weight"];
    assert_eq!((weight["minimum"].as_f64(), weight["maximum"].as_f64()), (Some(0.0), Some(1_000_000.0)));
    assert_eq!(weight["default"], 1);
    assert!(rule["backendRefs"]["description"].as_str().unwrap().contains("split by weight"));
    assert!(backend["properties"]["name"]["description"].as_str().is_some());
    let filter_types = &rule["filters"]["items"]["properties"]["type"]["enum"];
    assert!(filter_types.as_array().unwrap().contains(&json!("URLRewrite")));
    assert_eq!(rule["timeouts"]["properties"]["request"]["pattern"], r"^([0-9]{1,5}(h|m|s|ms)){1,4}$");
    let parent = &spec["properties"]["parentRefs"]["items"]["properties"];
    assert_eq!(
        (parent["group"]["default"].as_str(), parent["kind"]["default"].as_str()),
        (Some(GROUP), Some("Gateway"))
    );
    let conditions = &s["properties"]["status"]["properties"]["parents"]["items"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
}

#[test]
fn the_grpc_route_schema_covers_method_matches_and_its_filters() {
    let s = version_schema("GRPCRoute");
    let rule = &s["properties"]["spec"]["properties"]["rules"]["items"]["properties"];
    let method = &rule["matches"]["items"]["properties"]["method"]["properties"];
    assert_eq!(method["type"]["default"], "Exact");
    assert_eq!(method["service"]["maxLength"], 1024);
    let types: Vec<_> = rule["filters"]["items"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types, ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"]);
}

#[test]
fn every_pattern_compiles() {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(p) = m.get("pattern").and_then(Value::as_str) {
                    out.push(p.to_string());
                }
                m.values().for_each(|c| walk(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut patterns = Vec::new();
    for crd in gateway_crds() {
        walk(&serde_json::to_value(crd).unwrap(), &mut patterns);
    }
    assert!(patterns.len() > 10);
    for p in patterns {
        regex::Regex::new(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
}
