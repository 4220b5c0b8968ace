//! The anytime-valid sequential test behind comparative verdicts (see `ANALYSIS.md`).
//!
//! For window k with canary share of requests `s = n_c / (n_c + n_b)`, each of the window's
//! `E = e_c + e_b` events (failures, or requests slower than a latency threshold) belongs to the
//! canary with probability `π(r) = r·s / (r·s + 1 − s)` when the canary's event probability is `r`
//! times the stable version's. [`RiskRatioEProcess`] keeps the log-likelihood of every window seen
//! so far on a fixed log-spaced grid of `r`, which is all it needs to answer, at any time:
//!
//! - the **harm evidence** against "the canary is no worse" (`r ≤ 1`): an equal-weight mixture of
//!   likelihood ratios over alternatives above 1. Under the null each ratio is a non-negative
//!   supermartingale, so by Ville's inequality the evidence ever reaching `1/α` — checked every
//!   tick, for the whole rollout — has probability at most `α`;
//! - a **confidence sequence** on `r`, by inverting the same kind of test at every grid point.
//!
//! Shares are per window, so weight steps need no special handling, and an incident that hits
//! both versions raises `e_b` with `e_c` and leaves the evidence where it was.
//!
//! Failures are also judged by a second, **reference** test: the canary's own (discounted) counts
//! in each window against stable's long-run rate — the time-uniform upper bound from its history
//! before the rollout and its windows since, raised to what stable shows in the current window or
//! the last minute when an incident lifts it. When stable's failures come in rare large bursts,
//! any one window of stable's says little about its rate (most windows hold no burst) while its
//! long run says much; the share test alone then waits for stable to show a burst. The two are
//! mixed ([`RiskRatioEProcess::failure_evidence`]); a weighted mean of e-processes is one.
//!
//! [`rate_upper_bound`] is the time-uniform (Robbins mixture) confidence bound on one version's
//! event probability alone, which is what low-volume promotion can honestly show.

use serde::{Deserialize, Serialize};
use statrs::function::beta::ln_beta;

use crate::dispersion::Clustering;

/// Grid points per doubling of `r`.
pub const GRID_STEPS_PER_DOUBLING: i32 = 4;
/// Smallest grid exponent: `r = 2^(GRID_MIN / 4) = 1/16`.
pub const GRID_MIN: i32 = -16;
/// Largest grid exponent: `r = 2^(GRID_MAX / 4) = 64`.
pub const GRID_MAX: i32 = 24;
/// Alternatives of the harm test for failures, as grid offsets above the null: `r` ≈ 4, 6.7, 11.
/// Equal weights. A regression that fails requests usually multiplies failures several times, and
/// few points keep the mixture's price low where it matters most — a handful of canary failures at
/// low volume. Smaller harms (a 2–3× failure rate) are still caught, as they raise every term, only
/// later.
pub const FAILURE_ALTERNATIVES: [i32; 3] = [8, 11, 14];
/// Alternatives of the harm test for latency exceedances below the judged quantile: `r` ≈ 1.19,
/// 1.41, 1.68, 2, 2.8, 4. Slower versions usually shift many requests a little, so exceedance
/// ratios at the median or p90 are modest.
pub const LATENCY_ALTERNATIVES: [i32; 6] = [1, 2, 3, 4, 6, 8];
/// Alternatives at the judged quantile itself (p99 by default): `r` ≈ 1.68, 2, 2.8 — the harm a
/// latency metric exists to catch is the share of requests slower than stable's p99 roughly
/// doubling, and three points cost less evidence than six where every slow request is scarce.
pub const QUANTILE_ALTERNATIVES: [i32; 3] = [3, 4, 6];
/// Alternatives of the "not worse than r0" test, as grid offsets below the null: `r0` divided by
/// 1.19, 1.41, 1.68, 2, 2.8, 4, 8. Equal weights.
pub const SAFETY_ALTERNATIVES: [i32; 7] = [1, 2, 3, 4, 6, 8, 12];

/// The grid value of `r` at exponent index `k`.
pub fn grid_ratio(k: i32) -> f64 {
    2f64.powf(k as f64 / GRID_STEPS_PER_DOUBLING as f64)
}

/// Sequential evidence on the risk ratio of canary to stable events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RiskRatioEProcess {
    /// `ℓ(r_k) − ℓ(1)` for `k` in `GRID_MIN..=GRID_MAX`, summed over windows.
    log_lr: Vec<f64>,
    pub canary_requests: u64,
    pub canary_events: u64,
    pub stable_requests: u64,
    pub stable_events: u64,
    /// Windows that carried information (both versions had requests and somebody had an event).
    pub informative_windows: u64,
    /// Canary requests in windows where stable had requests too, and the events the canary would
    /// have had there at stable's rate of each window: a reference rate that weight steps and
    /// incidents cannot skew (totals over windows with different shares can, Simpson-style).
    #[serde(default)]
    pub matched_canary_requests: u64,
    #[serde(default)]
    pub matched_expected_events: f64,
    /// The canary's trials and events discounted for clustering (see [`crate::dispersion`]): what
    /// its counts are worth as independent trials. Equal to the raw counts without clustering.
    #[serde(default)]
    pub canary_effective: (f64, f64),
    /// Stable's, likewise.
    #[serde(default)]
    pub stable_effective: (f64, f64),
    /// How the canary's and stable's events cluster in time, from their seconds so far.
    #[serde(default)]
    pub canary_clustering: Clustering,
    #[serde(default)]
    pub stable_clustering: Clustering,
    /// `ℓ(r_k) − ℓ(1)` of the canary's own counts against stable's long-run reference rate (see
    /// [`RiskRatioEProcess::reference_evidence`]); empty where the reference test is not run
    /// (latency, and states saved before it existed).
    #[serde(default)]
    reference_log_lr: Vec<f64>,
    /// Stable's (trials, events) in its history before the rollout, and those trials discounted
    /// for clustering.
    #[serde(default)]
    pub history_counts: (u64, u64),
    #[serde(default)]
    pub history_effective_trials: f64,
    /// Stable's raw (trials, events) in the last [`RECENT_WINDOWS`] windows, the newest last.
    #[serde(default)]
    recent_stable: Vec<(u64, u64)>,
}

impl Default for RiskRatioEProcess {
    fn default() -> Self {
        RiskRatioEProcess {
            log_lr: vec![0.0; (GRID_MAX - GRID_MIN + 1) as usize],
            canary_requests: 0,
            canary_events: 0,
            stable_requests: 0,
            stable_events: 0,
            informative_windows: 0,
            matched_canary_requests: 0,
            matched_expected_events: 0.0,
            canary_effective: (0.0, 0.0),
            stable_effective: (0.0, 0.0),
            canary_clustering: Clustering::default(),
            stable_clustering: Clustering::default(),
            reference_log_lr: Vec::new(),
            history_counts: (0, 0),
            history_effective_trials: 0.0,
            recent_stable: Vec::new(),
        }
    }
}

impl RiskRatioEProcess {
    pub fn new() -> Self {
        Self::default()
    }

    /// A process that also runs the reference test (failures judge by both).
    pub fn with_reference() -> Self {
        RiskRatioEProcess { reference_log_lr: vec![0.0; (GRID_MAX - GRID_MIN + 1) as usize], ..Self::default() }
    }

    /// Adds one window of independent trials. Windows where either version had no requests say
    /// nothing about `r` (the share is 0 or 1) and only update the totals.
    pub fn observe(&mut self, canary_requests: u64, canary_events: u64, stable_requests: u64, stable_events: u64) {
        self.observe_clustered(canary_requests, canary_events, stable_requests, stable_events, 1.0, 1.0);
    }

    /// Adds one window given each version's `(trials, events)` second by second (or one pair for
    /// the whole window when the source kept no seconds). Clustering is measured — this window
    /// included, so a first burst is discounted where it happens — each version from its own
    /// seconds, and the window is added with each version's counts discounted by its inflation.
    pub fn observe_seconds(&mut self, canary: &[(u64, u64)], stable: &[(u64, u64)]) {
        self.observe_seconds_and_attempts(canary, stable, 0, 0);
    }

    /// As [`RiskRatioEProcess::observe_seconds`], with failed attempts besides: trials that failed
    /// before reaching the backend (the dial was refused) and were retried elsewhere. They are
    /// added to each version's counts undiscounted: a refused connection says the endpoint is
    /// not there, the same for every attempt, not that a second went badly — and a canary whose
    /// only endpoint died must be judged on them at once, not taken for a burst.
    pub fn observe_seconds_and_attempts(
        &mut self,
        canary: &[(u64, u64)],
        stable: &[(u64, u64)],
        canary_attempts: u64,
        stable_attempts: u64,
    ) {
        self.canary_clustering.observe(canary);
        self.stable_clustering.observe(stable);
        let shared = self.canary_clustering.max(&self.stable_clustering);
        let (phi_c, phi_b) = (shared.inflation(canary), shared.inflation(stable));
        let total = |s: &[(u64, u64)]| s.iter().fold((0, 0), |(n, e), (sn, se)| (n + sn, e + se.min(sn)));
        let ((n_c, e_c), (n_b, e_b)) = (total(canary), total(stable));
        self.observe_clustered_with(n_c, e_c, n_b, e_b, (phi_c, phi_b), (canary_attempts, stable_attempts));
    }

    /// Stable's seconds from before the rollout, one window at a time: they say how its events
    /// cluster before the canary has shown anything.
    pub fn observe_stable_history(&mut self, window: &[(u64, u64)]) {
        self.stable_clustering.observe(window);
        let phi = self.stable_clustering.inflation(window).max(1.0);
        let (n, e) = window.iter().fold((0, 0), |(n, e), (sn, se)| (n + sn, e + se.min(sn)));
        self.history_counts.0 += n;
        self.history_counts.1 += e;
        self.history_effective_trials += n as f64 / phi;
    }

    /// Adds one window whose counts are inflated by clustering `φ` per version (canary, stable):
    /// each version's trials and events count as `n/φ` and `e/φ` independent ones, in the share
    /// and in the likelihood (a quasi-likelihood; see [`crate::dispersion`]).
    pub fn observe_clustered(
        &mut self,
        canary_requests: u64,
        canary_events: u64,
        stable_requests: u64,
        stable_events: u64,
        phi_canary: f64,
        phi_stable: f64,
    ) {
        self.observe_clustered_with(
            canary_requests,
            canary_events,
            stable_requests,
            stable_events,
            (phi_canary, phi_stable),
            (0, 0),
        );
    }

    /// The window's counts discounted by `phi` (canary, stable), plus failed `attempts` (canary,
    /// stable) that count as failed trials undiscounted.
    fn observe_clustered_with(
        &mut self,
        canary_requests: u64,
        canary_events: u64,
        stable_requests: u64,
        stable_events: u64,
        phi: (f64, f64),
        attempts: (u64, u64),
    ) {
        let (canary_requests, stable_requests) = (canary_requests + attempts.0, stable_requests + attempts.1);
        let e_c = (canary_events + attempts.0).min(canary_requests);
        let e_b = (stable_events + attempts.1).min(stable_requests);
        let (phi_c, phi_b) = (phi.0.max(1.0), phi.1.max(1.0));
        let discounted = |requests: u64, events: u64, failed: u64, phi: f64| {
            let (n, e) = ((requests - failed) as f64, events.saturating_sub(failed) as f64);
            (n / phi + failed as f64, e / phi + failed as f64)
        };
        let (n_c, x_c) = discounted(canary_requests, e_c, attempts.0, phi_c);
        let (n_b, x_b) = discounted(stable_requests, e_b, attempts.1, phi_b);
        self.observe_reference(n_c, x_c, (stable_requests, e_b));
        self.canary_effective.0 += n_c;
        self.canary_effective.1 += x_c;
        self.stable_effective.0 += n_b;
        self.stable_effective.1 += x_b;
        self.canary_requests += canary_requests;
        self.canary_events += e_c;
        self.stable_requests += stable_requests;
        self.stable_events += e_b;
        if stable_requests > 0 {
            self.matched_canary_requests += canary_requests;
            self.matched_expected_events += canary_requests as f64 * e_b as f64 / stable_requests as f64;
        }
        if canary_requests == 0 || stable_requests == 0 || e_c + e_b == 0 {
            return;
        }
        self.informative_windows += 1;
        let s = n_c / (n_c + n_b);
        for (i, l) in self.log_lr.iter_mut().enumerate() {
            *l += window_log_lr(grid_ratio(GRID_MIN + i as i32), s, x_c, x_b);
        }
    }

    /// Stable's reference rate for the window about to be added: the time-uniform upper bound on
    /// its long-run rate (history and the rollout so far, discounted for clustering), raised to
    /// the lower bound of its rate in this window or the last minute when those are higher (an
    /// incident both versions share).
    fn reference_rate(&self, window: (u64, u64)) -> f64 {
        // The rate is the plain one (discounting each window by its own clustering would weigh
        // burst windows less and bias it low); clustering only shrinks how much it is known.
        let (requests, events) =
            (self.history_counts.0 + self.stable_requests, self.history_counts.1 + self.stable_events);
        let trials = self.history_effective_trials + self.stable_effective.0;
        let rate = if requests > 0 { events as f64 / requests as f64 } else { 0.0 };
        let long_run = rate_upper_bound(rate * trials, trials, REFERENCE_LEVEL);
        let recent = self.recent_stable.iter().fold(window, |(n, e), (rn, re)| (n + rn, e + re));
        long_run.min(1.0).max(rate_lower_estimate(window)).max(rate_lower_estimate(recent))
    }

    /// Adds the canary's discounted window `(trials, events)` to the reference test.
    fn observe_reference(&mut self, trials: f64, events: f64, stable_window: (u64, u64)) {
        if self.reference_log_lr.is_empty() {
            return;
        }
        if trials > 0.0 && (self.history_effective_trials + self.stable_effective.0) > 0.0 {
            let expected = trials * self.reference_rate(stable_window);
            for (i, l) in self.reference_log_lr.iter_mut().enumerate() {
                let r = grid_ratio(GRID_MIN + i as i32);
                *l += events * r.ln() - (r - 1.0) * expected;
            }
        }
        self.recent_stable.push(stable_window);
        if self.recent_stable.len() > RECENT_WINDOWS {
            self.recent_stable.remove(0);
        }
    }

    /// Evidence against "the canary fails no more often than stable does in the long run":
    /// the canary's own counts against stable's reference rate, mixed over `alternatives`.
    pub fn reference_evidence(&self, alternatives: &[i32]) -> f64 {
        let Some(null) = self.reference_log_lr.get((0 - GRID_MIN) as usize) else { return 1.0 };
        let sum: f64 = alternatives
            .iter()
            .filter_map(|d| self.reference_log_lr.get((d - GRID_MIN) as usize))
            .map(|l| (l - null).exp())
            .sum();
        sum / alternatives.len().max(1) as f64
    }

    /// Failure evidence: the per-window share test and the reference test, mixed with weights
    /// `1 − REFERENCE_WEIGHT` and [`REFERENCE_WEIGHT`] (a weighted mean of e-processes is one).
    /// A process without the reference test gives the share test's evidence alone.
    pub fn failure_evidence(&self, alternatives: &[i32]) -> f64 {
        if self.reference_log_lr.is_empty() {
            return self.harm_evidence(alternatives);
        }
        (1.0 - REFERENCE_WEIGHT) * self.harm_evidence(alternatives)
            + REFERENCE_WEIGHT * self.reference_evidence(alternatives)
    }

    /// The canary's (trials, events) as independent ones: the raw counts discounted for
    /// clustering. Older saved states without them fall back to the raw counts.
    pub fn canary_counts(&self) -> (f64, f64) {
        if self.canary_effective.0 > 0.0 || self.canary_requests == 0 {
            self.canary_effective
        } else {
            (self.canary_requests as f64, self.canary_events as f64)
        }
    }

    /// Stable's (trials, events) as independent ones, likewise.
    pub fn stable_counts(&self) -> (f64, f64) {
        if self.stable_effective.0 > 0.0 || self.stable_requests == 0 {
            self.stable_effective
        } else {
            (self.stable_requests as f64, self.stable_events as f64)
        }
    }

    /// How much clustering discounted the canary's trials so far (1 = not at all).
    pub fn canary_discount(&self) -> f64 {
        let (n, _) = self.canary_counts();
        if n > 0.0 { self.canary_requests as f64 / n } else { 1.0 }
    }

    /// `ln L(r_k) − ln L(1)` at grid exponent `k`; `None` off the grid.
    pub fn log_lr(&self, k: i32) -> Option<f64> {
        if (GRID_MIN..=GRID_MAX).contains(&k) { Some(self.log_lr[(k - GRID_MIN) as usize]) } else { None }
    }

    /// Evidence against `r ≤ r_k`: the mean likelihood ratio over `alternatives` (grid offsets)
    /// above `r_k`. Alternatives past the grid's end count as zero, which keeps it an e-process.
    pub fn harm_evidence_at(&self, k: i32, alternatives: &[i32]) -> f64 {
        let Some(null) = self.log_lr(k) else { return 0.0 };
        let sum: f64 = alternatives.iter().filter_map(|d| self.log_lr(k + d)).map(|l| (l - null).exp()).sum();
        sum / alternatives.len().max(1) as f64
    }

    /// Evidence against "the canary is no worse than stable" (`r ≤ 1`).
    pub fn harm_evidence(&self, alternatives: &[i32]) -> f64 {
        self.harm_evidence_at(0, alternatives)
    }

    /// Evidence against `r ≥ r_k`: the mean likelihood ratio over [`SAFETY_ALTERNATIVES`] below.
    pub fn safety_evidence_at(&self, k: i32) -> f64 {
        let Some(null) = self.log_lr(k) else { return 0.0 };
        let sum: f64 = SAFETY_ALTERNATIVES.iter().filter_map(|d| self.log_lr(k - d)).map(|l| (l - null).exp()).sum();
        sum / SAFETY_ALTERNATIVES.len() as f64
    }

    /// Upper end of the `1 − α` confidence sequence on `r`: every grid value at or above it has
    /// been rejected as "the canary is at least this much worse". `None` while it is unbounded.
    pub fn upper_bound(&self, alpha: f64) -> Option<f64> {
        let threshold = 1.0 / alpha;
        let mut bound = None;
        for k in (GRID_MIN..=GRID_MAX).rev() {
            if self.safety_evidence_at(k) >= threshold {
                bound = Some(grid_ratio(k));
            } else {
                break;
            }
        }
        bound
    }

    /// Lower end of the `1 − α` confidence sequence on `r`: every grid value at or below it has
    /// been rejected as "the canary is at most this much worse". `None` while nothing is rejected.
    pub fn lower_bound(&self, alpha: f64, alternatives: &[i32]) -> Option<f64> {
        let threshold = 1.0 / alpha;
        let mut bound = None;
        for k in GRID_MIN..=GRID_MAX {
            if self.harm_evidence_at(k, alternatives) >= threshold {
                bound = Some(grid_ratio(k));
            } else {
                break;
            }
        }
        bound
    }

    /// Stable's event rate weighted by the canary's requests in each window: the rate the canary
    /// would show if it behaved like stable. `None` before any window with both versions.
    pub fn matched_stable_rate(&self) -> Option<f64> {
        (self.matched_canary_requests > 0).then(|| self.matched_expected_events / self.matched_canary_requests as f64)
    }

    /// The observed event rates (canary, stable), `None` for a version without requests.
    pub fn rates(&self) -> (Option<f64>, Option<f64>) {
        let rate = |e: u64, n: u64| (n > 0).then(|| e as f64 / n as f64);
        (rate(self.canary_events, self.canary_requests), rate(self.stable_events, self.stable_requests))
    }
}

/// Stable's long-run reference rate is its time-uniform upper bound at this level.
pub const REFERENCE_LEVEL: f64 = 0.001;
/// Windows of stable's recent rate (the current one and those before it) that can raise the
/// reference: an incident both versions share lifts it while it lasts.
pub const RECENT_WINDOWS: usize = 6;
/// Weight of the reference test in failure evidence. It is the faster of the two where stable's
/// failures come in rare, large bursts (its window counts then say little, its long-run rate
/// much), the slower where stable's rate moves; a quarter keeps false rollbacks where the share
/// test alone had them (`bench/ANALYSIS.md`).
pub const REFERENCE_WEIGHT: f64 = 0.25;

/// A lower estimate of a rate from raw `(trials, events)`: 2.33 standard errors below.
fn rate_lower_estimate((n, e): (u64, u64)) -> f64 {
    if n == 0 {
        return 0.0;
    }
    ((e as f64 - 2.33 * (e as f64).sqrt()) / n as f64).max(0.0)
}

/// `ln` of one window's likelihood ratio for risk ratio `r` against `r = 1`:
/// `e_c·ln(π/s) + e_b·ln((1−π)/(1−s))`. Counts may be fractional (discounted for clustering).
pub fn window_log_lr(r: f64, s: f64, e_c: f64, e_b: f64) -> f64 {
    let pi = r * s / (r * s + 1.0 - s);
    let mut l = 0.0;
    if e_c > 0.0 {
        l += e_c * (pi / s).ln();
    }
    if e_b > 0.0 {
        l += e_b * ((1.0 - pi) / (1.0 - s)).ln();
    }
    l
}

/// The closed-form Bayes factor of a Beta(`a`, `b`) mixture over the canary's share of events
/// against the share `s` (constant across windows): `B(a + e_c, b + e_b) / B(a, b) / (s^e_c (1−s)^e_b)`,
/// returned as its logarithm. A cross-check on the grid mixture, and a valid e-value itself.
pub fn ln_beta_mixture_bayes_factor(e_c: u64, e_b: u64, s: f64, a: f64, b: f64) -> f64 {
    let (x, y) = (e_c as f64, e_b as f64);
    ln_beta(a + x, b + y) - ln_beta(a, b) - x * s.ln() - y * (1.0 - s).ln()
}

/// Prior of the mixture behind [`rate_upper_bound`]: Jeffreys' Beta(½, ½).
const RATE_PRIOR: (f64, f64) = (0.5, 0.5);

/// `ln` of the Beta-mixture e-value against "the event probability is `p`", after `events` of
/// `trials` (fractional when discounted for clustering).
pub fn ln_rate_evidence(events: f64, trials: f64, p: f64) -> f64 {
    let (a, b) = RATE_PRIOR;
    let x = events.min(trials).max(0.0);
    let n = trials.max(0.0);
    let mut l = ln_beta(a + x, b + n - x) - ln_beta(a, b);
    if x > 0.0 {
        l -= x * p.ln();
    }
    if n > x {
        l -= (n - x) * (1.0 - p).ln();
    }
    l
}

/// Time-uniform upper confidence bound on an event probability after `events` of `trials`:
/// the largest `p` the Beta-mixture e-value has not rejected at level `alpha`. Holds at every
/// tick simultaneously, so it may be checked as often as wanted. `1.0` without trials.
pub fn rate_upper_bound(events: f64, trials: f64, alpha: f64) -> f64 {
    if trials <= 0.0 {
        return 1.0;
    }
    let target = (1.0 / alpha).ln();
    let mle = events.min(trials).max(0.0) / trials;
    let (mut lo, mut hi): (f64, f64) = (mle, 1.0 - 1e-15);
    if ln_rate_evidence(events, trials, hi) < target {
        return 1.0;
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if ln_rate_evidence(events, trials, mid) >= target {
            hi = mid;
        } else {
            lo = mid;
        }
        if hi - lo < 1e-12 {
            break;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_events_or_one_sided_windows_carry_no_evidence() {
        let mut e = RiskRatioEProcess::new();
        e.observe(100, 0, 1900, 0);
        e.observe(0, 0, 1000, 5);
        e.observe(50, 3, 0, 0);
        assert_eq!(e.harm_evidence(&FAILURE_ALTERNATIVES), 1.0);
        assert_eq!(e.informative_windows, 0);
        assert_eq!(e.upper_bound(0.01), None);
        assert_eq!(e.lower_bound(0.01, &FAILURE_ALTERNATIVES), None);
    }

    #[test]
    fn a_shared_incident_does_not_blame_the_canary() {
        // 5% share; an incident fails 30% of both versions' requests.
        let mut e = RiskRatioEProcess::new();
        for _ in 0..30 {
            e.observe(50, 15, 950, 285);
        }
        assert!(e.harm_evidence(&FAILURE_ALTERNATIVES) < 1.0, "{}", e.harm_evidence(&FAILURE_ALTERNATIVES));
    }

    #[test]
    fn a_much_worse_canary_is_caught_and_bounded_below() {
        let mut e = RiskRatioEProcess::new();
        for _ in 0..10 {
            e.observe(50, 5, 950, 1);
        }
        assert!(e.harm_evidence(&FAILURE_ALTERNATIVES) > 1e6);
        let lower = e.lower_bound(0.01, &FAILURE_ALTERNATIVES).unwrap();
        assert!(lower > 10.0, "{lower}");
    }

    #[test]
    fn an_equal_canary_with_much_data_is_bounded_above() {
        let mut e = RiskRatioEProcess::new();
        for _ in 0..200 {
            e.observe(500, 50, 500, 50);
        }
        let upper = e.upper_bound(0.01).unwrap();
        assert!(upper > 1.0 && upper < 1.2, "{upper}");
        assert!(e.harm_evidence(&FAILURE_ALTERNATIVES) < 1.0);
    }

    #[test]
    fn the_matched_stable_rate_follows_the_canary_through_weight_steps() {
        // An incident (50% failures) while the canary had 1% of traffic, then a clean 50/50 step:
        // stable's overall rate is inflated, the rate the canary should be held to is not.
        let mut e = RiskRatioEProcess::new();
        e.observe(10, 5, 990, 495);
        e.observe(1000, 0, 1000, 0);
        assert!((e.rates().1.unwrap() - 495.0 / 1990.0).abs() < 1e-12);
        assert!((e.matched_stable_rate().unwrap() - 5.0 / 1010.0).abs() < 1e-12);
    }

    /// The window behind most false rollbacks on bursty traffic: one second in which the canary
    /// failed 9 of its 22 requests (and 0 otherwise) against 3 of 1,767 on stable. Counted as 9
    /// independent failures it takes the evidence past the 200 a Fail needs; as the one burst it
    /// is, it stays far below.
    #[test]
    fn a_burst_second_is_one_event_not_nine() {
        let canary: Vec<(u64, u64)> =
            (0..10).map(|i| (if i < 9 { 22 } else { 20 }, if i == 4 { 9 } else { 0 })).collect();
        let stable: Vec<(u64, u64)> = (0..10).map(|i| (if i < 7 { 177 } else { 176 }, u64::from(i % 3 == 0))).collect();
        let mut independent = RiskRatioEProcess::new();
        independent.observe(218, 9, 1767, 4);
        assert!(independent.harm_evidence(&FAILURE_ALTERNATIVES) > 200.0);
        let mut clustered = RiskRatioEProcess::new();
        // Twenty quiet windows first, as a rollout would have had.
        for _ in 0..20 {
            clustered.observe_seconds(&[(22, 0); 10], &[(177, 0); 10]);
        }
        clustered.observe_seconds(&canary, &stable);
        let evidence = clustered.harm_evidence(&FAILURE_ALTERNATIVES);
        assert!(evidence < 10.0, "evidence {evidence}");
        assert!(clustered.canary_discount() > 1.0);
    }

    #[test]
    fn independent_failures_are_not_discounted() {
        let mut e = RiskRatioEProcess::new();
        for k in 0..50u64 {
            // Failures spread one per second, as independent ones mostly are at these rates.
            let canary: Vec<(u64, u64)> = (0..10).map(|i| (5, u64::from((k + i) % 17 == 0))).collect();
            let stable: Vec<(u64, u64)> = (0..10).map(|i| (95, u64::from((k + i) % 11 == 0))).collect();
            e.observe_seconds(&canary, &stable);
        }
        assert!((e.canary_discount() - 1.0).abs() < 1e-9, "{}", e.canary_discount());
    }

    /// Stable fails one request a window (0.1%) and, once every 200 s, half of a second's: rare
    /// large bursts, none of which fell in the rollout so far. Its windows then say little of its
    /// rate, its history much. A canary failing as often as stable's long run is no worse; one
    /// failing ten times as often is, and the reference test shows it on its own.
    #[test]
    fn the_reference_test_holds_the_canary_to_stables_long_run_rate() {
        let stable = |t: usize| -> Vec<(u64, u64)> {
            (0..10).map(|i| (95, if (t + i) % 200 == 7 { 47 } else { u64::from(i == 5) })).collect()
        };
        let history = |e: &mut RiskRatioEProcess| {
            for w in 0..90 {
                e.observe_stable_history(&stable(w * 10));
            }
        };
        let (mut healthy, mut bad) = (RiskRatioEProcess::with_reference(), RiskRatioEProcess::with_reference());
        history(&mut healthy);
        history(&mut bad);
        // Canary seconds failing 3 of 5 requests: once in 400 s (about stable's mean rate), or
        // once in 15 s (ten times it). Stable's rollout windows hold no burst.
        for w in 0..18 {
            let canary = |every: usize| -> Vec<(u64, u64)> {
                (0..10).map(|i| (5, if (w * 10 + i) % every == 3 { 3 } else { 0 })).collect()
            };
            let quiet: Vec<(u64, u64)> = (0..10).map(|i| (95, u64::from(i == 5))).collect();
            healthy.observe_seconds(&canary(400), &quiet);
            bad.observe_seconds(&canary(15), &quiet);
        }
        let healthy_evidence = healthy.failure_evidence(&FAILURE_ALTERNATIVES);
        assert!(healthy_evidence < 10.0, "{healthy_evidence}");
        let (reference, share) =
            (bad.reference_evidence(&FAILURE_ALTERNATIVES), bad.harm_evidence(&FAILURE_ALTERNATIVES));
        assert!(reference >= 100.0 && share >= 100.0, "reference {reference}, share {share}");
        assert!(bad.failure_evidence(&FAILURE_ALTERNATIVES) >= 100.0);
        assert!(healthy.reference_evidence(&FAILURE_ALTERNATIVES) < 10.0);
    }

    #[test]
    fn a_shared_incident_raises_the_reference() {
        let mut e = RiskRatioEProcess::with_reference();
        for _ in 0..90 {
            e.observe_stable_history(&[(95, 0); 10]);
        }
        // Both versions fail 30% for a minute.
        for _ in 0..6 {
            e.observe_seconds(&[(5, 2); 10], &[(95, 28); 10]);
        }
        assert!(e.reference_evidence(&FAILURE_ALTERNATIVES) < 1.0, "{}", e.reference_evidence(&FAILURE_ALTERNATIVES));
    }

    /// A rollout whose state was saved before the reference test existed goes on judging by the
    /// share test alone, with the evidence it had.
    #[test]
    fn a_state_saved_before_the_reference_test_still_judges() {
        let mut e = RiskRatioEProcess::with_reference();
        e.observe(50, 1, 950, 1);
        let mut json = serde_json::to_value(&e).unwrap();
        for field in ["referenceLogLr", "historyCounts", "historyEffectiveTrials", "recentStable"] {
            json.as_object_mut().unwrap().remove(field).expect(field);
        }
        let mut old: RiskRatioEProcess = serde_json::from_value(json).unwrap();
        for _ in 0..10 {
            old.observe(50, 5, 950, 1);
        }
        assert_eq!(old.reference_evidence(&FAILURE_ALTERNATIVES), 1.0);
        let share = old.harm_evidence(&FAILURE_ALTERNATIVES);
        assert!(share > 100.0 && old.failure_evidence(&FAILURE_ALTERNATIVES) == share);
    }

    #[test]
    fn rate_bound_shrinks_with_clean_traffic() {
        assert_eq!(rate_upper_bound(0.0, 0.0, 0.01), 1.0);
        let few = rate_upper_bound(0.0, 200.0, 0.005);
        let many = rate_upper_bound(0.0, 20_000.0, 0.005);
        assert!(many < few && few < 0.05, "{few} {many}");
        assert!(rate_upper_bound(10.0, 1000.0, 0.01) > 0.01);
    }
}
