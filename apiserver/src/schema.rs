//! Structural-schema enforcement for custom resources, as the Kubernetes API server does it on
//! every write: drop nulls the schema does not allow, prune unknown fields, apply defaults, then
//! check types, required fields, enums, bounds, lengths and patterns, collecting every problem.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

use crate::error::FieldError;

/// What enforcing the schema found.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<FieldError>,
    /// Paths of fields the schema does not know; they have been pruned.
    pub unknown: Vec<String>,
}

/// Enforces `schema` (an `openAPIV3Schema`) on a whole object, in place. `apiVersion`, `kind` and
/// `metadata` are the server's business and are left alone.
pub fn enforce(schema: &Value, obj: &mut Value) -> Findings {
    let mut out = Findings::default();
    let Some(map) = obj.as_object_mut() else {
        out.errors.push(FieldError::type_invalid("<root>", obj, "object"));
        return out;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(&key)) {
            Some(sub) => field(sub, map, &key, &key, &mut out),
            None if preserve => {}
            None => {
                map.remove(&key);
                out.unknown.push(key);
            }
        }
    }
    defaults_and_required(schema, map, "", &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

/// Handles one property of an object: nulls the schema forbids are dropped, the rest validated.
fn field(schema: &Value, parent: &mut Map<String, Value>, key: &str, path: &str, out: &mut Findings) {
    if parent.get(key).is_some_and(Value::is_null) && !nullable(schema) {
        parent.remove(key);
        return;
    }
    if let Some(value) = parent.get_mut(key) {
        walk(schema, value, path, out);
    }
}

fn defaults_and_required(schema: &Value, map: &mut Map<String, Value>, path: &str, out: &mut Findings) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (key, sub) in props {
            if !map.contains_key(key)
                && let Some(default) = sub.get("default")
            {
                let mut value = default.clone();
                walk(sub, &mut value, &join(path, key), out);
                map.insert(key.clone(), value);
            }
        }
    }
    for req in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !map.contains_key(req) {
            out.errors.push(FieldError::required(join(path, req)));
        }
    }
}

fn walk(schema: &Value, value: &mut Value, path: &str, out: &mut Findings) {
    if value.is_null() {
        if !nullable(schema) {
            out.errors.push(FieldError::type_invalid(
                path,
                value,
                schema.get("type").and_then(Value::as_str).unwrap_or("object"),
            ));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    if int_or_string {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            out.errors.push(FieldError::type_invalid(path, value, "integer-or-string"));
            return;
        }
    } else if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            out.errors.push(FieldError::type_invalid(path, value, ty));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        out.errors.push(FieldError::not_supported(path, value, allowed));
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let sub_path = join(path, &key);
                if let Some(sub) = props.and_then(|p| p.get(&key)) {
                    field(sub, map, &key, &sub_path, out);
                } else if let Some(sub) = additional.filter(|a| a.is_object()) {
                    field(sub, map, &key, &sub_path, out);
                } else if preserve || additional == Some(&Value::Bool(true)) {
                    // kept as written
                } else {
                    map.remove(&key);
                    out.unknown.push(sub_path);
                }
            }
            defaults_and_required(schema, map, path, out);
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
            let n = items.len() as f64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_f64).filter(|m| n < *m) {
                out.errors.push(FieldError::invalid(
                    path,
                    &Value::from(items.len()),
                    format!("{path} in body should have at least {} items", num(min)),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_f64).filter(|m| n > *m) {
                out.errors.push(FieldError::invalid(
                    path,
                    &Value::from(items.len()),
                    format!("must have at most {} items", num(max)),
                ));
            }
            list_uniqueness(schema, items, path, out);
        }
        Value::String(s) => {
            let len = s.chars().count() as f64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_f64).filter(|m| len < *m) {
                out.errors.push(FieldError::invalid(
                    path,
                    value,
                    format!("{path} in body should be at least {} chars long", num(min)),
                ));
                return;
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_f64).filter(|m| len > *m) {
                out.errors.push(FieldError::invalid(path, value, format!("may not be more than {} bytes", num(max))));
                return;
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match compiled(pattern) {
                    Some(re) if !re.is_match(s) => out.errors.push(FieldError::invalid(
                        path,
                        value,
                        format!("{path} in body should match '{pattern}'"),
                    )),
                    _ => {}
                }
            }
        }
        Value::Number(n) => {
            let Some(x) = n.as_f64() else { return };
            let excl_min = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
            let excl_max = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && (x < min || (excl_min && x == min))
            {
                let rel = if excl_min { "greater than" } else { "greater than or equal to" };
                out.errors.push(FieldError::invalid(
                    path,
                    value,
                    format!("{path} in body should be {rel} {}", num(min)),
                ));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && (x > max || (excl_max && x == max))
            {
                let rel = if excl_max { "less than" } else { "less than or equal to" };
                out.errors.push(FieldError::invalid(
                    path,
                    value,
                    format!("{path} in body should be {rel} {}", num(max)),
                ));
            }
        }
        _ => {}
    }
}

/// `x-kubernetes-list-type: set` items and `map` keys must be unique.
fn list_uniqueness(schema: &Value, items: &[Value], path: &str, out: &mut Findings) {
    let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys: Vec<&str> = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let identity = match list_type {
            Some("set") => item.to_string(),
            Some("map") => keys
                .iter()
                .map(|k| item.get(*k).map(Value::to_string).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(","),
            _ => return,
        };
        if !seen.insert(identity) {
            out.errors.push(FieldError {
                reason: "FieldValueDuplicate",
                field: format!("{path}[{i}]"),
                detail: format!("Duplicate value: {item}"),
            });
        }
    }
}

/// Formats a schema bound as Kubernetes does: `0`, not `0.0`.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { x.to_string() }
}

fn compiled(pattern: &str) -> Option<Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    cache.entry(pattern.to_string()).or_insert_with(|| Regex::new(pattern).ok()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split_schema() -> Value {
        let crd = serde_json::to_value(&shifter_crds::all_crds()[0]).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn reports_every_bad_field_by_path() {
        let mut obj = json!({"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "metadata": {"name": "x"},
            "spec": {"backends": [{"service": "a", "weight": -1}, {"weight": "ten", "service": 3}]}});
        let found = enforce(&split_schema(), &mut obj);
        let fields: Vec<&str> = found.errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"spec.service"), "{fields:?}");
        assert!(fields.contains(&"spec.backends[0].weight"), "{fields:?}");
        assert!(fields.contains(&"spec.backends[1].weight"), "{fields:?}");
        assert!(fields.contains(&"spec.backends[1].service"), "{fields:?}");
        let weight = found.errors.iter().find(|e| e.field == "spec.backends[0].weight").unwrap();
        assert!(weight.detail.contains("greater than or equal to 0"), "{}", weight.detail);
    }

    #[test]
    fn prunes_unknown_fields_and_drops_forbidden_nulls() {
        let mut obj = json!({"metadata": {"name": "x"}, "spec": {"service": "web", "extra": 1,
            "backends": [{"service": "a", "weight": 1, "junk": true}]}, "status": null, "bogus": {}});
        let found = enforce(&split_schema(), &mut obj);
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let mut unknown = found.unknown.clone();
        unknown.sort();
        assert_eq!(unknown, ["bogus", "spec.backends[0].junk", "spec.extra"]);
        assert_eq!(obj["spec"], json!({"service": "web", "backends": [{"service": "a", "weight": 1}]}));
        // `status` is nullable in this schema, so an explicit null stays.
        assert!(obj.get("status").is_some());
    }

    #[test]
    fn defaults_enum_pattern_and_int_or_string() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
            "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "name": {"type": "string", "pattern": "^[a-z]+$"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}});
        let mut ok = json!({"spec": {"port": "http", "name": "abc", "free": {"anything": [1]}}});
        assert!(enforce(&schema, &mut ok).errors.is_empty());
        assert_eq!(ok["spec"]["mode"], "a");
        assert_eq!(ok["spec"]["free"]["anything"], json!([1]));
        let mut bad = json!({"spec": {"port": 1.5, "name": "ABC", "mode": "c"}});
        let errs = enforce(&schema, &mut bad).errors;
        let reasons: Vec<&str> = errs.iter().map(|e| e.reason).collect();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(reasons.contains(&"FieldValueNotSupported") && reasons.contains(&"FieldValueTypeInvalid"));
    }
}
