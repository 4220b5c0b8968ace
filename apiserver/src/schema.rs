//! Structural-schema enforcement for custom resources, as the Kubernetes API server does it on
//! every write: drop nulls the schema does not allow, prune unknown fields, apply defaults, then
//! check types, required fields, enums, bounds, lengths and patterns, collecting every problem.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use regex::{Regex, RegexBuilder};
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

/// Validation ratcheting, as Kubernetes does it for custom resources on update: an error about a
/// value the update did not change does not block the update. An object that became invalid under
/// a stricter schema (or was stored past validation) can still have its status written and its
/// other fields edited; only what a write changes must be valid. Missing required fields and wrong
/// types are never ratcheted, nor is an error whose path cannot be followed in both objects.
pub fn ratchet(errors: Vec<FieldError>, old: &Value, new: &Value) -> Vec<FieldError> {
    errors
        .into_iter()
        .filter(|e| {
            let structural = matches!(e.reason, "FieldValueRequired" | "FieldValueTypeInvalid");
            let unchanged = match (value_at(old, &e.field), value_at(new, &e.field)) {
                (Some(before), Some(after)) => before == after,
                _ => false,
            };
            structural || !unchanged
        })
        .collect()
}

/// The value at a field path as errors name it: `spec.steps[2].weight`.
fn value_at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut here = obj;
    for segment in path.split('.') {
        let (key, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            here = here.as_object()?.get(key)?;
        }
        for index in indexes.split_terminator(']') {
            let i: usize = index.strip_prefix('[')?.parse().ok()?;
            here = here.as_array()?.get(i)?;
        }
    }
    Some(here)
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

/// Validates `value` against `schema` without changing it: what `allOf`, `anyOf`, `oneOf` and
/// `not` branches and CRD defaults are checked with (pruning and defaulting follow the
/// structural schema only, as in Kubernetes).
pub fn validate(schema: &Value, value: &Value, path: &str) -> Vec<FieldError> {
    let mut copy = value.clone();
    let mut out = Findings::default();
    walk(schema, &mut copy, path, &mut out);
    out.errors
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
    if !type_matches(schema, value, path, out) {
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        out.errors.push(FieldError::not_supported(path, value, allowed));
    }
    combinators(schema, value, path, out);
    match value {
        Value::Object(map) => object(schema, map, path, out),
        Value::Array(items) => array(schema, items, path, out),
        Value::String(s) => string(schema, s, path, out),
        Value::Number(n) => number(schema, n, path, out),
        _ => {}
    }
}

/// `type` (or `x-kubernetes-int-or-string`); false if the value is of the wrong type, which
/// makes every further check meaningless.
fn type_matches(schema: &Value, value: &Value, path: &str, out: &mut Findings) -> bool {
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        let ok = value.is_string() || value.is_i64() || value.is_u64();
        if !ok {
            out.errors.push(FieldError::type_invalid(path, value, "integer-or-string"));
        }
        return ok;
    }
    let Some(ty) = schema.get("type").and_then(Value::as_str) else { return true };
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
    }
    ok
}

/// `allOf`, `anyOf`, `oneOf` and `not`: value validations only.
fn combinators(schema: &Value, value: &Value, path: &str, out: &mut Findings) {
    let branches = |key: &str| schema.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for branch in branches("allOf") {
        out.errors.extend(validate(branch, value, path));
    }
    let any = branches("anyOf");
    if !any.is_empty() && !any.iter().any(|b| validate(b, value, path).is_empty()) {
        out.errors.push(FieldError::invalid(path, value, "must validate at least one schema (anyOf)"));
    }
    let one = branches("oneOf");
    if !one.is_empty() && one.iter().filter(|b| validate(b, value, path).is_empty()).count() != 1 {
        out.errors.push(FieldError::invalid(path, value, "must validate one and only one schema (oneOf)"));
    }
    if let Some(not) = schema.get("not")
        && validate(not, value, path).is_empty()
    {
        out.errors.push(FieldError::invalid(path, value, "must not validate the schema (not)"));
    }
}

fn object(schema: &Value, map: &mut Map<String, Value>, path: &str, out: &mut Findings) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
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
    let n = map.len() as f64;
    let count = Value::from(map.len());
    if let Some(min) = bound(schema, "minProperties").filter(|m| n < *m) {
        out.errors.push(FieldError::invalid(
            path,
            &count,
            format!("{path} in body should have at least {} properties", num(min)),
        ));
    }
    if let Some(max) = bound(schema, "maxProperties").filter(|m| n > *m) {
        out.errors.push(FieldError::invalid(
            path,
            &count,
            format!("{path} in body should have at most {} properties", num(max)),
        ));
    }
}

fn array(schema: &Value, items: &mut [Value], path: &str, out: &mut Findings) {
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter_mut().enumerate() {
            walk(item_schema, item, &format!("{path}[{i}]"), out);
        }
    }
    let n = items.len() as f64;
    let count = Value::from(items.len());
    if let Some(min) = bound(schema, "minItems").filter(|m| n < *m) {
        out.errors.push(FieldError::invalid(
            path,
            &count,
            format!("{path} in body should have at least {} items", num(min)),
        ));
    }
    if let Some(max) = bound(schema, "maxItems").filter(|m| n > *m) {
        out.errors.push(FieldError {
            reason: "FieldValueTooMany",
            field: path.to_string(),
            detail: format!("Too many: {}: must have at most {} items", items.len(), num(max)),
        });
    }
    list_uniqueness(schema, items, path, out);
}

fn string(schema: &Value, s: &str, path: &str, out: &mut Findings) {
    let value = Value::from(s);
    let len = s.chars().count() as f64;
    if let Some(min) = bound(schema, "minLength").filter(|m| len < *m) {
        out.errors.push(FieldError::invalid(
            path,
            &value,
            format!("{path} in body should be at least {} chars long", num(min)),
        ));
    }
    if let Some(max) = bound(schema, "maxLength").filter(|m| len > *m) {
        out.errors.push(FieldError {
            reason: "FieldValueTooLong",
            field: path.to_string(),
            detail: format!("Too long: may not be more than {} bytes", num(max)),
        });
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match compiled(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => {
                out.errors.push(FieldError::invalid(path, &value, format!("{path} in body should match '{pattern}'")))
            }
            // Only a CRD stored before patterns were checked can get here: fail closed.
            Err(why) => out.errors.push(FieldError::invalid(
                path,
                &value,
                format!("the schema's pattern '{pattern}' is not a valid regular expression ({why}): fix the CustomResourceDefinition"),
            )),
        }
    }
}

fn number(schema: &Value, n: &serde_json::Number, path: &str, out: &mut Findings) {
    let Some(x) = n.as_f64() else { return };
    let value = Value::Number(n.clone());
    let excl_min = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
    let excl_max = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && (x < min || (excl_min && x == min))
    {
        let rel = if excl_min { "greater than" } else { "greater than or equal to" };
        out.errors.push(FieldError::invalid(path, &value, format!("{path} in body should be {rel} {}", num(min))));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && (x > max || (excl_max && x == max))
    {
        let rel = if excl_max { "less than" } else { "less than or equal to" };
        out.errors.push(FieldError::invalid(path, &value, format!("{path} in body should be {rel} {}", num(max))));
    }
    if let Some(factor) = schema.get("multipleOf").and_then(Value::as_f64).filter(|f| *f > 0.0) {
        let ratio = x / factor;
        if !ratio.is_finite() || (ratio - ratio.round()).abs() > 1e-9 {
            out.errors.push(FieldError::invalid(
                path,
                &value,
                format!("{path} in body should be a multiple of {}", num(factor)),
            ));
        }
    }
}

/// A non-negative count bound (`maxLength`, `minItems`, …).
fn bound(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
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

/// Most distinct patterns kept compiled; CRDs rarely have more than a few dozen.
const PATTERN_CACHE_SIZE: usize = 512;

/// Compiles a schema `pattern`, bounded so one pattern cannot claim unbounded memory.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string().lines().rfind(|l| !l.trim().is_empty()).unwrap_or("invalid").trim().to_string())
}

fn pattern_cache() -> &'static Mutex<HashMap<String, Regex>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The compiled pattern, from a bounded cache (an arbitrary entry makes room when it is full).
fn compiled(pattern: &str) -> Result<Regex, String> {
    let cache = pattern_cache();
    if let Some(re) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(pattern) {
        return Ok(re.clone());
    }
    let re = compile_pattern(pattern)?;
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= PATTERN_CACHE_SIZE
        && let Some(evict) = cache.keys().next().cloned()
    {
        cache.remove(&evict);
    }
    cache.insert(pattern.to_string(), re.clone());
    Ok(re)
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

    fn widget() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "multipleOf": 1},
            "step": {"type": "number", "multipleOf": 0.5},
            "mode": {"type": "string", "enum": ["fast", "safe"]},
            "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
            "labels": {"type": "object", "maxProperties": 1, "minProperties": 1, "additionalProperties": {"type": "string"}},
            "port": {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[a-z]+$"}]},
            "exactly": {"oneOf": [{"type": "integer", "minimum": 5}, {"type": "integer", "maximum": 9}]},
            "both": {"type": "integer", "allOf": [{"minimum": 2}, {"maximum": 4}]},
            "never": {"type": "string", "not": {"enum": ["root"]}}}}}})
    }

    #[test]
    fn every_bound_the_crds_rely_on_is_enforced_and_named() {
        let ok = json!({"spec": {"name": "abc", "replicas": 3, "step": 1.5, "mode": "safe", "tags": ["a"],
            "labels": {"a": "b"}, "port": "http", "exactly": 3, "both": 3, "never": "user"}});
        assert!(
            enforce(&widget(), &mut ok.clone()).errors.is_empty(),
            "{:?}",
            enforce(&widget(), &mut ok.clone()).errors
        );
        for (field, value, needle) in [
            ("name", json!("abcdefg"), "may not be more than 5"),
            ("name", json!("ABC"), "should match"),
            ("replicas", json!(0), "greater than or equal to 1"),
            ("replicas", json!(11), "less than or equal to 10"),
            ("step", json!(0.7), "multiple of 0.5"),
            ("mode", json!("slow"), "supported values: \"fast\", \"safe\""),
            ("tags", json!(["a", "b", "c"]), "at most 2 items"),
            ("labels", json!({"a": "b", "c": "d"}), "at most 1 properties"),
            ("labels", json!({}), "at least 1 properties"),
            ("port", json!("HTTP"), "at least one schema (anyOf)"),
            ("exactly", json!(7), "one and only one schema (oneOf)"),
            ("both", json!(5), "less than or equal to 4"),
            ("never", json!("root"), "must not validate the schema (not)"),
        ] {
            let mut obj = ok.clone();
            obj["spec"][field] = value.clone();
            let errs = enforce(&widget(), &mut obj).errors;
            let path = format!("spec.{field}");
            assert!(
                errs.iter().any(|e| e.field == path && e.detail.contains(needle)),
                "{field}={value}: expected {needle:?} at {path}: {errs:?}"
            );
        }
    }

    #[test]
    fn errors_about_values_an_update_left_alone_are_ratcheted() {
        let schema = split_schema();
        let old = json!({"spec": {"service": "web", "backends": [{"service": "a", "weight": -1}]}});
        let mut new = old.clone();
        new["status"] = json!({"note": "written by a controller"});
        let errors = enforce(&schema, &mut new.clone()).errors;
        assert!(!errors.is_empty(), "the stored object is invalid: {errors:?}");
        assert!(ratchet(errors, &old, &new).is_empty(), "but an update that leaves it alone passes");

        let mut changed = old.clone();
        changed["spec"]["backends"][0]["weight"] = json!(-2);
        let errors = enforce(&schema, &mut changed.clone()).errors;
        assert_eq!(ratchet(errors, &old, &changed).len(), 1, "a changed invalid value is still refused");
    }

    #[test]
    fn field_paths_are_followed_through_objects_and_lists() {
        let obj = json!({"spec": {"steps": [{"weight": 1}, {"weight": 2}]}});
        assert_eq!(value_at(&obj, "spec.steps[1].weight"), Some(&json!(2)));
        assert_eq!(value_at(&obj, "spec.steps[2].weight"), None);
        assert_eq!(value_at(&obj, "spec.steps[x]"), None);
    }

    #[test]
    fn the_pattern_cache_stays_bounded() {
        for i in 0..PATTERN_CACHE_SIZE + 50 {
            compiled(&format!("^p{i}$")).unwrap();
        }
        let size = pattern_cache().lock().unwrap().len();
        assert!(size <= PATTERN_CACHE_SIZE, "{size} patterns cached");
        assert!(compiled("(").is_err(), "an invalid pattern is an error, not a pass");
    }
}
