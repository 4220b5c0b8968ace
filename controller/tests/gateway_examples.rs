//! The manifests in `examples/gateway-api/` use only what shifter implements: every HTTPRoute and
//! GRPCRoute in them translates with nothing unsupported, attaches to a Service in its own
//! namespace and names each backend by Service and port. An example that drifts fails here.

use std::path::{Path, PathBuf};

use kube::api::DynamicObject;
use serde::Deserialize;
use shifter_controller::index::translate;
use shifter_controller::index::{RouteInfo, RouteKind};

/// One route read from an example file.
struct ExampleRoute {
    file: String,
    kind: RouteKind,
    object: DynamicObject,
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gateway-api")
}

/// Every HTTPRoute and GRPCRoute document in the example files; namespace "default" when unset,
/// as `kubectl apply` would use.
fn example_routes() -> Vec<ExampleRoute> {
    let dir = examples_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    let mut routes = Vec::new();
    for path in files {
        let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
            let kind = match value.get("kind").and_then(serde_json::Value::as_str) {
                Some("HTTPRoute") => RouteKind::Http,
                Some("GRPCRoute") => RouteKind::Grpc,
                _ => continue,
            };
            let mut object: DynamicObject =
                serde_json::from_value(value).unwrap_or_else(|e| panic!("{file}: not a Kubernetes object: {e}"));
            object.metadata.namespace.get_or_insert_with(|| "default".into());
            routes.push(ExampleRoute { file: file.clone(), kind, object });
        }
    }
    routes
}

/// What would keep the route from routing, if anything.
fn problems(info: &RouteInfo, namespace: &str) -> Vec<String> {
    let mut problems = info.unsupported.clone();
    if info.rules.is_empty() {
        problems.push("no rules".into());
    }
    if !info.parents.iter().filter_map(|p| p.service.as_ref()).any(|s| s.namespace == namespace) {
        problems.push(format!("no parentRef names a Service in namespace {namespace}"));
    }
    for backend in info.rules.iter().flat_map(|r| &r.backends) {
        if let Some((reason, message)) = &backend.invalid {
            problems.push(format!("{reason}: {message}"));
        }
        if backend.port.is_none() {
            problems.push(format!("backendRef to {} has no port", backend.name));
        }
    }
    problems
}

#[test]
fn every_example_route_uses_only_what_shifter_implements() {
    let routes = example_routes();
    for kind in [RouteKind::Http, RouteKind::Grpc] {
        assert!(routes.iter().any(|r| r.kind == kind), "no {} in {}", kind.kind(), examples_dir().display());
    }
    for route in &routes {
        let info = translate::route(route.kind, &route.object);
        let namespace = route.object.metadata.namespace.as_deref().unwrap_or_default();
        let problems = problems(&info, namespace);
        assert!(problems.is_empty(), "{}: {} {}: {problems:#?}", route.file, route.kind.kind(), info.name);
    }
}
