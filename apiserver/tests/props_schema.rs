//! Property tests of schema handling on arbitrary schemas and objects: enforcing never panics,
//! names every problem by a field of the object or schema, and is idempotent (a second pass
//! prunes and changes nothing); checking a CRD's schema never panics, names every problem under
//! the schema's path, and accepts only patterns enforcement can use; and each bound the CRDs rely
//! on rejects exactly the values that break it.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use shifter_apiserver::crd_schema::check_crd;
use shifter_apiserver::schema::enforce;

mod support;

fn config() -> ProptestConfig {
    support::props_config()
}

const NAMES: [&str; 5] = ["a", "b", "spec", "x", "apiVersion"];
const PATTERNS: [&str; 6] = ["^[a-z]+$", "(", "[a-", "^a*$", "\\d+", "x{2,3}"];
const WORDS: [&str; 6] = ["a", "b", "abc", "", "string", "object"];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..12).prop_map(Value::from),
        (-2.0f64..12.0).prop_map(|f| json!(f)),
        proptest::sample::select(&WORDS[..]).prop_map(Value::from),
    ]
}

fn object_of(inner: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    proptest::collection::vec((proptest::sample::select(&NAMES[..]), inner), 0..3)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>()))
}

fn document() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array), object_of(inner)]
    })
}

/// A value for a keyword that is not a sub-schema: usually of the right type, sometimes not.
fn keyword_value(keyword: &'static str) -> BoxedStrategy<Value> {
    match keyword {
        "type" => prop_oneof![
            proptest::sample::select(&["object", "array", "string", "integer", "number", "boolean", "text"][..]).prop_map(Value::from),
            leaf()
        ]
        .boxed(),
        "pattern" => prop_oneof![4 => proptest::sample::select(&PATTERNS[..]).prop_map(Value::from), 1 => leaf()].boxed(),
        "required" | "x-kubernetes-list-map-keys" => prop_oneof![
            4 => proptest::collection::vec(proptest::sample::select(&NAMES[..]).prop_map(Value::from), 0..3).prop_map(Value::Array),
            1 => leaf()
        ]
        .boxed(),
        "enum" => prop_oneof![4 => proptest::collection::vec(leaf(), 0..3).prop_map(Value::Array), 1 => leaf()].boxed(),
        "x-kubernetes-list-type" => proptest::sample::select(&["atomic", "set", "map", "list"][..]).prop_map(Value::from).boxed(),
        "default" => document().boxed(),
        _ => leaf().boxed(),
    }
}

const SCALAR_KEYWORDS: [&str; 20] = [
    "type",
    "pattern",
    "required",
    "enum",
    "maxLength",
    "minLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "multipleOf",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "nullable",
    "default",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "maxLenght",
];

fn scalar_keyword() -> impl Strategy<Value = (String, Value)> {
    proptest::sample::select(&SCALAR_KEYWORDS[..])
        .prop_flat_map(|k| keyword_value(k).prop_map(move |v| (k.to_string(), v)))
}

fn schema() -> impl Strategy<Value = Value> {
    let node = proptest::collection::vec(scalar_keyword(), 0..3).prop_map(|kv| Value::Object(kv.into_iter().collect()));
    node.prop_recursive(3, 12, 3, |inner| {
        (
            proptest::collection::vec(scalar_keyword(), 0..3),
            proptest::option::of(object_of(inner.clone())),
            proptest::option::of(prop_oneof![inner.clone(), any::<bool>().prop_map(Value::from)]),
            proptest::option::of(inner.clone()),
            proptest::option::of((
                proptest::sample::select(&["anyOf", "allOf", "oneOf"][..]),
                proptest::collection::vec(inner.clone(), 0..3),
            )),
            proptest::option::of(inner),
        )
            .prop_map(|(scalars, properties, additional, items, combinator, not)| {
                let mut m: Map<String, Value> = scalars.into_iter().collect();
                if let Some(p) = properties {
                    m.insert("properties".into(), p);
                }
                if let Some(a) = additional {
                    m.insert("additionalProperties".into(), a);
                }
                if let Some(i) = items {
                    m.insert("items".into(), i);
                }
                if let Some((k, branches)) = combinator {
                    m.insert(k.into(), Value::Array(branches));
                }
                if let Some(n) = not {
                    m.insert("not".into(), n);
                }
                Value::Object(m)
            })
    })
}

fn crd(schema: &Value) -> Value {
    json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]}})
}

/// The first segment of a field path: `spec` of `spec.x[0].y`.
fn root(field: &str) -> &str {
    field.split(['.', '[']).next().unwrap_or_default()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn enforcing_any_schema_names_every_problem_and_is_idempotent(schema in schema(), obj in object_of(document())) {
        let mut once = obj.clone();
        let found = enforce(&schema, &mut once);
        let props = schema.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        for e in &found.errors {
            let r = root(&e.field);
            let known = r == "<root>" || obj.get(r).is_some() || props.is_some_and(|p| p.contains_key(r)) || required.contains(&r);
            prop_assert!(known && !e.detail.is_empty(), "{:?}", e);
        }
        let mut twice = once.clone();
        let again = enforce(&schema, &mut twice);
        prop_assert!(again.unknown.is_empty(), "second pass pruned {:?}", again.unknown);
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn checking_any_crd_schema_names_every_problem_under_the_schema_path(schema in schema(), obj in object_of(document())) {
        let mut doc = crd(&schema);
        let checked = check_crd(&mut doc);
        const AT: &str = "spec.versions[0].schema.openAPIV3Schema";
        for e in &checked.findings.errors {
            prop_assert!(e.field.starts_with(AT) && !e.detail.is_empty(), "{:?}", e);
        }
        for u in &checked.findings.unknown {
            prop_assert!(u.starts_with(AT), "{}", u);
        }
        if checked.findings.errors.is_empty() {
            // A schema the check accepts never fails for want of a usable pattern.
            let accepted = doc.pointer("/spec/versions/0/schema/openAPIV3Schema").cloned().unwrap_or_default();
            let mut o = obj.clone();
            let found = enforce(&accepted, &mut o);
            prop_assert!(found.errors.iter().all(|e| !e.detail.contains("not a valid regular expression")), "{:?}", found.errors);
        }
    }

    #[test]
    fn each_bound_rejects_exactly_the_values_that_break_it(
        keyword in proptest::sample::select(&["maxLength", "minLength", "minimum", "maximum", "maxItems", "minItems", "multipleOf", "enum"][..]),
        bound in 1u64..6,
        size in 0u64..8,
    ) {
        let (schema, value, breaks) = match keyword {
            "maxLength" => (json!({"type": "string", "maxLength": bound}), json!("a".repeat(size as usize)), size > bound),
            "minLength" => (json!({"type": "string", "minLength": bound}), json!("a".repeat(size as usize)), size < bound),
            "minimum" => (json!({"type": "integer", "minimum": bound}), json!(size), size < bound),
            "maximum" => (json!({"type": "integer", "maximum": bound}), json!(size), size > bound),
            "maxItems" => (json!({"type": "array", "maxItems": bound}), json!(vec![0; size as usize]), size > bound),
            "minItems" => (json!({"type": "array", "minItems": bound}), json!(vec![0; size as usize]), size < bound),
            "multipleOf" => (json!({"type": "integer", "multipleOf": bound}), json!(size), size % bound != 0),
            _ => (json!({"type": "integer", "enum": (0..bound).collect::<Vec<_>>()}), json!(size), size >= bound),
        };
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"x": schema}}}});
        let errors = enforce(&schema, &mut json!({"spec": {"x": value}})).errors;
        prop_assert_eq!(!errors.is_empty(), breaks, "{} {} against {}: {:?}", keyword, bound, size, errors);
        prop_assert!(errors.iter().all(|e| e.field == "spec.x"), "{:?}", errors);
    }
}
