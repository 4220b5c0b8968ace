//! A simulation harness for judges: per-second request, failure and latency streams for a canary
//! and its stable version, with weight steps, shared incidents and injected regressions. The same
//! streams feed shifter's analyzer and a threshold baseline configured like common defaults, so
//! detection times, false rollbacks and the failed requests a bad canary causes can be compared.
//!
//! Beyond independent failures, streams can carry failure and latency bursts (per version or
//! shared), a drifting canary, trickle traffic and high failure rates (`scenarios`); `grid` names
//! the scenario groups the simulation runner measures and `measure` runs them over many seeds.
//!
//! Randomness is a seeded xoshiro256++ generator, so every run is reproducible from its seed.

mod bursts;
pub mod grid;
pub mod measure;
mod run;
pub mod scenarios;
mod stream;
pub mod threshold;

pub use bursts::{BurstLength, Bursts, BurstsHit};
pub use run::{Outcome, Summary, run_shifter, run_threshold, summarize};
pub use stream::{Incident, LatencyModel, Rng, Scenario, Second, Version, generate, generate_seconds};

use shifter_proto::LATENCY_BOUNDS_MS;
use statrs::function::erf::erfc;

/// The standard normal quantile at 0.99 (scipy: `norm.ppf(0.99)`).
pub const Z_99: f64 = 2.326_347_874_040_840_8;
/// The standard normal quantile at 0.98 (scipy: `norm.ppf(0.98)`).
pub const Z_98: f64 = 2.053_748_910_631_823;

/// `P(X ≤ x)` for a log-normal latency with the given median and log-scale spread.
pub fn lognormal_cdf(x_ms: f64, median_ms: f64, sigma: f64) -> f64 {
    if x_ms <= 0.0 {
        return 0.0;
    }
    let z = (x_ms / median_ms).ln() / sigma;
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Probability of each latency bucket ([`LATENCY_BOUNDS_MS`] then `+Inf`) for a log-normal.
pub fn lognormal_buckets(median_ms: f64, sigma: f64) -> Vec<f64> {
    let mut below = 0.0;
    let mut out = Vec::with_capacity(LATENCY_BOUNDS_MS.len() + 1);
    for b in LATENCY_BOUNDS_MS {
        let c = lognormal_cdf(b, median_ms, sigma);
        out.push(c - below);
        below = c;
    }
    out.push(1.0 - below);
    out
}

/// Bucket index of 300 ms, the healthy service's p99.
pub const STABLE_P99_BUCKET: usize = 12;

/// The healthy service of every scenario: log-normal latency, median 60 ms, with exactly 1% of
/// requests slower than the 300 ms bucket bound — its p99 sits on a bucket bound.
pub fn healthy_latency() -> LatencyModel {
    LatencyModel::lognormal(60.0, (300.0f64 / 60.0).ln() / Z_99)
}

/// The healthy latency made slower by one factor, chosen so that 2% instead of 1% of requests are
/// slower than the stable p99 (300 ms).
pub fn shifted_latency() -> LatencyModel {
    let sigma = (300.0f64 / 60.0).ln() / Z_99;
    let factor = (sigma * (Z_99 - Z_98)).exp();
    LatencyModel::lognormal(60.0 * factor, sigma)
}

/// The healthy latency with one extra percent of requests moved beyond the stable p99 (300 ms)
/// and everything else unchanged: a tail-only regression, the hardest kind to see.
pub fn tail_latency() -> LatencyModel {
    let healthy = healthy_latency();
    let p99_bucket = STABLE_P99_BUCKET;
    let mut probs = healthy.probabilities().to_vec();
    let above: f64 = probs[p99_bucket + 1..].iter().sum();
    let below = 1.0 - above;
    let extra = 0.01;
    for (i, p) in probs.iter_mut().enumerate() {
        if i <= p99_bucket {
            *p *= (below - extra) / below;
        } else {
            *p *= (above + extra) / above;
        }
    }
    LatencyModel::from_probabilities(probs)
}

/// Failures from `stable_failure` (both) to `canary_failure` (canary, from the start), 5 req/s
/// canary against 95 req/s stable for `duration_s`.
pub fn failure_regression(stable_failure: f64, canary_failure: f64, duration_s: i64) -> Scenario {
    Scenario {
        name: format!(
            "failures {} → {}",
            crate::counts::percent(stable_failure),
            crate::counts::percent(canary_failure)
        ),
        duration_s,
        total_rps: 100.0,
        steps: vec![(0, 0.05)],
        stable_failure,
        canary_failure,
        regression_at_s: 0,
        stable_latency: healthy_latency(),
        canary_latency: healthy_latency(),
        incidents: Vec::new(),
        baseline_s: 900,
        bursts: Vec::new(),
        canary_failure_at_end: None,
    }
}

/// A latency regression (`canary_latency`) from the start, 5 req/s canary against 95 req/s stable.
pub fn latency_regression(name: &str, canary_latency: LatencyModel, duration_s: i64) -> Scenario {
    Scenario { name: name.to_string(), canary_latency, ..failure_regression(0.001, 0.001, duration_s) }
}

/// A healthy canary (identical to stable, 0.1% failures) for `duration_s` with weight steps
/// 5% → 10% → 20% → 50% at each quarter, and a shared incident (20% failures, 4× latency) for
/// three minutes starting a third of the way through.
pub fn healthy_rollout(duration_s: i64) -> Scenario {
    let q = duration_s / 4 / 60 * 60;
    let incident_at = duration_s / 3 / 60 * 60;
    Scenario {
        name: "healthy canary, weight steps and a shared incident".into(),
        steps: vec![(0, 0.05), (q, 0.10), (2 * q, 0.20), (3 * q, 0.50)],
        incidents: vec![Incident {
            from_s: incident_at,
            to_s: incident_at + 180,
            failure: 0.2,
            latency: LatencyModel::lognormal(240.0, (300.0f64 / 60.0).ln() / Z_99),
        }],
        ..failure_regression(0.001, 0.001, duration_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regressions_double_the_share_slower_than_stable_p99() {
        assert_eq!(LATENCY_BOUNDS_MS[STABLE_P99_BUCKET], 300.0);
        let slower = |m: &LatencyModel| m.probabilities()[STABLE_P99_BUCKET + 1..].iter().sum::<f64>();
        assert!((slower(&healthy_latency()) - 0.01).abs() < 1e-12);
        assert!((slower(&shifted_latency()) - 0.02).abs() < 1e-9, "{}", slower(&shifted_latency()));
        assert!((slower(&tail_latency()) - 0.02).abs() < 1e-12);
        assert!((tail_latency().probabilities().iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    /// FNV-1a over every count of a generated history and stream.
    fn fingerprint(s: &Scenario, seed: u64) -> u64 {
        let (baseline, seconds) = generate(s, seed);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |v: u64| {
            for byte in v.to_le_bytes() {
                h ^= u64::from(byte);
                h = h.wrapping_mul(0x100_0000_01b3);
            }
        };
        let mut backend = |c: &crate::BackendCounts| {
            for v in [c.requests, c.failures, c.failed_attempts, c.latency_counts.len() as u64] {
                eat(v);
            }
            c.latency_counts.iter().for_each(|v| eat(*v));
        };
        backend(&baseline);
        for s in &seconds {
            backend(&s.canary);
            backend(&s.stable);
        }
        h
    }

    #[test]
    fn scenarios_without_bursts_give_the_streams_they_always_gave() {
        // Fingerprints of the classic scenarios' streams (with 15 minutes of stable history before
        // the rollout): results measured on them stay comparable across versions of the harness.
        let cases = [
            (failure_regression(0.001, 0.011, 600), [0x157b33f698c13ef6, 0xae4930c0abeedc74, 0xfb4b86f277df73c5]),
            (failure_regression(0.001, 0.10, 600), [0x89b696396d2aa971, 0x5d9239b005ae48c4, 0x31b64d4141b3d7aa]),
            (
                latency_regression("s", shifted_latency(), 600),
                [0x28814a3d126587b1, 0x914398d34c97040e, 0x70f16ba9458fc08c],
            ),
            (
                latency_regression("t", tail_latency(), 600),
                [0x5e46603732ea1537, 0x9bb08ec699fb040e, 0x9fb1bb961e281f4a],
            ),
            (healthy_rollout(900), [0x45fcd57abe113faf, 0x962dbfea1c28f85c, 0xa750237070862b52]),
        ];
        for (s, want) in cases {
            for (seed, want) in [0u64, 7_000, 1_000_017].into_iter().zip(want) {
                assert_eq!(fingerprint(&s, seed), want, "{} seed {seed}", s.name);
            }
        }
    }
}
