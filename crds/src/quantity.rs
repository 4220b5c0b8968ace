//! Kubernetes quantities (`"500m"`, `"90"`, `1`, `"1Ki"`, `"2e3"`) as used by SMI v1alpha1 weights.
//!
//! Quantities are parsed exactly (no floating point) into nano-units so that a set of weights can be
//! rescaled to the smallest common integer form without changing the shares they express.

use std::fmt;

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "{0:?} is not a Kubernetes quantity (expected a number with an optional suffix, e.g. \"90\", \"500m\", \"1k\")"
    )]
    Syntax(String),
    #[error("{0:?} is negative; weights must be zero or more")]
    Negative(String),
    #[error("{0:?} is finer than one nano-unit (1n)")]
    TooPrecise(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// A non-negative quantity held exactly as a count of nano-units (10^-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Nanos(pub u128);

const NANO_DIGITS: i32 = 9;

/// Parses a quantity string into nano-units.
pub fn parse_quantity(raw: &str) -> Result<Nanos, QuantityError> {
    let s = raw.trim();
    let syntax = || QuantityError::Syntax(raw.to_string());
    if s.is_empty() {
        return Err(syntax());
    }
    let (negative, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // Split the number from its suffix: digits and at most one '.'.
    let number_len =
        body.char_indices().find(|&(_, c)| !(c.is_ascii_digit() || c == '.')).map_or(body.len(), |(i, _)| i);
    let (number, suffix) = body.split_at(number_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(syntax());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits: String = format!("{int_part}{frac_part}");
    let mut mantissa: u128 = 0;
    for d in digits.bytes() {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(d - b'0')))
            .ok_or_else(|| QuantityError::TooLarge(raw.to_string()))?;
    }
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
        other if other.starts_with(['e', 'E']) => {
            let exp: i32 = other[1..].parse().map_err(|_| syntax())?;
            if !(-40..=40).contains(&exp) {
                return Err(QuantityError::TooLarge(raw.to_string()));
            }
            dec_exp += exp;
        }
        _ => return Err(syntax()),
    }
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative(raw.to_string()));
    }
    let too_large = || QuantityError::TooLarge(raw.to_string());
    let mut value = mantissa.checked_shl(bin_exp).ok_or_else(too_large)?;
    if bin_exp > 0 && value >> bin_exp != mantissa {
        return Err(too_large());
    }
    let shift = dec_exp + NANO_DIGITS;
    if shift >= 0 {
        value = value.checked_mul(10u128.pow(shift as u32)).ok_or_else(too_large)?;
    } else {
        let div = 10u128.checked_pow((-shift) as u32).ok_or_else(|| QuantityError::TooPrecise(raw.to_string()))?;
        if value % div != 0 {
            return Err(QuantityError::TooPrecise(raw.to_string()));
        }
        value /= div;
    }
    Ok(Nanos(value))
}

/// Rescales a set of quantities to the smallest power-of-1000 multiple that makes every one an integer.
///
/// `["500m", "1"]` becomes `[500, 1000]`; `["90", "10"]` stays `[90, 10]`. Shares are unchanged.
pub fn to_integer_weights(values: &[Nanos]) -> Result<Vec<u64>, QuantityError> {
    // 10^9 nanos = 1 unit. Try unit, milli, micro, nano scales in turn.
    for divisor_digits in [9u32, 6, 3, 0] {
        let div = 10u128.pow(divisor_digits);
        if values.iter().all(|v| v.0 % div == 0) {
            return values
                .iter()
                .map(|v| u64::try_from(v.0 / div).map_err(|_| QuantityError::TooLarge(format!("{}", v))))
                .collect();
        }
    }
    unreachable!("every nano count is divisible by 10^0")
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
        assert_eq!(n("-0"), 0);
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
    fn displays_in_the_coarsest_exact_unit() {
        assert_eq!(Nanos(500_000_000).to_string(), "500m");
        assert_eq!(Nanos(90_000_000_000).to_string(), "90");
        assert_eq!(Nanos(1_500).to_string(), "1500n");
    }
}
