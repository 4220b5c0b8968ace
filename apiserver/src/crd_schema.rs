//! Checks a CustomResourceDefinition's `openAPIV3Schema` when the CRD is written, so a schema
//! the server could not enforce is refused up front instead of silently checking less: a
//! `pattern` that is not a valid regular expression, a bound that is not a number, a keyword of the
//! wrong type, a `default` its own schema rejects, or a construct Kubernetes forbids. Each problem
//! is reported at its full path, e.g.
//! `spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.x.pattern`.
//!
//! Unknown keywords (a typo such as `maxLenght`) are what they would be on a real API server:
//! unknown fields, pruned with a warning, or refused under `fieldValidation=Strict`.

use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::schema::{self, Findings};

const TYPES: [&str; 6] = ["object", "array", "string", "integer", "number", "boolean"];

/// What checking every version's schema of a CRD found: errors, unknown (pruned) keywords, and
/// warnings about what is accepted but not enforced.
#[derive(Debug, Default)]
pub struct Checked {
    pub findings: Findings,
    pub warnings: Vec<String>,
}

/// Checks (and prunes unknown keywords from) every `spec.versions[*].schema.openAPIV3Schema`.
pub fn check_crd(crd: &mut Value) -> Checked {
    let mut out = Checked::default();
    let Some(versions) = crd.pointer_mut("/spec/versions").and_then(Value::as_array_mut) else { return out };
    for (i, version) in versions.iter_mut().enumerate() {
        if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema").filter(|s| s.is_object()) {
            node(schema, &format!("spec.versions[{i}].schema.openAPIV3Schema"), &mut out);
        }
    }
    out
}

fn node(schema: &mut Value, path: &str, out: &mut Checked) {
    let Some(map) = schema.as_object_mut() else {
        out.findings.errors.push(FieldError::type_invalid(path, schema, "object"));
        return;
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let at = format!("{path}.{key}");
        if !keyword(&key, map, &at, out) {
            map.remove(&key);
            out.findings.unknown.push(at);
        }
    }
    cross_checks(map, path, out);
}

/// Checks one keyword; false if it is not a keyword of a Kubernetes structural schema.
fn keyword(key: &str, map: &mut Map<String, Value>, at: &str, out: &mut Checked) -> bool {
    let mut errs = Vec::new();
    let errors = &mut errs;
    let Some(value) = map.get_mut(key) else { return true };
    match key {
        "type" => match value.as_str() {
            Some(t) if TYPES.contains(&t) => {}
            Some(_) => errors.push(FieldError::not_supported(at, value, &TYPES.map(Value::from))),
            None => errors.push(FieldError::type_invalid(at, value, "string")),
        },
        "description" | "title" | "format" => expect(value.is_string(), at, value, "string", errors),
        "pattern" => match value.as_str() {
            Some(p) => {
                if let Err(why) = schema::compile_pattern(p) {
                    errors.push(FieldError::invalid(
                        at,
                        value,
                        format!("must be a valid regular expression (RE2 syntax): {why}"),
                    ));
                }
            }
            None => errors.push(FieldError::type_invalid(at, value, "string")),
        },
        "maxLength" | "minLength" | "maxItems" | "minItems" | "maxProperties" | "minProperties" => {
            if value.as_u64().is_none() {
                errors.push(FieldError::invalid(at, value, "must be a whole number, 0 or more"));
            }
        }
        "maximum" | "minimum" => expect(value.is_number(), at, value, "number", errors),
        "multipleOf" => {
            if value.as_f64().is_none_or(|f| f <= 0.0) {
                errors.push(FieldError::invalid(at, value, "must be a number greater than 0"));
            }
        }
        "exclusiveMaximum"
        | "exclusiveMinimum"
        | "nullable"
        | "x-kubernetes-preserve-unknown-fields"
        | "x-kubernetes-int-or-string"
        | "x-kubernetes-embedded-resource" => expect(value.is_boolean(), at, value, "boolean", errors),
        "uniqueItems" => {
            if value == &Value::Bool(true) {
                errors.push(FieldError::rule(at, "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic: use x-kubernetes-list-type: set"));
            } else {
                expect(value.is_boolean(), at, value, "boolean", errors);
            }
        }
        "enum" => expect(value.is_array(), at, value, "array", errors),
        "required" | "x-kubernetes-list-map-keys" => {
            let ok = value.as_array().is_some_and(|a| a.iter().all(Value::is_string));
            expect(ok, at, value, "array of strings", errors);
        }
        "x-kubernetes-list-type" => one_of(value, at, &["atomic", "set", "map"], errors),
        "x-kubernetes-map-type" => one_of(value, at, &["atomic", "granular"], errors),
        "default" | "example" => {}
        "externalDocs" => expect(value.is_object(), at, value, "object", errors),
        "x-kubernetes-validations" => {
            expect(value.is_array(), at, value, "array", errors);
            out.warnings.push(format!(
                "{at}: CEL validation rules are not evaluated by shifter's API server; the rest of the schema is enforced"
            ));
        }
        "properties" => match value.as_object_mut() {
            Some(props) => {
                for (name, sub) in props.iter_mut() {
                    node(sub, &format!("{at}.{name}"), out);
                }
            }
            None => errors.push(FieldError::type_invalid(at, value, "object")),
        },
        "additionalProperties" => match value {
            Value::Bool(_) => {}
            Value::Object(_) => node(value, at, out),
            _ => errors.push(FieldError::type_invalid(at, value, "boolean or schema")),
        },
        "items" | "not" => match value {
            Value::Object(_) => node(value, at, out),
            _ => errors.push(FieldError::type_invalid(at, value, "schema (an object)")),
        },
        "allOf" | "anyOf" | "oneOf" => match value.as_array_mut() {
            Some(branches) => {
                for (i, branch) in branches.iter_mut().enumerate() {
                    node(branch, &format!("{at}[{i}]"), out);
                }
            }
            None => errors.push(FieldError::type_invalid(at, value, "array")),
        },
        "$ref" | "$schema" | "id" | "definitions" | "patternProperties" | "dependencies" | "additionalItems" => {
            errors.push(FieldError::rule(at, format!("Forbidden: {key} must not be set in a structural schema")));
        }
        _ => return false,
    }
    out.findings.errors.extend(errs);
    true
}

fn expect(ok: bool, at: &str, value: &Value, ty: &str, errors: &mut Vec<FieldError>) {
    if !ok {
        errors.push(FieldError::type_invalid(at, value, ty));
    }
}

fn one_of(value: &Value, at: &str, allowed: &[&str], errors: &mut Vec<FieldError>) {
    if !value.as_str().is_some_and(|v| allowed.contains(&v)) {
        errors.push(FieldError::not_supported(at, value, &allowed.iter().map(|a| Value::from(*a)).collect::<Vec<_>>()));
    }
}

/// Rules between keywords of one schema node.
fn cross_checks(map: &Map<String, Value>, path: &str, out: &mut Checked) {
    let errors = &mut out.findings.errors;
    let has_properties = map.get("properties").and_then(Value::as_object).is_some_and(|p| !p.is_empty());
    let open = matches!(map.get("additionalProperties"), Some(Value::Object(_) | Value::Bool(true)));
    if has_properties && open {
        errors.push(FieldError::rule(
            format!("{path}.additionalProperties"),
            "Forbidden: additionalProperties and properties are mutually exclusive",
        ));
    }
    let list_type = map.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys = map.get("x-kubernetes-list-map-keys").and_then(Value::as_array);
    if list_type == Some("map") && keys.is_none_or(Vec::is_empty) {
        errors.push(FieldError::required(format!("{path}.x-kubernetes-list-map-keys")));
    }
    if keys.is_some() && list_type != Some("map") {
        errors.push(FieldError::rule(
            format!("{path}.x-kubernetes-list-map-keys"),
            "Forbidden: only allowed with x-kubernetes-list-type: map",
        ));
    }
    if let Some(default) = map.get("default") {
        let mut bare = map.clone();
        bare.remove("default");
        errors.extend(schema::validate(&Value::Object(bare), default, &format!("{path}.default")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd_with(field: Value) -> Value {
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"x": field}}}}}}]}})
    }

    fn problems(field: Value) -> Vec<String> {
        let mut crd = crd_with(field);
        check_crd(&mut crd).findings.errors.iter().map(FieldError::message).collect()
    }

    const X: &str = "spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.x";

    #[test]
    fn shifters_own_crds_pass() {
        for crd in shifter_crds::all_crds() {
            let mut v = serde_json::to_value(&crd).unwrap();
            let checked = check_crd(&mut v);
            assert!(checked.findings.errors.is_empty(), "{:?}", checked.findings.errors);
            assert!(checked.findings.unknown.is_empty(), "{:?}", checked.findings.unknown);
        }
    }

    #[test]
    fn an_invalid_pattern_is_reported_at_its_path() {
        let errs = problems(json!({"type": "string", "pattern": "^[a-z+$"}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with(&format!("{X}.pattern: Invalid value")), "{errs:?}");
    }

    #[test]
    fn malformed_keywords_forbidden_constructs_and_bad_defaults_are_reported() {
        for (field, at) in [
            (json!({"type": "string", "maxLength": "ten"}), "maxLength"),
            (json!({"type": "string", "minLength": -1}), "minLength"),
            (json!({"type": "integer", "minimum": "0"}), "minimum"),
            (json!({"type": "number", "multipleOf": 0}), "multipleOf"),
            (json!({"type": "array", "maxItems": 1.5, "items": {"type": "string"}}), "maxItems"),
            (json!({"type": "string", "enum": "a"}), "enum"),
            (json!({"type": "text"}), "type"),
            (json!({"type": "array", "uniqueItems": true}), "uniqueItems"),
            (json!({"$ref": "#/definitions/x"}), "$ref"),
            (
                json!({"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}}),
                "x-kubernetes-list-map-keys",
            ),
            (json!({"type": "integer", "maximum": 5, "default": 9}), "default"),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": true}),
                "additionalProperties",
            ),
            (
                json!({"type": "object", "properties": {"y": {"type": "string", "pattern": "("}}}),
                "properties.y.pattern",
            ),
            (json!({"anyOf": [{"type": "integer", "maxLength": "x"}]}), "anyOf[0].maxLength"),
        ] {
            let errs = problems(field.clone());
            assert!(errs.iter().any(|e| e.starts_with(&format!("{X}.{at}"))), "{field}: {errs:?}");
        }
    }

    #[test]
    fn unknown_keywords_are_pruned_and_named_and_cel_rules_draw_a_warning() {
        let mut crd =
            crd_with(json!({"type": "string", "maxLenght": 5, "x-kubernetes-validations": [{"rule": "self != ''"}]}));
        let checked = check_crd(&mut crd);
        assert!(checked.findings.errors.is_empty(), "{:?}", checked.findings.errors);
        assert_eq!(checked.findings.unknown, [format!("{X}.maxLenght")]);
        assert!(crd.to_string().find("maxLenght").is_none());
        assert!(checked.warnings[0].contains("CEL"), "{:?}", checked.warnings);
    }
}
