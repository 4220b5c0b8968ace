//! The one duration syntax shifter reads, in Canary fields and in command-line flags alike:
//! Go-style `250ms`, `30s`, `5m`, `1h30m`, `1.5s`.
//!
//! ```text
//! duration = term { term }            at most 32 characters, at most 168h in all
//! term     = digits [ "." digits ] unit
//! digits   = 1 to 9 of 0-9
//! unit     = "h" | "m" | "s" | "ms"
//! ```
//!
//! Compared with Go's `time.ParseDuration`: the unit is always written (`0s`, not `0`); there is
//! no sign; a number has a digit on each side of its point (`0.5s`, not `.5s`); and `us`/`ns` are
//! not accepted. Nothing shifter times (intervals, pauses, deadlines, timeouts) is finer than a
//! millisecond, so a duration is a whole number of milliseconds and a finer one (`1.0005s`,
//! `500us`) is reported rather than silently rounded. Terms may come in any order and repeat, as
//! in Go (`1m30s` and `30s1m` are the same).
//!
//! Parsing uses checked integer arithmetic only, so no text, however absurd, can panic a process.
//! [`PATTERN`] and [`MAX_LEN`] state the same grammar for a CRD schema, so a plain Kubernetes API
//! server rejects `9999999999999999999999s` on its own; [`DurationRange`] narrows the overall
//! [`MAX`] to what one field accepts and says so in its message.

use std::fmt;
use std::time::Duration;

/// The longest duration accepted anywhere: one week.
pub const MAX: Duration = Duration::from_secs(168 * 3600);

/// Longest accepted text, in characters.
pub const MAX_LEN: usize = 32;

/// Most digits on either side of a number's decimal point.
pub const MAX_DIGITS: usize = 9;

/// The grammar above as a regular expression valid for Go's RE2 and Rust's `regex` alike.
pub const PATTERN: &str = r"^([0-9]{1,9}(\.[0-9]{1,9})?(ms|h|m|s))+$";

const MAX_MS: u64 = MAX.as_secs() * 1_000;

/// Why a text is not an acceptable duration. Messages read well after a field path:
/// `format!("spec.analysis.interval: {error}")`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty; write a number and a unit, e.g. \"30s\" or \"5m\"")]
    Empty,
    #[error("{shown} is {len} characters long; a duration has at most {MAX_LEN}, e.g. \"1h30m\"", shown = shown(.0), len = .1)]
    TooLong(String, usize),
    #[error("{shown} is not a duration ({reason}); write e.g. \"30s\", \"5m\" or \"1h30m\"", shown = shown(.raw))]
    Syntax { raw: String, reason: &'static str },
    #[error("{shown} has no unit after {number}; write e.g. \"{number}s\" (units: ms, s, m, h)", shown = shown(.raw))]
    MissingUnit { raw: String, number: String },
    #[error("{shown} has unknown unit {unit:?}; use ms, s, m or h{hint}", shown = shown(.raw), hint = unit_hint(.unit))]
    UnknownUnit { raw: String, unit: String },
    #[error("{shown} is not a whole number of milliseconds; shifter counts time in milliseconds", shown = shown(.0))]
    TooPrecise(String),
    #[error("{shown} is longer than the longest duration accepted, {max}", shown = shown(.0), max = format_duration(MAX))]
    TooLarge(String),
    #[error("must be {bounds}, got {shown}", bounds = .range.describe(), shown = shown(.raw))]
    OutOfRange { raw: String, range: DurationRange },
}

/// For callers whose errors are plain messages, such as command-line value parsers.
impl From<DurationError> for String {
    fn from(e: DurationError) -> Self {
        e.to_string()
    }
}

/// Parses a duration of the grammar above, up to [`MAX`].
pub fn parse_duration(raw: &str) -> Result<Duration, DurationError> {
    if raw.is_empty() {
        return Err(DurationError::Empty);
    }
    let len = raw.chars().count();
    if len > MAX_LEN {
        return Err(DurationError::TooLong(raw.to_string(), len));
    }
    let syntax = |reason| DurationError::Syntax { raw: raw.to_string(), reason };
    let mut total_ms: u64 = 0;
    let mut rest = raw;
    while !rest.is_empty() {
        let (int, after) = split_digits(rest);
        if int.is_empty() {
            return Err(syntax(match after.chars().next() {
                Some('.') => "write a digit before the point, e.g. 0.5s",
                Some('-') => "durations are never negative",
                Some('+') => "write it without a sign",
                Some(c) if c.is_whitespace() => "remove the spaces",
                _ => "each unit needs a number before it",
            }));
        }
        let (frac, after) = match after.strip_prefix('.') {
            Some(f) => match split_digits(f) {
                ("", _) => return Err(syntax("write a digit after the point, e.g. 1.5s")),
                parts => parts,
            },
            None => ("", after),
        };
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => {
                let number = &rest[..rest.len() - after.len()];
                return Err(DurationError::MissingUnit { raw: raw.to_string(), number: number.to_string() });
            }
            other => return Err(DurationError::UnknownUnit { raw: raw.to_string(), unit: other.to_string() }),
        };
        if int.trim_start_matches('0').len() > MAX_DIGITS {
            // At least 10^9 of any unit: far beyond MAX whatever the unit.
            return Err(DurationError::TooLarge(raw.to_string()));
        }
        if int.len() > MAX_DIGITS || frac.len() > MAX_DIGITS {
            return Err(syntax("a number has more than 9 digits on one side of its point"));
        }
        let term = term_ms(int, frac, unit_ms).ok_or_else(|| DurationError::TooPrecise(raw.to_string()))?;
        total_ms = total_ms
            .checked_add(term)
            .filter(|t| *t <= MAX_MS)
            .ok_or_else(|| DurationError::TooLarge(raw.to_string()))?;
        rest = next;
    }
    Ok(Duration::from_millis(total_ms))
}

/// `int.frac` of a unit worth `unit_ms`, in milliseconds; `None` when not a whole number of them.
/// Both parts have at most 9 digits, so every product fits in a u64 (< 3.6 × 10^15).
fn term_ms(int: &str, frac: &str, unit_ms: u64) -> Option<u64> {
    let whole = digits_value(int).checked_mul(unit_ms)?;
    if frac.is_empty() {
        return Some(whole);
    }
    let scale = 10u64.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let part = digits_value(frac).checked_mul(unit_ms)?;
    if part % scale != 0 {
        return None;
    }
    whole.checked_add(part / scale)
}

/// The value of at most 9 ASCII digits.
fn digits_value(digits: &str) -> u64 {
    digits.bytes().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
}

fn split_digits(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()))
}

/// Formats a duration in this grammar to the millisecond, largest units first: `1h30m`,
/// `1s500ms`, `0s`. What [`parse_duration`] accepts formats back to text that parses to the same value.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let parts = [(ms / 3_600_000, "h"), (ms / 60_000 % 60, "m"), (ms / 1_000 % 60, "s"), (ms % 1_000, "ms")];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect()
}

/// The durations one field accepts, e.g. `1s..=1h` for `spec.analysis.interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl DurationRange {
    /// `min..=max`; `max` should not exceed [`MAX`], which bounds every parse anyway.
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    pub fn contains(&self, d: Duration) -> bool {
        self.min <= d && d <= self.max
    }

    /// Parses `raw` and checks it is within the range. A value too large for [`MAX`] is reported
    /// as out of this range, so the message names the bounds the field really has.
    pub fn parse(&self, raw: &str) -> Result<Duration, DurationError> {
        let out_of_range = || DurationError::OutOfRange { raw: raw.to_string(), range: *self };
        match parse_duration(raw) {
            Ok(d) if self.contains(d) => Ok(d),
            Ok(_) | Err(DurationError::TooLarge(_)) => Err(out_of_range()),
            Err(e) => Err(e),
        }
    }

    /// `between 1s and 1h`, or `at most 1h` when the range starts at zero.
    pub fn describe(&self) -> String {
        if self.min.is_zero() {
            format!("at most {}", format_duration(self.max))
        } else {
            format!("between {} and {}", format_duration(self.min), format_duration(self.max))
        }
    }
}

impl fmt::Display for DurationRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", format_duration(self.min), format_duration(self.max))
    }
}

/// The text as written, quoted, cut short when long so a message never repeats a huge value.
pub(crate) fn shown(raw: &str) -> String {
    const KEEP: usize = 40;
    if raw.chars().count() <= KEEP {
        format!("{raw:?}")
    } else {
        let head: String = raw.chars().take(KEEP).collect();
        format!("{head:?}…")
    }
}

fn unit_hint(unit: &str) -> &'static str {
    match unit {
        u if u.contains(char::is_whitespace) => " (remove the spaces)",
        "us" | "µs" | "μs" | "ns" => " (shifter counts whole milliseconds)",
        "d" => " (a day is 24h)",
        "sec" | "secs" | "second" | "seconds" => " (write 30s, not 30sec)",
        "min" | "mins" | "minute" | "minutes" => " (write 5m, not 5min)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(raw: &str) -> u128 {
        parse_duration(raw).unwrap_or_else(|e| panic!("{raw}: {e}")).as_millis()
    }

    fn err(raw: &str) -> String {
        parse_duration(raw).expect_err(raw).to_string()
    }

    #[test]
    fn parses_go_style_terms_and_decimals() {
        assert_eq!(ms("30s"), 30_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("1.5s"), 1_500);
        assert_eq!(ms("0.5m"), 30_000);
        assert_eq!(ms("1m30s500ms"), 90_500);
        assert_eq!(ms("30s1m"), 90_000);
        assert_eq!(ms("0s"), 0);
        assert_eq!(ms("000000001s"), 1_000);
        assert_eq!(ms("168h"), 168 * 3_600_000);
        assert_eq!(ms("0.001h1.000000000s"), 4_600);
        assert!(err("0.000000001h").contains("not a whole number of milliseconds"));
    }

    #[test]
    fn the_value_that_used_to_panic_is_rejected_with_the_maximum() {
        assert_eq!(
            err("9999999999999999999999s"),
            "\"9999999999999999999999s\" is longer than the longest duration accepted, 168h"
        );
        assert!(err("168h1ms").contains("longest duration accepted, 168h"));
        assert!(err("999999999h999999999h").contains("168h"));
        // Go's largest duration and beyond, in every unit.
        for raw in ["2562047h47m16.854775807s", "1e9s", "18446744073709551616ms"] {
            assert!(parse_duration(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn says_what_to_write_instead() {
        assert_eq!(err(""), "empty; write a number and a unit, e.g. \"30s\" or \"5m\"");
        assert_eq!(err("30"), "\"30\" has no unit after 30; write e.g. \"30s\" (units: ms, s, m, h)");
        assert!(err("1.5").contains("no unit after 1.5"));
        assert!(err("3d").contains("unknown unit \"d\"; use ms, s, m or h (a day is 24h)"));
        assert!(err("500us").contains("(shifter counts whole milliseconds)"));
        assert!(err("5 m").contains("remove the spaces"));
        assert!(err(" 5m").contains("remove the spaces"));
        assert!(err("-5s").contains("never negative"));
        assert!(err("+5s").contains("without a sign"));
        assert!(err(".5s").contains("0.5s"));
        assert!(err("1.s").contains("a digit after the point"));
        assert!(err("fast").contains("is not a duration"));
        assert!(err("1.0005s").contains("not a whole number of milliseconds"));
        assert!(err("0000000000001s").contains("more than 9 digits"));
        assert!(err("1s1s1s1s1s1s1s1s1s1s1s1s1s1s1s1s1s").contains("at most 32"));
        assert!(err("1ß").contains("unknown unit \"ß\""));
    }

    #[test]
    fn long_values_are_not_echoed_whole() {
        let raw = "9".repeat(10_000);
        let message = err(&raw);
        assert!(message.len() < 200, "{message}");
        assert!(message.contains("10000 characters long"), "{message}");
    }

    #[test]
    fn formats_back_to_the_same_value() {
        for (d, text) in [(0, "0s"), (250, "250ms"), (1_500, "1s500ms"), (5_400_000, "1h30m"), (3_600_001, "1h1ms")] {
            assert_eq!(format_duration(Duration::from_millis(d)), text);
            assert_eq!(ms(text), u128::from(d));
        }
    }

    #[test]
    fn a_range_names_its_bounds() {
        let interval = DurationRange::new(Duration::from_secs(1), Duration::from_secs(3600));
        assert_eq!(interval.parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(interval.parse("2h").unwrap_err().to_string(), "must be between 1s and 1h, got \"2h\"");
        assert_eq!(interval.parse("500ms").unwrap_err().to_string(), "must be between 1s and 1h, got \"500ms\"");
        assert_eq!(
            interval.parse("9999999999999999999999s").unwrap_err().to_string(),
            "must be between 1s and 1h, got \"9999999999999999999999s\""
        );
        let warmup = DurationRange::new(Duration::ZERO, Duration::from_secs(3600));
        assert_eq!(warmup.parse("61m").unwrap_err().to_string(), "must be at most 1h, got \"61m\"");
        assert!(warmup.parse("soon").unwrap_err().to_string().contains("is not a duration"));
    }

    #[test]
    fn the_schema_pattern_compiles() {
        let re = regex::Regex::new(PATTERN).unwrap();
        assert!(re.is_match("1h30m") && re.is_match("1.5s") && re.is_match("250ms"));
        assert!(!re.is_match("9999999999999999999999s") && !re.is_match("30") && !re.is_match(".5s"));
    }
}
