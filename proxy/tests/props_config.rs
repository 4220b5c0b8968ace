//! Property tests of the static configuration file (`shifter proxy --config FILE`): whatever text
//! the file holds, parsing never panics; a config that breaks one field is rejected with a message
//! naming that field; and a config that is accepted keeps its weights and ports exactly, within
//! their bounds.

use proptest::prelude::*;
use serde_json::{Value, json};
use shifter_crds::quantity::MAX_WEIGHT;
use shifter_proxy::{ConfigError, StaticConfig};

/// Every property runs this many cases in a plain `cargo test`.
fn cases() -> ProptestConfig {
    ProptestConfig::with_cases(10_000)
}

/// Pieces of YAML that the configuration's grammar is made of, plus its usual troublemakers
/// (anchors, tags, flow collections, huge and negative numbers, odd indentation).
fn yaml_piece() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "authorities:",
        "- authority: ",
        "routes:",
        "- name: ",
        "matches:",
        "- path_regex: ",
        "methods: ",
        "headers: ",
        "backends:",
        "- service: ",
        "weight: ",
        "port: ",
        "endpoints: ",
        "namespace: ",
        "version: ",
        "exists: ",
        "split: ",
        "\n",
        "\n  ",
        "\n    ",
        "\n      ",
        "  ",
        "- ",
        "{",
        "}",
        "[",
        "]",
        ", ",
        ": ",
        "&a ",
        "*a",
        "!!str ",
        "!!binary ",
        "~",
        "null",
        "true",
        "'",
        "\"",
        "#",
        "|\n",
        ">-\n",
        "---\n",
        "...\n",
        "<<: ",
        "18446744073709551616",
        "-1",
        "1e400",
        "0x10",
        ".nan",
        "1000000001",
        "65536",
        "web.shop:80",
        "[::1]:8080",
        "127.0.0.1:8081",
        "(",
        "*",
        "\t",
    ])
    .prop_map(str::to_string);
    prop_oneof![4 => fixed, 1 => "[a-z0-9:.]{1,8}", 1 => any::<u64>().prop_map(|n| n.to_string())]
}

fn yaml_like() -> impl Strategy<Value = String> {
    prop::collection::vec(yaml_piece(), 0..40).prop_map(|pieces| pieces.concat())
}

fn backend() -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,6}",
        0..=MAX_WEIGHT,
        prop_oneof![Just(0u32), 1..=65535u32],
        prop::collection::vec((1u8..=254, 1..=65535u16), 0..2),
    )
        .prop_map(|(service, weight, port, endpoints)| {
            let endpoints: Vec<String> = endpoints.iter().map(|(h, p)| format!("127.0.0.{h}:{p}")).collect();
            json!({"service": service, "weight": weight, "port": port, "endpoints": endpoints})
        })
}

fn route() -> impl Strategy<Value = Value> {
    ("[a-z]{0,6}", prop::collection::vec(backend(), 0..3), prop::option::of("/[a-z]{0,5}")).prop_map(
        |(name, backends, path)| {
            let matches: Vec<Value> = path.into_iter().map(|p| json!({"path_regex": p, "methods": ["GET"]})).collect();
            json!({"name": name, "matches": matches, "backends": backends})
        },
    )
}

/// A valid configuration: distinct authorities, weights and ports within bounds.
fn valid_config() -> impl Strategy<Value = Value> {
    prop::collection::vec((1..=65535u16, prop::collection::vec(route(), 0..3)), 1..3).prop_map(|authorities| {
        let list: Vec<Value> = authorities
            .into_iter()
            .enumerate()
            .map(|(i, (port, routes))| json!({"authority": format!("svc{i}.shop.svc.cluster.local:{port}"), "routes": routes}))
            .collect();
        json!({"authorities": list})
    })
}

/// One way to break one field, and where.
#[derive(Debug, Clone)]
enum Break {
    Weight(Value),
    Port(Value),
    Authority(String),
    UnknownBackendField,
}

fn a_break() -> impl Strategy<Value = Break> {
    prop_oneof![
        (MAX_WEIGHT + 1..=u64::MAX).prop_map(|w| Break::Weight(json!(w))),
        (i64::MIN..0).prop_map(|w| Break::Weight(json!(w))),
        Just(Break::Weight(json!("ninety"))),
        Just(Break::Weight(json!(1.5))),
        (65536..=u64::MAX).prop_map(|p| Break::Port(json!(p))),
        (i64::MIN..0).prop_map(|p| Break::Port(json!(p))),
        prop_oneof![Just("".to_string()), Just("web:0".to_string()), (65536u64..).prop_map(|p| format!("web:{p}"))]
            .prop_map(Break::Authority),
        Just(Break::UnknownBackendField),
    ]
}

fn yaml(doc: &Value) -> String {
    serde_yaml::to_string(doc).expect("JSON values serialise as YAML")
}

/// Asserts what holds for every accepted configuration.
fn check_accepted(config: &StaticConfig) -> Result<(), TestCaseError> {
    let mut seen = Vec::new();
    for s in &config.snapshots {
        prop_assert!(!seen.contains(&s.authority), "authority {} twice", s.authority);
        seen.push(s.authority.clone());
        prop_assert!((1..=65535).contains(&s.port), "{}: port {}", s.authority, s.port);
        for b in s.routes.iter().flat_map(|r| &r.backends) {
            prop_assert!(b.weight <= MAX_WEIGHT && b.port <= 65535, "{b:?}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_text_is_parsed_or_rejected_without_panicking(text in any::<String>()) {
        if let Ok(config) = StaticConfig::from_yaml(&text, "fuzz.yaml") {
            check_accepted(&config)?;
        }
    }

    #[test]
    fn yaml_made_of_the_configs_own_pieces_is_parsed_or_rejected_with_the_file_named(text in yaml_like()) {
        match StaticConfig::from_yaml(&text, "fuzz.yaml") {
            Ok(config) => check_accepted(&config)?,
            Err(e @ ConfigError::Parse { .. }) => prop_assert!(e.to_string().starts_with("parsing fuzz.yaml: "), "{e}"),
            Err(ConfigError::Duplicate(authority)) => prop_assert!(!authority.is_empty()),
            Err(e) => prop_assert!(false, "unexpected error kind: {e}"),
        }
    }

    #[test]
    fn a_valid_config_is_accepted_with_its_weights_and_ports_unchanged(doc in valid_config()) {
        let config = StaticConfig::from_yaml(&yaml(&doc), "valid.yaml").map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_accepted(&config)?;
        for (a, snapshot) in doc["authorities"].as_array().unwrap().iter().zip(&config.snapshots) {
            let written: Vec<(u64, u64)> = a["routes"].as_array().unwrap().iter()
                .flat_map(|r| r["backends"].as_array().unwrap())
                .map(|b| (b["weight"].as_u64().unwrap(), b["port"].as_u64().unwrap()))
                .collect();
            let read: Vec<(u64, u64)> =
                snapshot.routes.iter().flat_map(|r| &r.backends).map(|b| (b.weight, u64::from(b.port))).collect();
            prop_assert_eq!(written, read);
        }
    }

    #[test]
    fn a_config_with_one_broken_field_is_rejected_naming_that_field(
        mut doc in valid_config(),
        broken in a_break(),
        pick in any::<prop::sample::Index>(),
    ) {
        let authorities = doc["authorities"].as_array_mut().unwrap();
        let a = pick.index(authorities.len());
        let field = match &broken {
            Break::Authority(text) => {
                authorities[a]["authority"] = json!(text);
                format!("authorities[{a}].authority")
            }
            _ => {
                // Break a backend; give the authority one when it has none.
                let routes = authorities[a]["routes"].as_array_mut().unwrap();
                if routes.is_empty() {
                    routes.push(json!({"name": "", "backends": []}));
                }
                let r = pick.index(routes.len());
                let backends = routes[r]["backends"].as_array_mut().unwrap();
                if backends.is_empty() {
                    backends.push(json!({"service": "web", "weight": 1}));
                }
                let b = pick.index(backends.len());
                let at = format!("authorities[{a}].routes[{r}].backends[{b}]");
                match &broken {
                    Break::Weight(w) => { backends[b]["weight"] = w.clone(); format!("{at}.weight") }
                    Break::Port(p) => { backends[b]["port"] = p.clone(); format!("{at}.port") }
                    _ => { backends[b]["wieght"] = json!(1); at }
                }
            }
        };
        let text = yaml(&doc);
        let error = StaticConfig::from_yaml(&text, "broken.yaml").err();
        prop_assert!(error.is_some(), "accepted {broken:?}:\n{text}");
        let message = error.unwrap().to_string();
        prop_assert!(message.contains(&format!("{field}: ")), "{broken:?}: {message}");
    }
}

#[test]
fn a_duplicate_authority_names_the_authority() {
    let text = "authorities: [{authority: 'web.shop:80'}, {authority: WEB.shop}]";
    let message = StaticConfig::from_yaml(text, "t").err().unwrap().to_string();
    assert!(message.contains("\"web.shop:80\" is listed twice"), "{message}");
}
