//! Pure text rendering shared by the verbs: colours (only on a terminal), the stable/canary weight
//! bar, progress through the steps, aligned tables and ages.

use std::io::IsTerminal;

use k8s_openapi::jiff::Timestamp;
use shifter_crds::canary::{CanaryPhase, VerdictResult};

/// How output may look: ANSI colour and block characters only when a person is watching a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
    pub unicode: bool,
}

impl Style {
    pub const PLAIN: Style = Style { color: false, unicode: false };

    /// Colour and block characters when stdout is a terminal and `NO_COLOR` is unset.
    pub fn for_stdout() -> Style {
        let tty = std::io::stdout().is_terminal();
        Style { color: tty && std::env::var_os("NO_COLOR").is_none(), unicode: tty }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colour {
    Green,
    Red,
    Yellow,
    Cyan,
    Dim,
    Bold,
}

pub fn paint(style: Style, colour: Colour, text: &str) -> String {
    if !style.color {
        return text.to_string();
    }
    let code = match colour {
        Colour::Green => "32",
        Colour::Red => "31",
        Colour::Yellow => "33",
        Colour::Cyan => "36",
        Colour::Dim => "2",
        Colour::Bold => "1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

pub fn phase_colour(phase: CanaryPhase) -> Colour {
    match phase {
        CanaryPhase::Succeeded => Colour::Green,
        CanaryPhase::RolledBack => Colour::Red,
        CanaryPhase::Paused | CanaryPhase::WaitingConfirmation => Colour::Yellow,
        CanaryPhase::Progressing | CanaryPhase::Promoting => Colour::Cyan,
        CanaryPhase::Idle => Colour::Dim,
    }
}

pub fn verdict_colour(result: VerdictResult) -> Colour {
    match result {
        VerdictResult::Pass => Colour::Green,
        VerdictResult::Fail | VerdictResult::Error => Colour::Red,
        VerdictResult::Inconclusive => Colour::Yellow,
    }
}

/// `web-v1 80% ████████████████████████████████░░░░░░░░ 20% web-v2`: stable on the left.
pub fn weight_bar(stable: &str, canary: &str, canary_weight: u32, width: usize, style: Style) -> String {
    let canary_weight = canary_weight.min(100);
    let canary_cells = (canary_weight as usize * width + 50) / 100;
    let stable_cells = width - canary_cells;
    let (s, c) = if style.unicode { ("█", "░") } else { ("#", ".") };
    format!(
        "{stable} {}% {}{} {canary_weight}% {canary}",
        100 - canary_weight,
        paint(style, Colour::Green, &s.repeat(stable_cells)),
        paint(style, Colour::Yellow, &c.repeat(canary_cells)),
    )
}

/// `10 → [20] → 50 → 100`: each step's canary weight, promotion (100) last, the current one in
/// brackets while a rollout runs; a rolled-back rollout marks where it stopped.
pub fn step_progress(steps: &[u32], phase: CanaryPhase, current: u32, style: Style) -> String {
    let mut weights = steps.to_vec();
    if weights.last() != Some(&100) {
        weights.push(100);
    }
    let current = current as usize;
    let marked = match phase {
        CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::WaitingConfirmation | CanaryPhase::RolledBack => {
            Some(current.min(weights.len() - 1))
        }
        CanaryPhase::Promoting | CanaryPhase::Succeeded => Some(weights.len() - 1),
        CanaryPhase::Idle => None,
    };
    let arrow = if style.unicode { " → " } else { " -> " };
    let parts: Vec<String> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| match marked {
            Some(m) if m == i => {
                let colour = phase_colour(phase);
                let mark =
                    if phase == CanaryPhase::RolledBack { format!("[{w} rolled back]") } else { format!("[{w}]") };
                paint(style, colour, &mark)
            }
            Some(m) if i < m => w.to_string(),
            _ if marked.is_none() => w.to_string(),
            _ => paint(style, Colour::Dim, &w.to_string()),
        })
        .collect();
    parts.join(arrow)
}

/// Visible width of text that may hold ANSI colour codes.
fn visible_len(text: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}

/// Left-aligned columns three spaces apart; the last column is never padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| visible_len(s)).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - visible_len(cell) + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `4s`, `3m`, `2h`, `5d` since an RFC 3339 time; `?` when it does not parse.
pub fn age(time: &str, now: Timestamp) -> String {
    let Ok(then) = time.parse::<Timestamp>() else { return "?".into() };
    let secs = (now.as_second() - then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Cuts `text` to at most `max` characters, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Percent with two decimals, or `-` when absent.
pub fn percent(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.2}%"))
}

/// Milliseconds without decimals above 10 ms, or `-` when absent.
pub fn millis(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 10.0 => format!("{v:.0}ms"),
        Some(v) => format!("{v:.1}ms"),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTY: Style = Style { color: true, unicode: true };

    #[test]
    fn weight_bar_splits_the_width_by_weight() {
        assert_eq!(weight_bar("web-v1", "web-v2", 20, 10, Style::PLAIN), "web-v1 80% ########.. 20% web-v2");
        assert_eq!(weight_bar("a", "b", 0, 4, Style::PLAIN), "a 100% #### 0% b");
        assert_eq!(weight_bar("a", "b", 100, 4, Style::PLAIN), "a 0% .... 100% b");
        assert_eq!(weight_bar("a", "b", 250, 4, Style::PLAIN), "a 0% .... 100% b", "capped at 100");
        let tty = weight_bar("a", "b", 50, 4, TTY);
        assert!(tty.contains("\x1b[32m██\x1b[0m") && tty.contains("\x1b[33m░░\x1b[0m"), "{tty:?}");
    }

    #[test]
    fn step_progress_marks_where_the_rollout_is() {
        let steps = [10, 20, 50];
        let plain = |phase, cur| step_progress(&steps, phase, cur, Style::PLAIN);
        assert_eq!(plain(CanaryPhase::Progressing, 1), "10 -> [20] -> 50 -> 100");
        assert_eq!(plain(CanaryPhase::WaitingConfirmation, 2), "10 -> 20 -> [50] -> 100");
        assert_eq!(plain(CanaryPhase::Succeeded, 2), "10 -> 20 -> 50 -> [100]");
        assert_eq!(plain(CanaryPhase::Idle, 0), "10 -> 20 -> 50 -> 100");
        assert_eq!(plain(CanaryPhase::RolledBack, 0), "[10 rolled back] -> 20 -> 50 -> 100");
        assert_eq!(step_progress(&[25, 100], CanaryPhase::Promoting, 1, Style::PLAIN), "25 -> [100]");
        let tty = step_progress(&steps, CanaryPhase::Progressing, 1, TTY);
        assert!(tty.starts_with("10 → \x1b[36m[20]\x1b[0m → \x1b[2m50\x1b[0m"), "{tty:?}");
    }

    #[test]
    fn table_aligns_columns_ignoring_colour() {
        let rows = vec![
            vec!["NAME".to_string(), "PHASE".to_string(), "X".to_string()],
            vec!["canary/web".to_string(), paint(TTY, Colour::Green, "Succeeded"), "y".to_string()],
        ];
        let out = table(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "NAME         PHASE       X");
        assert_eq!(lines[1], "canary/web   \x1b[32mSucceeded\x1b[0m   y");
    }

    #[test]
    fn ages_and_numbers_read_naturally() {
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        assert_eq!(age("2026-01-01T11:59:55Z", now), "5s");
        assert_eq!(age("2026-01-01T11:30:00Z", now), "30m");
        assert_eq!(age("2025-12-30T12:00:00Z", now), "2d");
        assert_eq!(age("yesterday", now), "?");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(percent(Some(99.5)), "99.50%");
        assert_eq!(millis(Some(250.0)), "250ms");
        assert_eq!(millis(None), "-");
    }
}
