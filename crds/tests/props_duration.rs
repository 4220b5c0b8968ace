//! Property tests of shifter's one duration parser: no text panics it; what it accepts is exact,
//! within the maximum, formats back to the same value and passes the CRD schema's pattern; what
//! the schema's pattern admits is never a syntax error; and a field's range names its bounds.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use regex::Regex;
use shifter_crds::duration::{
    DurationError, DurationRange, MAX, MAX_DIGITS, MAX_LEN, PATTERN, format_duration, parse_duration,
};

fn schema_admits(text: &str) -> bool {
    thread_local!(static RE: Regex = Regex::new(PATTERN).unwrap());
    text.chars().count() <= MAX_LEN && RE.with(|re| re.is_match(text))
}

/// One `<number><unit>` term, right or subtly wrong: long digit runs, missing or odd units.
fn term() -> impl Strategy<Value = (String, String, String)> {
    let digits = prop_oneof![4 => "[0-9]{1,4}", 1 => "[0-9]{5,12}", 1 => "0{0,12}[1-9][0-9]{0,3}"];
    let frac = prop_oneof![3 => Just(String::new()), 2 => "[0-9]{1,3}", 1 => "[0-9]{4,11}"];
    let unit = prop_oneof![
        8 => prop::sample::select(vec!["ms", "s", "m", "h"]),
        1 => prop::sample::select(vec!["", "us", "µs", "ns", "d", "H", "sec", " s", "mss"]),
    ];
    (digits, frac, unit.prop_map(str::to_string))
}

fn text_of(terms: &[(String, String, String)]) -> String {
    terms
        .iter()
        .map(|(int, frac, unit)| if frac.is_empty() { format!("{int}{unit}") } else { format!("{int}.{frac}{unit}") })
        .collect()
}

/// The value `terms` stand for in milliseconds, worked out with u128 and exact fractions;
/// `None` when a term is not a whole number of milliseconds or a unit is not accepted.
fn model_ms(terms: &[(String, String, String)]) -> Option<u128> {
    let mut total = 0u128;
    for (int, frac, unit) in terms {
        let unit_ms: u128 = match unit.as_str() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        let scale = 10u128.pow(frac.len() as u32);
        let int: u128 = int.parse().ok()?;
        let frac: u128 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
        let numerator = (int * scale + frac).checked_mul(unit_ms)?;
        if numerator % scale != 0 {
            return None;
        }
        total = total.checked_add(numerator / scale)?;
    }
    Some(total)
}

proptest! {
    #![proptest_config(support::cases())]

    #[test]
    fn any_text_is_parsed_or_rejected_without_panicking(text in any::<String>()) {
        match parse_duration(&text) {
            Ok(d) => {
                prop_assert!(d <= MAX);
                prop_assert!(schema_admits(&text), "{text:?} parsed but the schema would reject it");
            }
            Err(e) => prop_assert!(e.to_string().chars().count() < 200, "{e}"),
        }
    }

    #[test]
    fn near_grammar_text_parses_to_the_exact_value_or_says_why_not(
        terms in prop::collection::vec(term(), 1..5),
        junk in prop::option::weighted(0.1, ("[ +\\-.a-z]", any::<prop::sample::Index>())),
    ) {
        let mut text = text_of(&terms);
        if let Some((c, at)) = &junk {
            let at = text.char_indices().map(|(i, _)| i).nth(at.index(text.chars().count())).unwrap_or(0);
            text.insert_str(at, c);
        }
        let parsed = parse_duration(&text);
        if let Ok(d) = &parsed {
            prop_assert!(*d <= MAX && schema_admits(&text), "{text:?}");
            prop_assert_eq!(parse_duration(&format_duration(*d)), Ok(*d));
        }
        // An empty unit runs a number into the next term's, so the model judges only texts
        // whose terms stay apart; a text ending in a digit always lacks its unit.
        let apart = terms.iter().all(|(_, _, unit)| !unit.is_empty());
        if terms.last().is_some_and(|(_, _, unit)| unit.is_empty()) && text.chars().count() <= MAX_LEN && junk.is_none() {
            prop_assert!(parsed.is_err(), "{text:?}: {parsed:?}");
        }
        if apart && junk.is_none() && text.chars().count() <= MAX_LEN {
            let digits_ok = terms.iter().all(|(i, f, _)| i.len() <= MAX_DIGITS && f.len() <= MAX_DIGITS);
            match model_ms(&terms) {
                Some(ms) if digits_ok && ms <= MAX.as_millis() => {
                    prop_assert_eq!(&parsed, &Ok(Duration::from_millis(ms as u64)), "{}", text);
                }
                Some(ms) if ms > MAX.as_millis() => {
                    prop_assert!(matches!(parsed, Err(DurationError::TooLarge(_)) | Err(DurationError::Syntax { .. })), "{text:?}: {parsed:?}");
                }
                _ => prop_assert!(parsed.is_err(), "{text:?} should be rejected"),
            }
        }
        if schema_admits(&text) {
            // What the schema lets through is a duration; only its size or precision can be wrong.
            prop_assert!(
                matches!(parsed, Ok(_) | Err(DurationError::TooLarge(_)) | Err(DurationError::TooPrecise(_))),
                "{text:?}: {parsed:?}"
            );
        }
    }

    #[test]
    fn every_duration_up_to_the_maximum_formats_and_parses_back(ms in 0..=MAX.as_millis() as u64) {
        let d = Duration::from_millis(ms);
        let text = format_duration(d);
        prop_assert!(schema_admits(&text), "{text}");
        prop_assert_eq!(parse_duration(&text), Ok(d));
    }

    #[test]
    fn a_range_accepts_exactly_its_bounds_and_names_them_otherwise(
        a in 0..=MAX.as_millis() as u64,
        b in 0..=MAX.as_millis() as u64,
        ms in prop_oneof![0..=MAX.as_millis() as u64, Just(u64::MAX / 2)],
    ) {
        let range = DurationRange::new(Duration::from_millis(a.min(b)), Duration::from_millis(a.max(b)));
        let text = if ms > MAX.as_millis() as u64 { format!("{ms}ms") } else { format_duration(Duration::from_millis(ms)) };
        match range.parse(&text) {
            Ok(d) => prop_assert!(range.contains(d) && d == Duration::from_millis(ms)),
            Err(e) => {
                prop_assert!(ms > MAX.as_millis() as u64 || !range.contains(Duration::from_millis(ms)));
                let message = format!("spec.analysis.interval: {e}");
                prop_assert!(message.starts_with("spec.analysis.interval: must be "), "{message}");
                prop_assert!(message.contains(&format_duration(range.max)), "{message}");
            }
        }
    }
}
