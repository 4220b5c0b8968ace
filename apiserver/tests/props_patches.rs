//! Property tests of the three patch formats on arbitrary documents and patches: none of them
//! panics; a JSON patch is all or nothing and every rejection names the operation or its path; a
//! strategic merge patch's rejections name the directive or list element at fault; and
//! `$setElementOrder` orders a merged list as the directive says.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use shifter_apiserver::patch::{json_patch, merge_patch, strategic_merge};

mod support;

fn config() -> ProptestConfig {
    support::props_config()
}

/// Keys that patches of built-in kinds use, directives included, so merges actually meet.
const KEYS: [&str; 16] = [
    "a",
    "b",
    "spec",
    "metadata",
    "ports",
    "port",
    "name",
    "finalizers",
    "status",
    "conditions",
    "type",
    "$patch",
    "$retainKeys",
    "$setElementOrder/ports",
    "$deleteFromPrimitiveList/finalizers",
    "$setElementOrder/finalizers",
];

const WORDS: [&str; 8] = ["replace", "delete", "merge", "web", "a", "b", "ports", "x"];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..100).prop_map(Value::from),
        (-10.0f64..10.0).prop_map(|f| json!(f)),
        proptest::sample::select(&WORDS[..]).prop_map(Value::from),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(&KEYS[..]), inner), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    proptest::collection::vec((proptest::sample::select(&KEYS[..]), document()), 0..4)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

fn pointer() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            proptest::sample::select(&KEYS[..]).prop_map(str::to_string),
            (0usize..3).prop_map(|i| i.to_string()),
            Just("-".to_string())
        ],
        0..4,
    )
    .prop_map(|parts| parts.iter().map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1"))).collect())
}

fn operation() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(&["add", "remove", "replace", "move", "copy", "test", "bogus"][..]),
        pointer(),
        pointer(),
        prop_oneof![3 => leaf(), 1 => document()],
        0u8..8,
    )
        .prop_map(|(op, path, from, value, shape)| match shape {
            0 => json!({"op": op, "value": value}),
            1 => value,
            _ => json!({"op": op, "path": path, "from": from, "value": value}),
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn merge_patches_never_panic_and_applying_one_twice_changes_nothing_more(target in object(), patch in object()) {
        let mut once = target.clone();
        merge_patch(&mut once, &patch);
        let mut twice = once.clone();
        merge_patch(&mut twice, &patch);
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn json_patches_apply_all_or_nothing_and_rejections_name_the_operation(
        target in object(),
        ops in prop_oneof![proptest::collection::vec(operation(), 0..4).prop_map(Value::Array), document()],
    ) {
        let mut patched = target.clone();
        if let Err(e) = json_patch(&mut patched, &ops) {
            prop_assert_eq!(&patched, &target, "a failed patch changes nothing");
            let text = e.to_string();
            let named = text.contains("operation [") || text.contains("failed at path '") || text.contains("list of operations");
            prop_assert!(named, "{}", text);
        }
    }

    #[test]
    fn strategic_merge_patches_never_panic_and_rejections_name_the_directive(
        target in object(),
        patch in document(),
        kind in proptest::sample::select(&["Service", "ConfigMap", "Namespace"][..]),
    ) {
        let mut patched = target.clone();
        match strategic_merge(kind, &mut patched, &patch) {
            Ok(()) => prop_assert!(patched.is_object()),
            Err(e) => {
                // The message starts with the path of the fault, rooted at a key of the patch.
                let text = e.to_string();
                let path = text.strip_prefix("invalid strategic merge patch: ").and_then(|rest| rest.split(": ").next());
                let root = path.and_then(|p| p.split(['.', '[']).next()).unwrap_or_default();
                let named = text.contains("must be a JSON object") || patch.get(root).is_some();
                prop_assert!(named, "{}", text);
            }
        }
    }

    #[test]
    fn set_element_order_puts_listed_ports_in_order_and_keeps_the_rest(
        live in proptest::collection::btree_set(1u16..40, 0..8),
        order in proptest::collection::vec(1u16..40, 0..8),
        rename in any::<bool>(),
    ) {
        let live: Vec<u16> = live.into_iter().collect();
        let mut seen = BTreeSet::new();
        let order: Vec<u16> = order.into_iter().filter(|p| seen.insert(*p)).collect();
        // The patch sets the listed ports that are new (and, sometimes, renames the rest).
        let set: Vec<Value> = order
            .iter()
            .filter(|p| rename || !live.contains(p))
            .map(|p| json!({"port": p, "name": format!("p{p}")}))
            .collect();
        let mut svc = json!({"spec": {"ports": live.iter().map(|p| json!({"port": p})).collect::<Vec<_>>()}});
        let patch = json!({"spec": {"$setElementOrder/ports": order.iter().map(|p| json!({"port": p})).collect::<Vec<_>>(), "ports": set}});
        strategic_merge("Service", &mut svc, &patch).unwrap();
        let result: Vec<u16> = svc["spec"]["ports"].as_array().unwrap().iter().map(|p| p["port"].as_u64().unwrap() as u16).collect();
        let expected: BTreeSet<u16> = live.iter().chain(order.iter()).copied().collect();
        prop_assert_eq!(result.len(), expected.len(), "no port twice");
        prop_assert_eq!(result.iter().copied().collect::<BTreeSet<_>>(), expected, "every port kept or added");
        let listed: Vec<u16> = result.iter().copied().filter(|p| order.contains(p)).collect();
        prop_assert_eq!(&listed, &order, "listed ports in the listed order");
        let server_only: Vec<u16> = result.iter().copied().filter(|p| !order.contains(p)).collect();
        let live_only: Vec<u16> = live.iter().copied().filter(|p| !order.contains(p)).collect();
        prop_assert_eq!(server_only, live_only, "the others in their live order");
    }
}
