//! Property tests of TrafficSplit normalisation at every SMI version: no object, however odd,
//! panics it; every problem names a field of the object it was given; what is accepted has weights
//! within bounds that keep the shares the user wrote exactly; and a v1alpha1 split converts to the
//! stored version and back unchanged.

mod support;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use shifter_crds::convert::convert;
use shifter_crds::normalise::SplitErrorKind;
use shifter_crds::quantity::{MAX_WEIGHT, parse_quantity};
use shifter_crds::traffic_split::{MAX_BACKENDS, VERSIONS};

/// A weight as a user might write one at any version: integers of every size, quantities,
/// floats, and values of the wrong type.
fn weight() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0..=100u64).prop_map(Value::from),
        2 => (0..=MAX_WEIGHT + 10).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => (-1e12..1e12f64).prop_map(Value::from),
        3 => "[0-9]{1,4}(\\.[0-9]{1,3})?(m|u|n|k|Ki|M|G|e[0-9])?".prop_map(Value::from),
        1 => "[-+]?[0-9.]{0,25}[a-zA-Z]{0,2}".prop_map(Value::from),
        1 => support::any_json(),
    ]
}

fn backend() -> impl Strategy<Value = Value> {
    let service = prop_oneof![16 => "web-v[0-9]", 2 => Just(String::new()), 1 => ".{0,12}", 1 => "[a-z]{250,256}"];
    (service, prop::option::weighted(0.95, weight())).prop_map(|(service, weight)| {
        let mut b = Map::new();
        b.insert("service".into(), Value::from(service));
        if let Some(w) = weight {
            b.insert("weight".into(), w);
        }
        Value::Object(b)
    })
}

/// A TrafficSplit-shaped object: a (usually) served version, a service, backends, maybe matches.
fn split_like() -> impl Strategy<Value = Value> {
    let version = prop_oneof![
        9 => prop::sample::select(VERSIONS.to_vec()).prop_map(|v| format!("split.smi-spec.io/{v}")),
        1 => ".{0,20}",
    ];
    let too_many = (MAX_BACKENDS - 2..MAX_BACKENDS + 5)
        .prop_map(|n| (0..n).map(|i| json!({"service": format!("b{i}"), "weight": 1})).collect());
    let backends = prop_oneof![20 => prop::collection::vec(backend(), 0..6), 1 => too_many];
    let matches = prop::option::weighted(
        0.3,
        prop::collection::vec(
            (prop_oneof![Just("HTTPRouteGroup".to_string()), ".{0,8}"], "[a-z]{0,6}")
                .prop_map(|(k, n)| json!({"kind": k, "name": n})),
            0..4,
        ),
    );
    (version, prop_oneof![18 => Just("web".to_string()), 1 => ".{0,12}", 1 => "[a-z]{250,256}"], backends, matches)
        .prop_map(|(version, service, backends, matches)| {
            let mut spec = json!({"service": service, "backends": backends});
            if let Some(m) = matches {
                spec["matches"] = Value::Array(m);
            }
            json!({"apiVersion": version, "kind": "TrafficSplit", "metadata": {"name": "web"}, "spec": spec})
        })
}

/// The exact value a weight was written as, in nanos, when it is an acceptable one.
fn written_nanos(obj: &Value, weight: &Value) -> Option<u128> {
    if obj["apiVersion"] == "split.smi-spec.io/v1alpha1" {
        let text = match weight {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        parse_quantity(&text).ok().map(|n| n.0)
    } else {
        weight.as_u64().map(|w| u128::from(w) * 1_000_000_000)
    }
}

/// Whether `field` is a path into `obj` that the normaliser may name.
fn names_a_field_of(obj: &Value, field: &str) -> bool {
    let backends = obj["spec"]["backends"].as_array().map_or(0, Vec::len);
    let matches = obj["spec"]["matches"].as_array().map_or(0, Vec::len);
    let index =
        |prefix: &str| field.strip_prefix(prefix).and_then(|rest| rest.split(']').next()?.parse::<usize>().ok());
    match field {
        "apiVersion" | "spec.service" | "spec.backends" | "spec.matches" => true,
        f if f.starts_with("spec.backends[") => index("spec.backends[").is_some_and(|i| i < backends.min(MAX_BACKENDS)),
        f if f.starts_with("spec.matches[") => index("spec.matches[").is_some_and(|i| i < matches),
        _ => false,
    }
}

proptest! {
    #![proptest_config(support::cases())]

    #[test]
    fn any_json_is_normalised_or_rejected_naming_its_fields(obj in support::any_json(), version in prop::sample::select(VERSIONS.to_vec())) {
        let mut obj = obj;
        if let Value::Object(map) = &mut obj {
            map.insert("apiVersion".into(), Value::from(format!("split.smi-spec.io/{version}")));
        }
        if let Err(errors) = shifter_crds::normalise(&obj) {
            for e in &errors.0 {
                prop_assert!(names_a_field_of(&obj, &e.field), "{e}");
                let prefix = format!("{}: ", e.field);
                prop_assert!(e.to_string().starts_with(&prefix), "{e}");
            }
        }
    }

    #[test]
    fn split_shaped_objects_keep_exact_shares_or_name_each_bad_field(obj in split_like()) {
        match shifter_crds::normalise(&obj) {
            Ok(split) => {
                let written: Vec<u128> = obj["spec"]["backends"].as_array().unwrap().iter()
                    .map(|b| written_nanos(&obj, &b["weight"]).expect("accepted weights were valid"))
                    .collect();
                prop_assert_eq!(split.backends.len(), written.len());
                let total: f64 = split.backends.iter().map(|b| b.percent).sum();
                prop_assert!((total - 100.0).abs() < 1e-6, "{total}");
                for (i, (a, qa)) in split.backends.iter().zip(&written).enumerate() {
                    prop_assert!(a.weight <= MAX_WEIGHT);
                    for (b, qb) in split.backends.iter().zip(&written).skip(i + 1) {
                        prop_assert_eq!(u128::from(a.weight) * qb, u128::from(b.weight) * qa);
                    }
                }
            }
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    prop_assert!(names_a_field_of(&obj, &e.field), "{e}");
                    prop_assert!(e.message.chars().count() < 300, "{e}");
                }
                // Every backend whose weight is unacceptable on its own is named.
                for (i, b) in obj["spec"]["backends"].as_array().unwrap().iter().enumerate().take(MAX_BACKENDS) {
                    if obj["apiVersion"].as_str().is_some_and(|v| v.starts_with("split.smi-spec.io/"))
                        && written_nanos(&obj, &b["weight"]).is_none_or(|n| n > u128::from(MAX_WEIGHT) * 1_000_000_000)
                    {
                        let field = format!("spec.backends[{i}].weight");
                        prop_assert!(errors.0.iter().any(|e| e.field == field), "{field} not named: {errors}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_valid_v1alpha1_split_converts_to_the_stored_version_and_back_unchanged(
        weights in prop::collection::vec(prop_oneof![
            (0..=1_000u64).prop_map(|w| Value::from(w.to_string())),
            (1..=999u64).prop_map(|w| Value::from(format!("{w}m"))),
            (0..=100u64).prop_map(Value::from),
            Just(Value::from("1k")),
            Just(Value::from("0.25")),
        ], 1..6),
    ) {
        let backends: Vec<(String, Value)> = weights.into_iter().enumerate().map(|(i, w)| (format!("web-v{i}"), w)).collect();
        let refs: Vec<(&str, Value)> = backends.iter().map(|(s, w)| (s.as_str(), w.clone())).collect();
        let obj = support::mk_split("v1alpha1", &refs);
        let original = shifter_crds::normalise(&obj);
        let stored = convert(obj.clone(), "split.smi-spec.io/v1alpha4");
        match (&original, stored) {
            (Ok(split), Ok(stored)) => {
                let again = convert(stored.clone(), "split.smi-spec.io/v1alpha1").unwrap();
                prop_assert_eq!(&again, &obj);
                let stored_split = shifter_crds::normalise(&stored).unwrap();
                let weights = |s: &shifter_crds::NormalisedSplit| s.backends.iter().map(|b| b.weight).collect::<Vec<_>>();
                prop_assert_eq!(weights(&stored_split), weights(split));
            }
            (Err(errors), _) => prop_assert!(errors.kinds() == vec![SplitErrorKind::AllWeightsZero], "{errors}"),
            (Ok(_), Err(e)) => prop_assert!(false, "valid split failed to convert: {e}"),
        }
    }
}
