//! Go-style durations as written in manifests: `500ms`, `30s`, `5m`, `1h30m`.

use std::time::Duration;

/// Parses `1h30m`, `45s`, `250ms`, `0s`. A bare number is rejected: the unit is always explicit.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. \"30s\" or \"5m\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("{raw:?} is not a duration; write e.g. \"30s\", \"5m\" or \"1h30m\""));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("{raw:?} is not a duration; write e.g. \"30s\", \"5m\" or \"1h30m\""))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "" => {
                return Err(format!("{raw:?} has no unit; write e.g. \"{}s\"", &s[..num_len.min(s.len())]));
            }
            other => {
                return Err(format!("{raw:?} has unknown unit {other:?}; use ms, s, m or h"));
            }
        };
        total += Duration::from_secs_f64(seconds);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
