//! Property tests of what clients type into query strings: label and field selectors and every
//! query parameter a verb reads. Whatever the input, parsing never panics, and every rejection
//! names the parameter; selectors that parse mean what they say.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use shifter_apiserver::params::{self, Query, Verb};
use shifter_apiserver::patch::PatchType;
use shifter_apiserver::selectors::Selector;

mod support;

fn config() -> ProptestConfig {
    support::props_config()
}

/// Any text, from any characters (cheaper to generate than a regex strategy).
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// Text from `alphabet` only.
fn text_of(alphabet: &'static str, min: usize, max: usize) -> impl Strategy<Value = String> {
    let chars: Vec<char> = alphabet.chars().collect();
    proptest::collection::vec(proptest::sample::select(chars), min..max).prop_map(String::from_iter)
}

/// Text that looks like selectors often enough to reach every branch of the parser.
fn selector_text() -> impl Strategy<Value = String> {
    const TOKENS: [&str; 19] = [
        "app",
        "tier",
        "x.io/name",
        "a-b_c.d",
        "web",
        "-bad",
        "=",
        "==",
        "!=",
        "!",
        ",",
        " in ",
        " notin ",
        "(",
        ")",
        ">",
        "<",
        "\\",
        " ",
    ];
    prop_oneof![
        text(24),
        proptest::collection::vec(proptest::sample::select(&TOKENS[..]), 0..12).prop_map(|parts| parts.concat()),
    ]
}

fn label_word() -> impl Strategy<Value = String> {
    (text_of("abcxyz019", 1, 2), text_of("abc09._-", 0, 10), text_of("abz9", 0, 2))
        .prop_map(|(a, b, c)| if c.is_empty() { a } else { format!("{a}{b}{c}") })
}

const PARAMETERS: [&str; 20] = [
    "limit",
    "timeoutSeconds",
    "resourceVersion",
    "resourceVersionMatch",
    "watch",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "gracePeriodSeconds",
    "propagationPolicy",
    "orphanDependents",
    "fieldManager",
    "force",
    "dryRun",
    "fieldValidation",
    "labelSelector",
    "fieldSelector",
    "includeObject",
    "timeout",
    "continue",
    "pretty",
];

const VERBS: [Verb; 10] = [
    Verb::Get,
    Verb::List,
    Verb::Watch,
    Verb::Create,
    Verb::Update,
    Verb::Patch(PatchType::Merge),
    Verb::Patch(PatchType::Apply),
    Verb::Patch(PatchType::Strategic),
    Verb::Delete,
    Verb::DeleteCollection,
];

fn pod(labels: &[(String, String)]) -> Value {
    let labels: Map<String, Value> = labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({"metadata": {"name": "web", "labels": labels}})
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_label_selector_parses_or_is_rejected_naming_label_selector(text in selector_text()) {
        if let Err(e) = Selector::parse(Some(&text), None) {
            prop_assert!(e.to_string().starts_with("labelSelector: "), "{}", e);
        }
    }

    #[test]
    fn any_field_selector_parses_or_is_rejected_naming_field_selector(text in selector_text()) {
        match Selector::parse(None, Some(&text)) {
            Err(e) => prop_assert!(e.to_string().starts_with("fieldSelector: "), "{}", e),
            Ok(selector) => { selector.matches(&json!({"metadata": {"name": text}})); }
        }
    }

    #[test]
    fn label_selectors_mean_what_they_say(
        key in label_word(),
        value in label_word(),
        other in label_word(),
    ) {
        let labelled = pod(&[(key.clone(), value.clone())]);
        let bare = pod(&[]);
        let on = |selector: String, obj: &Value| Selector::parse(Some(&selector), None).unwrap().matches(obj);
        let equals = on(format!("{key}={value}"), &labelled) && on(format!("{key}=={value}"), &labelled);
        let not_equals = on(format!("{key}!={value}"), &labelled);
        let within = on(format!("{key} in ({other}, {value})"), &labelled);
        let not_within = on(format!("{key} notin ({value})"), &labelled);
        let exists = on(key.clone(), &labelled) && !on(key.clone(), &bare);
        let absent = on(format!("!{key}"), &bare) && !on(format!("!{key}"), &labelled);
        let other_value = on(format!("{key}={other}"), &labelled);
        prop_assert!(equals && !not_equals && within && !not_within && exists && absent);
        prop_assert_eq!(other_value, other == value);
    }

    #[test]
    fn escaped_field_selector_values_match_exactly(name in text_of("ab,=\\\\", 0, 16)) {
        let escaped = name.replace('\\', "\\\\").replace(',', "\\,").replace('=', "\\=");
        let selector = Selector::parse(None, Some(&format!("metadata.name={escaped}"))).unwrap();
        let exact = selector.matches(&json!({"metadata": {"name": name}}));
        let longer = selector.matches(&json!({"metadata": {"name": format!("{name}x")}}));
        prop_assert!(exact && !longer);
    }

    #[test]
    fn any_query_string_is_accepted_or_rejected_naming_a_parameter(
        pairs in proptest::collection::vec((
            proptest::sample::select(&PARAMETERS[..]),
            prop_oneof![text(8), text_of("09aZ=-", 0, 6), Just("true".to_string()), Just("All".to_string())],
        ), 0..5),
        verb in proptest::sample::select(&VERBS[..]),
    ) {
        let query = Query(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
        if let Err(e) = params::check(&query, verb) {
            let text = e.to_string();
            let named = pairs.iter().any(|(k, _)| text.contains(k)) || text.contains("fieldManager is required");
            prop_assert!(named, "{:?} {:?}: {}", verb, pairs, text);
        }
    }
}
