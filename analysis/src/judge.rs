//! Judges: turn the evidence accumulated so far (comparative) or one window's counts (absolute)
//! into a metric verdict with its reason.

use shifter_proto::LATENCY_BOUNDS_MS;

use crate::analyzer::FailedAttempts;
use crate::counts::{BackendCounts, percent, thousands};
use crate::eprocess::{
    FAILURE_ALTERNATIVES, LATENCY_ALTERNATIVES, QUANTILE_ALTERNATIVES, RiskRatioEProcess, ln_rate_evidence,
    rate_upper_bound,
};
use crate::error::ProviderError;
use crate::verdict::{MetricVerdict, VerdictResult};

/// The level a comparative metric is judged at and the promotion tolerances.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    /// α for this metric (already divided among metrics).
    pub alpha: f64,
    /// Risk ratio tolerated for promotion.
    pub tolerance: f64,
    /// Absolute excess rate tolerated for promotion, on top of `tolerance` × stable's rate, while
    /// stable's rate is low (see [`Comparison::margin_at`]).
    pub margin: f64,
}

/// Events stable's rate predicts for the canary's requests, up to which the absolute margin is
/// whole and from which it is gone (see [`Comparison::margin_at`]).
pub const MARGIN_WHOLE_UNTIL_EVENTS: f64 = 50.0;
pub const MARGIN_GONE_AFTER_EVENTS: f64 = 250.0;

impl Comparison {
    /// The absolute margin in force once stable's rate predicts `expected` events for the canary's
    /// requests so far. The margin exists for the case where a ratio cannot be bounded: rates so
    /// low, or data so few, that the canary could not show a ratio within the tolerance for hours
    /// (0.1% failures at 5 req/s: a ratio bound of 1.2 needs hundreds of thousands of requests). The
    /// number of events stable's rate predicts is what decides whether a ratio can show, so the
    /// margin is whole up to [`MARGIN_WHOLE_UNTIL_EVENTS`] and tapers linearly to nothing at
    /// [`MARGIN_GONE_AFTER_EVENTS`]: a canary at 0.1% failures keeps all of it for its first hours,
    /// one compared with a stable that fails 2% loses it within minutes, before its own rate is
    /// known well enough to sit under `tolerance × stable + margin` — and a canary beyond
    /// `tolerance × stable` is then never promoted by it.
    pub fn margin_at(&self, expected: f64) -> f64 {
        let left = (MARGIN_GONE_AFTER_EVENTS - expected) / (MARGIN_GONE_AFTER_EVENTS - MARGIN_WHOLE_UNTIL_EVENTS);
        self.margin * left.clamp(0.0, 1.0)
    }

    /// The highest canary rate a promotion by rate may show: `tolerance` × stable's rate in the
    /// canary's windows, plus the margin left after `expected` events.
    pub fn allowance(&self, stable: f64, expected: f64) -> f64 {
        stable * self.tolerance + self.margin_at(expected)
    }
}

/// Whether one event process shows harm, safety, or neither yet.
enum Finding {
    Harm { evidence: f64 },
    Safe { how: String },
    Open { evidence: f64, how: String },
}

/// Whether `process` shows harm (its `evidence` at the level), safety, or neither yet.
fn examine(process: &RiskRatioEProcess, evidence: f64, c: Comparison, split: f64) -> Finding {
    if evidence >= 1.0 / c.alpha {
        return Finding::Harm { evidence };
    }
    // The two ways to show safety each get half of the level.
    let a = c.alpha / split / 2.0;
    let ratio_bound = process.upper_bound(a);
    if let Some(u) = ratio_bound
        && u <= c.tolerance
    {
        return Finding::Safe { how: format!("risk ratio ≤ {u:.2} ≤ tolerance {}", c.tolerance) };
    }
    let (trials, events) = process.canary_counts();
    let rate_bound = rate_upper_bound(events, trials, a);
    let expected = process.matched_expected_events;
    let margin = c.margin_at(expected);
    if let Some(stable) = process.matched_stable_rate()
        && process.canary_requests > 0
        && rate_bound <= c.allowance(stable, expected)
    {
        return Finding::Safe {
            how: format!(
                "canary rate ≤ {} ≤ {} × stable's {} (in the canary's windows) + {} margin",
                percent(rate_bound),
                c.tolerance,
                percent(stable),
                percent(margin)
            ),
        };
    }
    let ratio = ratio_bound.map_or("unbounded".to_string(), |u| format!("≤ {u:.2}"));
    Finding::Open { evidence, how: format!("risk ratio {ratio}, canary rate ≤ {}", percent(rate_bound)) }
}

/// How many events at stable's rate the canary's rate is shrunk towards in [`trials_to_pass`]: a
/// few early failures must not turn the estimate into days.
const PRIOR_EVENTS: f64 = 30.0;

/// About how many more canary trials (requests) `process` needs before promotion by rate is
/// possible, if the canary goes on at the rate it shows — shrunk towards stable's while it has
/// few events, so a clean start does not promise a pass from nothing. The trials are counted as
/// the test counts them (discounted for clustering) and converted back to requests at the
/// discount seen so far. `None` without data, or when at that rate the canary never passes.
pub fn trials_to_pass(process: &RiskRatioEProcess, c: Comparison, split: f64) -> Option<f64> {
    let stable = process.matched_stable_rate()?;
    let (trials, events) = process.canary_counts();
    let a = c.alpha / split / 2.0;
    if rate_upper_bound(events, trials, a) <= c.allowance(stable, process.matched_expected_events) {
        return Some(0.0);
    }
    // Stable's rate from here on: never taken as exactly zero (half an event in its trials), or
    // no failure yet on either side would promise a pass from nothing.
    let (stable_trials, stable_events) = process.stable_counts();
    let base = stable.max((stable_events + 0.5) / (stable_trials + 1.0));
    // The margin shrinks as the canary's requests grow (see `Comparison::margin_at`): each
    // candidate is judged with the margin it would have then.
    let discount = process.canary_discount();
    let allowance_at = |n: f64| c.allowance(base, process.matched_expected_events + base * (n - trials) * discount);
    // Pseudo-events at stable's rate: the canary is assumed no worse than stable until its own
    // events say otherwise, so a few early failures do not turn the estimate into days.
    let prior = PRIOR_EVENTS / base;
    let rate = (events + base * prior) / (trials + prior);
    if rate >= base * c.tolerance {
        return None;
    }
    // The bound is at or below the allowance exactly when the evidence against a rate of the
    // allowance has reached the level (the rate is then above every rate not yet rejected).
    let target = (1.0 / a).ln();
    let passes = |n: f64| {
        let x = events + rate * (n - trials);
        let allowance = allowance_at(n);
        x / n <= allowance && ln_rate_evidence(x, n, allowance) >= target
    };
    let (mut lo, mut hi) = (trials.max(1.0), trials.max(1.0) * 2.0);
    while !passes(hi) {
        lo = hi;
        hi *= 2.0;
        if hi > 1e13 {
            return None;
        }
    }
    // To within 1%: an estimate, not a promise.
    while hi - lo > 0.01 * hi {
        let mid = 0.5 * (lo + hi);
        if passes(mid) { hi = mid } else { lo = mid }
    }
    Some((hi - trials).max(0.0) * process.canary_discount())
}

/// "canary 5% `what` vs stable 1% over 100 vs 900 `unit`".
fn rates_sentence(process: &RiskRatioEProcess, what: &str, unit: &str) -> String {
    let (c, s) = process.rates();
    format!(
        "canary {} {what} vs stable {} over {} vs {} {unit}",
        c.map_or("-".into(), percent),
        s.map_or("-".into(), percent),
        thousands(process.canary_requests),
        thousands(process.stable_requests),
    )
}

fn evidence_text(evidence: f64) -> String {
    if evidence >= 1e6 { format!("{evidence:.2e}") } else { format!("{evidence:.1}") }
}

/// The evidence a Fail needs, `1/α`, as a whole number.
fn level_text(threshold: f64) -> String {
    format!("{threshold:.0}")
}

/// Comparative success rate: failed trials as the events. A trial is a request, or an attempt that
/// failed before reaching the backend and was retried elsewhere (`attempts` says how many of
/// those each version had; see [`crate::BackendCounts::trials`]).
pub fn failures(name: &str, process: &RiskRatioEProcess, attempts: FailedAttempts, c: Comparison) -> MetricVerdict {
    if process.canary_requests == 0 {
        return MetricVerdict::new(name, VerdictResult::Inconclusive, "no canary requests yet");
    }
    let rates = if attempts.canary + attempts.stable == 0 {
        rates_sentence(process, "failures", "requests")
    } else {
        format!(
            "{}, counting {} canary and {} stable attempts that failed before reaching the backend and were retried elsewhere",
            rates_sentence(process, "failures", "attempts"),
            thousands(attempts.canary),
            thousands(attempts.stable)
        )
    };
    let threshold = 1.0 / c.alpha;
    let mut v = match examine(process, process.failure_evidence(&FAILURE_ALTERNATIVES), c, 1.0) {
        Finding::Harm { evidence } => {
            let mut reason = format!("{rates}; evidence {} ≥ {}", evidence_text(evidence), level_text(threshold));
            if let Some(l) = process.lower_bound(c.alpha, &FAILURE_ALTERNATIVES) {
                reason.push_str(&format!(" (canary fails more than {l:.1}× as often)"));
            }
            MetricVerdict { evidence: Some(evidence), ..MetricVerdict::new(name, VerdictResult::Fail, reason) }
        }
        Finding::Safe { how } => MetricVerdict::new(name, VerdictResult::Pass, format!("{rates}; {how}")),
        Finding::Open { evidence, how } => MetricVerdict {
            requests_to_pass: trials_to_pass(process, c, 1.0),
            ..MetricVerdict::new(
                name,
                VerdictResult::Inconclusive,
                format!(
                    "{rates}; evidence {} < {}; not yet shown safe: {how}",
                    evidence_text(evidence),
                    level_text(threshold)
                ),
            )
        },
    };
    v.evidence = Some(process.failure_evidence(&FAILURE_ALTERNATIVES));
    v
}

/// Share of a latency metric's evidence carried by its own quantile when lower thresholds exist.
const QUANTILE_WEIGHT: f64 = 0.8;

/// Comparative latency: one event process per threshold (bucket index), evidence mixed.
pub fn latency(
    name: &str,
    thresholds: &[usize],
    processes: &[RiskRatioEProcess],
    baseline_seen: u64,
    baseline_needed: u64,
    c: Comparison,
) -> MetricVerdict {
    if thresholds.is_empty() {
        return MetricVerdict::new(
            name,
            VerdictResult::Inconclusive,
            format!(
                "choosing latency thresholds from stable: {} of {} timed stable requests seen",
                thousands(baseline_seen),
                thousands(baseline_needed)
            ),
        );
    }
    if processes.iter().all(|p| p.canary_requests == 0) {
        return MetricVerdict::new(name, VerdictResult::Inconclusive, "no timed canary requests yet");
    }
    let describe = |i: usize| {
        rates_sentence(&processes[i], &format!("slower than {} ms", LATENCY_BOUNDS_MS[thresholds[i]]), "requests")
    };
    let last = processes.len() - 1;
    let alternatives = |i: usize| if i == last { &QUANTILE_ALTERNATIVES[..] } else { &LATENCY_ALTERNATIVES[..] };
    let harm_at = |i: usize| processes[i].harm_evidence(alternatives(i));
    // The metric's own quantile (the last threshold) carries most of the weight, where a tail
    // regression shows and nowhere else; the lower thresholds share the rest and make a shifted
    // distribution show sooner. Any weights summing to one keep an e-process.
    let weight = |i: usize| match processes.len() {
        1 => 1.0,
        n if i == n - 1 => QUANTILE_WEIGHT,
        n => (1.0 - QUANTILE_WEIGHT) / (n - 1) as f64,
    };
    let evidence = (0..processes.len()).map(|i| weight(i) * harm_at(i)).sum::<f64>();
    let threshold = 1.0 / c.alpha;
    if evidence >= threshold {
        let worst = (0..processes.len()).max_by(|a, b| harm_at(*a).total_cmp(&harm_at(*b))).unwrap_or(0);
        let reason = format!("{}; evidence {} ≥ {}", describe(worst), evidence_text(evidence), level_text(threshold));
        return MetricVerdict { evidence: Some(evidence), ..MetricVerdict::new(name, VerdictResult::Fail, reason) };
    }
    // Promotion is judged where the user asked: the metric's own quantile, the highest threshold.
    // The lower thresholds only make a shifted distribution show up sooner as harm.
    let verdict = match examine(&processes[last], processes[last].harm_evidence(&QUANTILE_ALTERNATIVES), c, 1.0) {
        Finding::Safe { how } => MetricVerdict::new(name, VerdictResult::Pass, format!("{}; {how}", describe(last))),
        Finding::Open { how, .. } => MetricVerdict {
            requests_to_pass: trials_to_pass(&processes[last], c, 1.0),
            ..MetricVerdict::new(
                name,
                VerdictResult::Inconclusive,
                format!(
                    "{}; evidence {} < {}; not yet shown safe: {how}",
                    describe(last),
                    evidence_text(evidence),
                    level_text(threshold)
                ),
            )
        },
        Finding::Harm { .. } => MetricVerdict::new(
            name,
            VerdictResult::Inconclusive,
            format!("{}; evidence {} < {}", describe(last), evidence_text(evidence), level_text(threshold)),
        ),
    };
    MetricVerdict { evidence: Some(evidence), ..verdict }
}

/// Absolute success-rate floor over one window.
pub fn min_success_rate(name: &str, window: &BackendCounts, min_percent: f64) -> MetricVerdict {
    if window.requests == 0 {
        return MetricVerdict::new(name, VerdictResult::Inconclusive, "no canary requests in this window");
    }
    let rate = 1.0 - window.failures.min(window.requests) as f64 / window.requests as f64;
    let reason = format!("canary success rate {} over {} requests", percent(rate), thousands(window.requests));
    if rate * 100.0 < min_percent {
        MetricVerdict::new(name, VerdictResult::Fail, format!("{reason} < {min_percent}%"))
    } else {
        MetricVerdict::new(name, VerdictResult::Pass, format!("{reason} ≥ {min_percent}%"))
    }
}

/// Absolute latency ceiling on one window's quantile.
pub fn max_latency(name: &str, window: &BackendCounts, quantile: f64, max_ms: f64) -> MetricVerdict {
    let Some(value) = window.latency_quantile_ms(quantile) else {
        return MetricVerdict::new(name, VerdictResult::Inconclusive, "no timed canary requests in this window");
    };
    let reason = format!("canary p{} {value:.0} ms over {} requests", quantile * 100.0, thousands(window.timed()));
    if value > max_ms {
        MetricVerdict::new(name, VerdictResult::Fail, format!("{reason} > {max_ms} ms"))
    } else {
        MetricVerdict::new(name, VerdictResult::Pass, format!("{reason} ≤ {max_ms} ms"))
    }
}

/// A custom query's value against its range.
pub fn custom_range(
    name: &str,
    value: &Result<f64, ProviderError>,
    min: Option<f64>,
    max: Option<f64>,
) -> MetricVerdict {
    match value {
        Err(e) if e.is_missing_data() => MetricVerdict::new(name, VerdictResult::Inconclusive, e.to_string()),
        Err(e) => MetricVerdict::new(name, VerdictResult::Error, e.to_string()),
        Ok(v) => {
            if let Some(lo) = min
                && *v < lo
            {
                return MetricVerdict::new(name, VerdictResult::Fail, format!("value {v} < min {lo}"));
            }
            if let Some(hi) = max
                && *v > hi
            {
                return MetricVerdict::new(name, VerdictResult::Fail, format!("value {v} > max {hi}"));
            }
            let range = format!(
                "[{}, {}]",
                min.map_or("-∞".into(), |m| m.to_string()),
                max.map_or("∞".into(), |m| m.to_string())
            );
            MetricVerdict::new(name, VerdictResult::Pass, format!("value {v} within {range}"))
        }
    }
}
