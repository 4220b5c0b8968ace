//! Kubernetes quantities (`"500m"`, `"90"`, `1`, `"1Ki"`, `"2e3"`) as used by SMI v1alpha1 weights.
//!
//! Quantities are parsed exactly (no floating point) into nano-units so that a set of weights can be
//! rescaled to the smallest common integer form without changing the shares they express.

use std::fmt;

use crate::duration::shown;

/// The largest weight: a quantity may be at most 1G, and a set of quantities rescaled to integers
/// ([`to_integer_weights`]) must stay at most this. It fits a signed 32-bit integer, so any SMI
/// client can hold it, and a sum of many of them cannot overflow a u64.
pub const MAX_WEIGHT: u64 = 1_000_000_000;

/// Longest accepted quantity text, in characters.
pub const MAX_LEN: usize = 32;

/// Most digits on either side of a quantity's decimal point.
pub const MAX_DIGITS: usize = 19;

/// The quantities [`parse_quantity`] reads, as a regular expression for the CRD schema, valid for
/// Go's RE2 and Rust's `regex` alike. Unlike Kubernetes' own quantity pattern it has no minus sign
/// (weights are never negative) and bounds every digit run, so a schema alone rejects absurd text.
pub const PATTERN: &str =
    r"^\+?([0-9]{1,19}(\.[0-9]{0,19})?|\.[0-9]{1,19})([numkMGTPE]|[KMGTPE]i|[eE][+-]?[0-9]{1,2})?$";

/// Why a string is not an acceptable quantity weight.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "{shown} is not a Kubernetes quantity (expected a number with an optional suffix, e.g. \"90\", \"500m\", \"1k\")", shown = shown(.0)
    )]
    Syntax(String),
    #[error("{shown} is {len} characters long; a quantity has at most {MAX_LEN}", shown = shown(.0), len = .1)]
    TooLong(String, usize),
    #[error("{shown} has more than {MAX_DIGITS} digits on one side of its point", shown = shown(.0))]
    TooManyDigits(String),
    #[error("{shown} is negative; weights must be zero or more", shown = shown(.0))]
    Negative(String),
    #[error("{shown} is finer than one nano-unit (1n)", shown = shown(.0))]
    TooPrecise(String),
    #[error("{shown} is above the largest weight, 1G ({MAX_WEIGHT}); weights are relative, so scale them all down", shown = shown(.0))]
    TooLarge(String),
    /// `to_integer_weights`: weight `index` exceeds [`MAX_WEIGHT`] at the scale the set needs.
    #[error(
        "{value} is {weight} counted in {scale}, the unit the finest weight needs, which is above the largest weight {MAX_WEIGHT}; write the weights with fewer decimal places"
    )]
    Rescaled { index: usize, value: Nanos, weight: u128, scale: &'static str },
}

/// A non-negative quantity held exactly as a count of nano-units (10^-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nanos(pub u128);

const NANO_DIGITS: i32 = 9;
const NANOS_PER_UNIT: u128 = 1_000_000_000;

/// Parses a quantity string into nano-units, up to [`MAX_WEIGHT`] units, with checked integer
/// arithmetic only. The text must match [`PATTERN`] (so no sign but `+`, no spaces).
pub fn parse_quantity(raw: &str) -> Result<Nanos, QuantityError> {
    let len = raw.chars().count();
    if len > MAX_LEN {
        return Err(QuantityError::TooLong(raw.to_string(), len));
    }
    let syntax = || QuantityError::Syntax(raw.to_string());
    let (negative, body) = match raw.as_bytes().first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    // Split the number from its suffix: digits and at most one '.'.
    let number_len = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(syntax());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.len() > MAX_DIGITS || frac_part.len() > MAX_DIGITS {
        return Err(QuantityError::TooManyDigits(raw.to_string()));
    }
    // At most 38 digits: always below u128::MAX (about 3.4 × 10^38).
    let mantissa = int_part.bytes().chain(frac_part.bytes()).fold(0u128, |m, d| m * 10 + u128::from(d - b'0'));
    let mut dec_exp: i32 = -(frac_part.len() as i32);
    let mut bin_exp: u32 = 0;
    match suffix {
        "" => {}
        "n" => dec_exp -= 9,
        "u" => dec_exp -= 6,
        "m" => dec_exp -= 3,
        "k" => dec_exp += 3,
        "M" => dec_exp += 6,
        "G" => dec_exp += 9,
        "T" => dec_exp += 12,
        "P" => dec_exp += 15,
        "E" => dec_exp += 18,
        "Ki" => bin_exp = 10,
        "Mi" => bin_exp = 20,
        "Gi" => bin_exp = 30,
        "Ti" => bin_exp = 40,
        "Pi" => bin_exp = 50,
        "Ei" => bin_exp = 60,
        other if other.starts_with(['e', 'E']) => dec_exp += exponent(&other[1..]).ok_or_else(syntax)?,
        _ => return Err(syntax()),
    }
    if negative {
        return Err(QuantityError::Negative(raw.to_string()));
    }
    if mantissa == 0 {
        return Ok(Nanos(0));
    }
    let too_large = || QuantityError::TooLarge(raw.to_string());
    let mut value = mantissa.checked_mul(1u128 << bin_exp).ok_or_else(too_large)?;
    let shift = dec_exp + NANO_DIGITS;
    if shift >= 0 {
        let factor = 10u128.checked_pow(shift.unsigned_abs()).ok_or_else(too_large)?;
        value = value.checked_mul(factor).ok_or_else(too_large)?;
    } else {
        // A divisor beyond u128 exceeds any non-zero value, which is then finer than 1n.
        let divisor = 10u128.checked_pow(shift.unsigned_abs());
        match divisor {
            Some(d) if value % d == 0 => value /= d,
            _ => return Err(QuantityError::TooPrecise(raw.to_string())),
        }
    }
    if value > u128::from(MAX_WEIGHT) * NANOS_PER_UNIT {
        return Err(too_large());
    }
    Ok(Nanos(value))
}

/// A decimal exponent of one or two digits with an optional sign, e.g. `3`, `-2`, `+12`.
fn exponent(text: &str) -> Option<i32> {
    let (sign, digits) = match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    };
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(sign * digits.bytes().fold(0i32, |n, d| n * 10 + i32::from(d - b'0')))
}

/// Rescales a set of quantities to the smallest power-of-1000 multiple that makes every one an
/// integer, each at most [`MAX_WEIGHT`].
///
/// `["500m", "1"]` becomes `[500, 1000]`; `["90", "10"]` stays `[90, 10]`. Shares are unchanged.
pub fn to_integer_weights(values: &[Nanos]) -> Result<Vec<u64>, QuantityError> {
    // 10^9 nanos = 1 unit. Try unit, milli, micro, nano scales in turn; nano always fits.
    let scales = [(9u32, "whole units"), (6, "thousandths (m)"), (3, "millionths (u)"), (0, "billionths (n)")];
    let (divisor, scale) = scales
        .iter()
        .map(|&(digits, name)| (10u128.pow(digits), name))
        .find(|(div, _)| values.iter().all(|v| v.0 % div == 0))
        .unwrap_or((1, "billionths (n)"));
    values
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let weight = v.0 / divisor;
            u64::try_from(weight).ok().filter(|w| *w <= MAX_WEIGHT).ok_or(QuantityError::Rescaled {
                index,
                value: *v,
                weight,
                scale,
            })
        })
        .collect()
}

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = self.0 / 1_000_000_000;
        let rest = self.0 % 1_000_000_000;
        if rest == 0 {
            write!(f, "{units}")
        } else if rest.is_multiple_of(1_000_000) {
            write!(f, "{}m", self.0 / 1_000_000)
        } else if rest.is_multiple_of(1_000) {
            write!(f, "{}u", self.0 / 1_000)
        } else {
            write!(f, "{}n", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> u128 {
        parse_quantity(s).unwrap().0
    }

    #[test]
    fn parses_decimal_binary_and_exponent_forms() {
        assert_eq!(n("1"), 1_000_000_000);
        assert_eq!(n("500m"), 500_000_000);
        assert_eq!(n("0.5"), 500_000_000);
        assert_eq!(n(".5"), 500_000_000);
        assert_eq!(n("1k"), 1_000_000_000_000);
        assert_eq!(n("1Ki"), 1024 * 1_000_000_000);
        assert_eq!(n("2e3"), 2_000 * 1_000_000_000);
        assert_eq!(n("1500u"), 1_500_000);
        assert_eq!(n("+3"), 3_000_000_000);
        assert_eq!(n("0"), 0);
        assert_eq!(n("1G"), 1_000_000_000 * 1_000_000_000);
    }

    #[test]
    fn rejects_bad_quantities_with_a_reason() {
        assert!(matches!(parse_quantity("abc"), Err(QuantityError::Syntax(_))));
        assert!(matches!(parse_quantity(""), Err(QuantityError::Syntax(_))));
        assert!(matches!(parse_quantity("1.2.3"), Err(QuantityError::Syntax(_))));
        assert!(matches!(parse_quantity("5x"), Err(QuantityError::Syntax(_))));
        assert!(matches!(parse_quantity("-5"), Err(QuantityError::Negative(_))));
        assert!(matches!(parse_quantity("0.1n"), Err(QuantityError::TooPrecise(_))));
    }

    #[test]
    fn integer_weights_keep_shares_with_the_smallest_scale() {
        let w = |xs: &[&str]| {
            to_integer_weights(&xs.iter().map(|x| parse_quantity(x).unwrap()).collect::<Vec<_>>()).unwrap()
        };
        assert_eq!(w(&["90", "10"]), vec![90, 10]);
        assert_eq!(w(&["500m", "500m"]), vec![500, 500]);
        assert_eq!(w(&["1", "500m"]), vec![1000, 500]);
        assert_eq!(w(&["1k", "0"]), vec![1000, 0]);
    }

    #[test]
    fn huge_exponents_and_suffixes_are_rejected_not_panicking() {
        // `1e40` overflowed `10u128.pow` (a panic in debug builds) before exponents were bounded.
        for raw in ["1e40", "1e99", "9999999999999999999E", "1Ei", "1.5e10", "1000000001", "2G"] {
            assert!(matches!(parse_quantity(raw), Err(QuantityError::TooLarge(_))), "{raw}: {:?}", parse_quantity(raw));
        }
        assert!(matches!(parse_quantity("1e-99"), Err(QuantityError::TooPrecise(_))));
        assert!(matches!(parse_quantity("1e100"), Err(QuantityError::Syntax(_))));
        assert_eq!(n("0e99"), 0);
        assert_eq!(n("1e9"), 1_000_000_000 * 1_000_000_000);
        assert_eq!(n("1E-9"), 1);
        assert_eq!(n("1e+2"), 100_000_000_000);
    }

    #[test]
    fn digits_length_and_sign_are_bounded_like_the_schema() {
        assert!(matches!(parse_quantity(&"1".repeat(20)), Err(QuantityError::TooManyDigits(_))));
        assert!(matches!(parse_quantity(&format!("0.{}", "0".repeat(20))), Err(QuantityError::TooManyDigits(_))));
        assert!(matches!(parse_quantity(&"0".repeat(33)), Err(QuantityError::TooLong(_, 33))));
        assert!(matches!(parse_quantity("-0"), Err(QuantityError::Negative(_))));
        assert!(matches!(parse_quantity(" 1"), Err(QuantityError::Syntax(_))));
        assert!(matches!(parse_quantity("1e"), Err(QuantityError::Syntax(_))));
        assert_eq!(
            parse_quantity("2G").unwrap_err().to_string(),
            "\"2G\" is above the largest weight, 1G (1000000000); weights are relative, so scale them all down"
        );
    }

    #[test]
    fn a_set_too_wide_for_one_integer_scale_names_the_weight() {
        let q = |xs: &[&str]| to_integer_weights(&xs.iter().map(|x| parse_quantity(x).unwrap()).collect::<Vec<_>>());
        assert_eq!(q(&["1", "1n"]), Ok(vec![1_000_000_000, 1]));
        let err = q(&["1n", "2"]).unwrap_err();
        assert!(matches!(err, QuantityError::Rescaled { index: 1, weight: 2_000_000_000, .. }), "{err:?}");
        assert!(err.to_string().starts_with("2 is 2000000000 counted in billionths (n)"), "{err}");
    }

    #[test]
    fn displays_in_the_coarsest_exact_unit() {
        assert_eq!(Nanos(500_000_000).to_string(), "500m");
        assert_eq!(Nanos(90_000_000_000).to_string(), "90");
        assert_eq!(Nanos(1_500).to_string(), "1500n");
    }
}
