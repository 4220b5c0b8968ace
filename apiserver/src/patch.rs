//! The three classic patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! Kubernetes' strategic merge patch for the built-in kinds (lists merged by their merge key,
//! `$patch`, `$retainKeys`, `$setElementOrder` and `$deleteFromPrimitiveList` directives).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Which patch format a request body is in, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
        ApiError::BadRequest(format!(
            "the server rejected our request due to an error in our request: invalid JSON patch: {e}"
        ))
    })?;
    json_patch::patch(target, &ops).map_err(|e| ApiError::Invalid {
        subject: Default::default(),
        message: format!("the server rejected our request due to an error in our request: {e}"),
        causes: Vec::new(),
    })
}

/// How a list at a given path merges in a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// Replaced wholesale (the default for lists without a patch strategy).
    Replace,
    /// A list of maps merged element-wise by this key.
    MergeKey(&'static str),
    /// A list of scalars merged as a set.
    Primitives,
}

/// The patch strategies of the list fields of the built-in kinds this server serves.
fn strategy(kind: &str, path: &str) -> ListStrategy {
    match (kind, path) {
        (_, "metadata.finalizers") => ListStrategy::Primitives,
        (_, "metadata.ownerReferences") => ListStrategy::MergeKey("uid"),
        (_, "status.conditions") => ListStrategy::MergeKey("type"),
        ("Service", "spec.ports") => ListStrategy::MergeKey("port"),
        _ => ListStrategy::Replace,
    }
}

/// Applies a strategic merge patch to an object of a built-in `kind`.
pub fn strategic_merge(kind: &str, target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Some(patch) = patch.as_object() else {
        return Err(ApiError::BadRequest("strategic merge patch must be a JSON object".into()));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    merge_map(kind, target.as_object_mut().expect("object"), patch, "");
    Ok(())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn merge_map(kind: &str, target: &mut Map<String, Value>, patch: &Map<String, Value>, path: &str) {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = patch.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), v.clone())).collect();
            return;
        }
        Some("delete") => {
            target.clear();
            return;
        }
        _ => {}
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        target.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (target.get_mut(field), value.as_array()) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let sub = join(path, key);
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(p) => match target.get_mut(key) {
                Some(Value::Object(t)) => merge_map(kind, t, p, &sub),
                _ => {
                    let mut fresh = Map::new();
                    merge_map(kind, &mut fresh, p, &sub);
                    target.insert(key.clone(), Value::Object(fresh));
                }
            },
            Value::Array(items) => {
                let merged = match (strategy(kind, &sub), target.get(key)) {
                    (ListStrategy::Replace, _) | (_, None) => merge_list(kind, &[], items, &sub, ListStrategy::Replace),
                    (s, Some(Value::Array(existing))) => merge_list(kind, existing, items, &sub, s),
                    (_, Some(_)) => merge_list(kind, &[], items, &sub, ListStrategy::Replace),
                };
                target.insert(key.clone(), Value::Array(merged));
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

fn merge_list(kind: &str, existing: &[Value], patch: &[Value], path: &str, strategy: ListStrategy) -> Vec<Value> {
    let clean =
        |items: &[Value]| -> Vec<Value> { items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect() };
    match strategy {
        ListStrategy::Replace => clean(patch),
        ListStrategy::Primitives => {
            let mut out = existing.to_vec();
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            out
        }
        ListStrategy::MergeKey(merge_key) => {
            if patch.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace")) {
                return clean(patch);
            }
            let mut out = existing.to_vec();
            for item in patch {
                let id = item.get(merge_key);
                let pos = out.iter().position(|e| e.get(merge_key) == id && id.is_some());
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, item.as_object()) {
                    (Some(p), _) if delete => {
                        out.remove(p);
                    }
                    (_, _) if delete => {}
                    (Some(p), Some(fields)) => {
                        if let Some(t) = out[p].as_object_mut() {
                            merge_map(kind, t, fields, path);
                        }
                    }
                    (None, _) => out.push(item.clone()),
                    (Some(p), None) => out[p] = item.clone(),
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_service_ports_by_port() {
        let mut svc = json!({"metadata": {"finalizers": ["a"]}, "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}], "selector": {"app": "web"}}});
        let patch = json!({"metadata": {"finalizers": ["b"]}, "spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}],
            "ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "$patch": "delete"}], "selector": {"app": null, "tier": "x"}}});
        strategic_merge("Service", &mut svc, &patch).unwrap();
        assert_eq!(svc["spec"]["ports"], json!([{"port": 80, "targetPort": 9090}]));
        assert_eq!(svc["spec"]["selector"], json!({"tier": "x"}));
        assert_eq!(svc["metadata"]["finalizers"], json!(["a", "b"]));
    }

    #[test]
    fn lists_without_a_strategy_are_replaced_and_directives_honoured() {
        let mut o = json!({"data": {"a": "1", "b": "2"}, "items": [1, 2], "metadata": {"finalizers": ["x", "y"]}});
        let patch = json!({"items": [3], "data": {"$retainKeys": ["a"]}, "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}});
        strategic_merge("ConfigMap", &mut o, &patch).unwrap();
        assert_eq!(o["items"], json!([3]));
        assert_eq!(o["data"], json!({"a": "1"}));
        assert_eq!(o["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn json_patch_failures_change_nothing() {
        let mut o = json!({"spec": {"a": 1}});
        let err = json_patch(
            &mut o,
            &json!([{"op": "replace", "path": "/spec/a", "value": 2}, {"op": "test", "path": "/spec/a", "value": 9}]),
        );
        assert!(err.is_err());
        assert_eq!(o, json!({"spec": {"a": 1}}));
    }
}
