//! Structural schemas for the built-in kinds, from the Kubernetes OpenAPI definitions that
//! k8s-openapi carries (via schemars), so a Service, Secret or EndpointSlice is type-checked,
//! pruned and strictly validated like a custom resource, and a malformed one can never reach a
//! controller that would fail to decode it.

use schemars::JsonSchema;
use serde_json::{Map, Value};

/// Recursive types (none among the kinds served here) are cut off at this depth.
const MAX_DEPTH: usize = 24;

/// The schema of `T` with every `$ref` replaced by the definition it points to.
pub fn schema_of<T: JsonSchema>() -> Value {
    let root = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    let defs = root.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut out = inline(&root, &defs, 0);
    if let Some(m) = out.as_object_mut() {
        m.remove("$defs");
        m.remove("$schema");
    }
    out
}

fn inline(node: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    let Some(map) = node.as_object() else { return node.clone() };
    if depth > MAX_DEPTH {
        return serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    }
    let mut out = match map.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => match inline(defs.get(name).unwrap_or(&Value::Null), defs, depth + 1) {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        None => Map::new(),
    };
    for (k, v) in map {
        let v = match k.as_str() {
            "$ref" => continue,
            "properties" => Value::Object(
                v.as_object().into_iter().flatten().map(|(p, s)| (p.clone(), inline(s, defs, depth + 1))).collect(),
            ),
            "items" | "additionalProperties" if v.is_object() => inline(v, defs, depth + 1),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_schema_is_inlined_down_to_ports() {
        let s = schema_of::<k8s_openapi::api::core::v1::Service>();
        let port = &s["properties"]["spec"]["properties"]["ports"]["items"];
        assert_eq!(port["required"], serde_json::json!(["port"]));
        assert_eq!(port["properties"]["port"]["type"], "integer");
        assert_eq!(port["properties"]["targetPort"]["x-kubernetes-int-or-string"], true);
        assert!(!s.to_string().contains("$ref"));
    }
}
