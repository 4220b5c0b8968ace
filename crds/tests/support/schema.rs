//! What a plain Kubernetes API server checks against a CRD schema on its own, enough to test
//! shifter's generated schemas: unknown and required fields, types, enums, string lengths and
//! patterns, numeric bounds and list lengths.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;
use shifter_crds::all_crds;

/// The `openAPIV3Schema` of `kind` at `api_version`, as JSON.
pub fn schema_for(api_version: &str, kind: &str) -> Option<Value> {
    schema_ref(api_version, kind).cloned()
}

fn schema_ref(api_version: &str, kind: &str) -> Option<&'static Value> {
    static SCHEMAS: OnceLock<HashMap<(String, String), Value>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        let mut out = HashMap::new();
        for crd in all_crds() {
            for v in crd.spec.versions {
                let schema = v.schema.and_then(|s| s.open_api_v3_schema).map(|s| serde_json::to_value(s).unwrap());
                if let Some(schema) = schema {
                    out.insert((format!("{}/{}", crd.spec.group, v.name), crd.spec.names.kind.clone()), schema);
                }
            }
        }
        out
    });
    schemas.get(&(api_version.to_string(), kind.to_string()))
}

fn matches(pattern: &str, text: &str) -> bool {
    thread_local! {
        static COMPILED: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
    }
    COMPILED.with(|c| {
        c.borrow_mut()
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).expect("schema patterns compile"))
            .is_match(text)
    })
}

/// Every problem the schema finds in `value`, each as `<path>: <problem>`.
pub fn schema_problems(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        out.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        _ if int_or_string => value.is_string() || value.is_i64() || value.is_u64(),
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        out.push(format!("{path}: {value} has the wrong type"));
        return;
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    let flag = |key: &str| schema.get(key) == Some(&Value::Bool(true));
    match value {
        Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return;
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if !map.contains_key(required.as_str().unwrap()) {
                    out.push(format!("{path}.{} is required", required.as_str().unwrap()));
                }
            }
            if let Some(max) = bound("maxProperties").filter(|m| map.len() as f64 > *m) {
                out.push(format!("{path}: more than {max} properties"));
            }
            for (key, child) in map {
                if path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
                    continue;
                }
                match (props.and_then(|p| p.get(key)), schema.get("additionalProperties")) {
                    (Some(s), _) => schema_problems(child, s, &format!("{path}.{key}"), out),
                    (None, Some(s)) if s.is_object() => schema_problems(child, s, &format!("{path}.{key}"), out),
                    (None, Some(_)) => {}
                    (None, None) => out.push(format!("{path}.{key} is not a known field")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = bound("maxItems").filter(|m| items.len() as f64 > *m) {
                out.push(format!("{path}: more than {max} items"));
            }
            if let Some(min) = bound("minItems").filter(|m| (items.len() as f64) < *m) {
                out.push(format!("{path}: fewer than {min} items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    schema_problems(item, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as f64;
            if let Some(max) = bound("maxLength").filter(|m| len > *m) {
                out.push(format!("{path}: longer than {max}"));
            }
            if let Some(min) = bound("minLength").filter(|m| len < *m) {
                out.push(format!("{path}: shorter than {min}"));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && !matches(pattern, s)
            {
                out.push(format!("{path}: {s:?} does not match {pattern}"));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = bound("minimum")
                && (x < min || (flag("exclusiveMinimum") && x == min))
            {
                out.push(format!("{path}: {n} is below the minimum {min}"));
            }
            if let Some(max) = bound("maximum")
                && (x > max || (flag("exclusiveMaximum") && x == max))
            {
                out.push(format!("{path}: {n} is above the maximum {max}"));
            }
        }
        _ => {}
    }
}

/// The problems the schema of `obj`'s own apiVersion and kind finds in it.
pub fn problems_of(obj: &Value) -> Vec<String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let schema = schema_ref(api_version, kind).unwrap_or_else(|| panic!("no CRD serves {api_version} {kind}"));
    let mut out = Vec::new();
    schema_problems(obj, schema, "", &mut out);
    out
}

/// Every schema node in a CRD's schema that has `key`, with its path.
pub fn nodes_with<'a>(schema: &'a Value, key: &str, path: &str, out: &mut Vec<(String, &'a Value)>) {
    match schema {
        Value::Object(map) => {
            if map.contains_key(key) {
                out.push((path.to_string(), schema));
            }
            for (k, v) in map {
                nodes_with(v, key, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                nodes_with(v, key, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}
