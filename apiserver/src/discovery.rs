//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/{group}` and the resource lists of each
//! group-version, as kubectl and kube-rs read them to map kinds and short names to URLs.

use serde_json::{Value, json};

use crate::resources::{Registry, verbs};

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "37", "gitVersion": "v1.37.0+shifter", "gitCommit": "",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25 (shifter embedded, Rust)",
        "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

pub fn core_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let list: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({"name": name, "versions": list, "preferredVersion": list[0].clone()})
}

/// `/apis`: every named group (the core group is listed under `/api`).
pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> =
        registry.groups().into_iter().filter(|(g, _)| !g.is_empty()).map(|(g, vs)| group_doc(&g, &vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let (g, vs) = registry.groups().into_iter().find(|(g, _)| g == name && !g.is_empty())?;
    let mut doc = group_doc(&g, &vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/api/v1` or `/apis/{group}/{version}`: the resources served there.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in registry.all().into_iter().filter(|r| r.group == group && r.version(version).is_some()) {
        let mut doc = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": verbs(),
        });
        if !r.short_names.is_empty() {
            doc["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            doc["categories"] = json!(r.categories);
        }
        resources.push(doc);
        if r.status_subresource {
            resources
                .push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// The media type of aggregated discovery (`apidiscovery.k8s.io/v2`), which kubectl asks for first.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept
        .split(',')
        .any(|a| a.contains("g=apidiscovery.k8s.io") && a.contains("v=v2") && a.contains("as=APIGroupDiscoveryList"))
}

/// Aggregated discovery for the core group (`/api`) or every named group (`/apis`): all groups,
/// versions and resources in one document.
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let all = registry.all();
    let items: Vec<Value> = registry
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = all
                        .iter()
                        .filter(|r| r.group == group && r.version(v).is_some())
                        .map(|r| {
                            let kind = json!({"group": group, "version": v, "kind": r.kind});
                            let mut doc = json!({
                                "resource": r.plural, "responseKind": kind, "singularResource": r.singular,
                                "scope": if r.namespaced { "Namespaced" } else { "Cluster" }, "verbs": verbs(),
                            });
                            if !r.short_names.is_empty() {
                                doc["shortNames"] = json!(r.short_names);
                            }
                            if !r.categories.is_empty() {
                                doc["categories"] = json!(r.categories);
                            }
                            if r.status_subresource {
                                doc["subresources"] =
                                    json!([{"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}]);
                            }
                            doc
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
