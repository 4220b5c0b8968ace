//! Property tests of v1alpha1 weight quantities: no text panics the parser; what it accepts is
//! within the largest weight, passes the CRD schema's pattern and reads back the same from its
//! display; suffixes and decimals scale exactly; and a set of quantities rescales to integers that
//! keep every share exactly.

mod support;

use proptest::prelude::*;
use regex::Regex;
use shifter_crds::quantity::{MAX_LEN, MAX_WEIGHT, Nanos, PATTERN, QuantityError, parse_quantity, to_integer_weights};

const NANOS_PER_UNIT: u128 = 1_000_000_000;
const MAX_NANOS: u128 = MAX_WEIGHT as u128 * NANOS_PER_UNIT;

fn schema_admits(text: &str) -> bool {
    thread_local!(static RE: Regex = Regex::new(PATTERN).unwrap());
    text.chars().count() <= MAX_LEN && RE.with(|re| re.is_match(text))
}

/// Quantity-shaped text: sign, digit runs of any length, a point, a suffix or an exponent.
fn quantity_like() -> impl Strategy<Value = String> {
    let sign = prop::sample::select(vec!["", "", "", "+", "-"]);
    let int = prop_oneof![4 => "[0-9]{0,4}", 1 => "[0-9]{5,25}"];
    let frac = prop_oneof![3 => Just(None), 2 => "[0-9]{0,4}".prop_map(Some), 1 => "[0-9]{5,25}".prop_map(Some)];
    let suffix = prop_oneof![
        3 => prop::sample::select(vec!["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]).prop_map(str::to_string),
        1 => "[eE][+-]?[0-9]{0,4}",
        1 => prop::sample::select(vec!["x", "mi", "KI", " ", "%", "e+", "i"]).prop_map(str::to_string),
    ];
    (sign, int, frac, suffix).prop_map(|(sign, int, frac, suffix)| match frac {
        Some(f) => format!("{sign}{int}.{f}{suffix}"),
        None => format!("{sign}{int}{suffix}"),
    })
}

proptest! {
    #![proptest_config(support::cases())]

    #[test]
    fn any_text_is_parsed_or_rejected_without_panicking(text in any::<String>()) {
        match parse_quantity(&text) {
            Ok(n) => prop_assert!(n.0 <= MAX_NANOS && schema_admits(&text), "{text:?}"),
            Err(e) => prop_assert!(e.to_string().chars().count() < 250, "{e}"),
        }
    }

    #[test]
    fn quantity_shaped_text_within_the_schema_is_a_quantity_or_out_of_range(text in quantity_like()) {
        let parsed = parse_quantity(&text);
        if let Ok(n) = parsed {
            prop_assert!(n.0 <= MAX_NANOS && schema_admits(&text), "{text:?}");
            prop_assert_eq!(parse_quantity(&n.to_string()), Ok(n), "{} displays as {}", text, n);
        }
        if schema_admits(&text) {
            prop_assert!(
                matches!(parsed, Ok(_) | Err(QuantityError::TooLarge(_)) | Err(QuantityError::TooPrecise(_))),
                "{text:?}: {parsed:?}"
            );
        }
        if text.starts_with('-') {
            prop_assert!(parsed.is_err());
        }
    }

    #[test]
    fn every_weight_displays_and_parses_back(nanos in 0..=MAX_NANOS) {
        let text = Nanos(nanos).to_string();
        prop_assert!(schema_admits(&text), "{text}");
        prop_assert_eq!(parse_quantity(&text), Ok(Nanos(nanos)));
    }

    #[test]
    fn suffixes_and_decimal_points_scale_exactly(
        digits in "[0-9]{1,12}",
        point in 0usize..=12,
        (suffix, nanos_per) in prop::sample::select(vec![
            ("n", 1u128), ("u", 1_000), ("m", 1_000_000), ("", NANOS_PER_UNIT), ("k", 1_000 * NANOS_PER_UNIT),
            ("M", 1_000_000 * NANOS_PER_UNIT), ("G", NANOS_PER_UNIT * NANOS_PER_UNIT), ("Ki", 1_024 * NANOS_PER_UNIT),
            ("Mi", (1 << 20) * NANOS_PER_UNIT), ("e3", 1_000 * NANOS_PER_UNIT), ("e-3", 1_000_000),
        ]),
    ) {
        let point = point.min(digits.len());
        let text = format!("{}.{}{suffix}", &digits[..digits.len() - point], &digits[digits.len() - point..]);
        let scaled = digits.parse::<u128>().unwrap() * nanos_per;
        let divisor = 10u128.pow(point as u32);
        let expected = if scaled % divisor != 0 {
            Err("finer than 1n")
        } else if scaled / divisor > MAX_NANOS {
            Err("too large")
        } else {
            Ok(Nanos(scaled / divisor))
        };
        match (parse_quantity(&text), expected) {
            (Ok(n), Ok(e)) => prop_assert_eq!(n, e, "{}", text),
            (Err(QuantityError::TooPrecise(_)), Err("finer than 1n")) | (Err(QuantityError::TooLarge(_)), Err("too large")) => {}
            (got, want) => prop_assert!(false, "{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn a_set_rescales_to_integers_that_keep_every_share(values in prop::collection::vec(
        prop_oneof![0..=MAX_NANOS, (0..=MAX_WEIGHT).prop_map(|u| u128::from(u) * NANOS_PER_UNIT), 0..=1_000_000u128],
        1..8,
    )) {
        let nanos: Vec<Nanos> = values.iter().map(|v| Nanos(*v)).collect();
        match to_integer_weights(&nanos) {
            Ok(ints) => {
                prop_assert_eq!(ints.len(), values.len());
                for (i, (wi, qi)) in ints.iter().zip(&values).enumerate() {
                    prop_assert!(*wi <= MAX_WEIGHT);
                    for (wj, qj) in ints.iter().zip(&values).skip(i + 1) {
                        prop_assert_eq!(u128::from(*wi) * qj, u128::from(*wj) * qi, "shares of {:?} -> {:?}", values, ints);
                    }
                }
            }
            Err(QuantityError::Rescaled { index, weight, .. }) => {
                prop_assert!(index < values.len() && weight > u128::from(MAX_WEIGHT));
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
