//! OpenAPI v3 documents for the custom resources, built from their CRD schemas, so that
//! `kubectl explain ts.spec.backends` can describe every field. Built-in kinds get their PATCH
//! operations but no schemas: kubectl then uses the types it was compiled with.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Value, json};

use crate::resources::Registry;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn reversed(group: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    parts.join(".")
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`, or None if nothing is served
/// there. Every resource gets a PATCH path declaring `fieldValidation` (kubectl checks for it
/// before sending `fieldValidation=Strict`); custom resources also get their schemas.
pub fn document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
    for r in registry.all().into_iter().filter(|r| r.group == group) {
        if r.version(version).is_none() {
            continue;
        }
        let gvk = json!({"group": group, "version": version, "kind": r.kind});
        let mut content = serde_json::Map::new();
        for ct in ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"] {
            content.insert(ct.into(), json!({"schema": {"type": "object"}}));
        }
        if !r.custom {
            content.insert("application/strategic-merge-patch+json".into(), json!({"schema": {"type": "object"}}));
        }
        let param =
            |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let item = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        paths.insert(
            item,
            json!({"patch": {
                "description": format!("partially update the specified {}", r.kind),
                "operationId": format!("patch{}", r.kind),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
                "requestBody": {"content": content, "required": true},
                "responses": {"200": {"description": "OK"}},
            }}),
        );
        if !r.custom {
            continue;
        }
        let Some(v) = r.version(version) else { continue };
        let mut schema = v
            .schema
            .clone()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        if !schema.get("properties").is_some_and(Value::is_object) {
            schema["properties"] = json!({});
        }
        let props = &mut schema["properties"];
        props["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
        props["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
        props["metadata"] = json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}],
            "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"});
        schema["x-kubernetes-group-version-kind"] = json!([{"group": group, "version": version, "kind": r.kind}]);
        schemas.insert(format!("{}.{version}.{}", reversed(group), r.kind), schema);
    }
    if paths.is_empty() {
        return None;
    }
    if !schemas.is_empty() {
        schemas.insert(OBJECT_META.into(), object_meta());
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `/openapi/v3`: where each group-version's document lives.
pub fn index(registry: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in registry.groups() {
        for v in versions {
            if let Some(doc) = document(registry, &group, &v) {
                let mut h = DefaultHasher::new();
                doc.to_string().hash(&mut h);
                let path = if group.is_empty() { format!("api/{v}") } else { format!("apis/{group}/{v}") };
                paths.insert(
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={:016X}", h.finish())}),
                );
            }
        }
    }
    json!({"paths": paths})
}

fn object_meta() -> Value {
    let s = |d: &str| json!({"type": "string", "description": d});
    let map = |d: &str| json!({"type": "object", "additionalProperties": {"type": "string"}, "description": d});
    json!({
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        "properties": {
            "name": s("Name must be unique within a namespace."),
            "namespace": s("Namespace defines the space within which each name must be unique."),
            "generateName": s("An optional prefix, used by the server, to generate a unique name."),
            "labels": map("Map of string keys and values that can be used to organize and categorize objects."),
            "annotations": map("Annotations is an unstructured key value map stored with a resource."),
            "uid": s("UID is the unique in time and space value for this object."),
            "resourceVersion": s("An opaque value that represents the internal version of this object."),
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "creationTimestamp": {"type": "string", "format": "date-time", "description": "The time this object was created."},
            "deletionTimestamp": {"type": "string", "format": "date-time", "description": "The time after which this resource will be deleted."},
            "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the registry."},
            "ownerReferences": {"type": "array", "items": {"type": "object"}, "description": "Objects depended by this object."},
            "managedFields": {"type": "array", "items": {"type": "object"}, "description": "Which field managers own which fields."},
        }
    })
}
