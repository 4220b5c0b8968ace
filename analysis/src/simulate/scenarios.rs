//! Traffic shapes beyond independent failures, each a constructor of a plain [`Scenario`]: failure
//! bursts per version or shared, bursts lasting several seconds, clustered latency spikes, a canary
//! that drifts, trickle traffic, high failure rates, and bad canaries on bursty streams. Every
//! constructor says what it models; its scenario's name says it again in the runner's table.

use super::bursts::{BurstLength, Bursts, BurstsHit};
use super::stream::{LatencyModel, Scenario, Version};
use super::{Z_99, failure_regression};
use crate::counts::percent;

/// Total traffic of every shape but trickle, in requests per second.
pub const TOTAL_RPS: f64 = 100.0;

/// The latency of a spike second: the healthy latency four times slower (median 240 ms, like the
/// shared incident of the healthy rollout), so about 37% of its requests are slower than 300 ms.
pub fn spike_latency() -> LatencyModel {
    LatencyModel::lognormal(240.0, (300.0f64 / 60.0).ln() / Z_99)
}

/// A percentage without trailing zeros: 0.005 → "0.5%", 0.2 → "20%".
fn pct(fraction: f64) -> String {
    format!("{}%", (fraction * 100_000.0).round() / 1000.0)
}

fn rates(canary_rps: f64, total_rps: f64) -> String {
    format!("{} vs {} req/s", canary_rps, total_rps - canary_rps)
}

fn length(l: BurstLength) -> String {
    match l {
        BurstLength::Fixed(s) => format!("{s} s"),
        BurstLength::Geometric(mean) => format!("~{mean} s geometric"),
    }
}

/// "2% of s × 20% failing, 1 s": how often, how bad and how long a failure burst is.
pub fn describe(b: &Bursts) -> String {
    let what = match (&b.latency, b.failure > 0.0) {
        (Some(_), false) => "slow".to_string(),
        (Some(_), true) => format!("slow, {} failing", pct(b.failure)),
        (None, _) => format!("{} failing", pct(b.failure)),
    };
    format!("{} of s × {what}, {}", pct(b.share), length(b.length))
}

/// A healthy canary (identical to stable, 0.1% of requests failing on their own) taking
/// `canary_rps` of 100 req/s for `duration_s`, no bursts: the shape every other one adds to.
pub fn healthy(canary_rps: f64, duration_s: i64) -> Scenario {
    Scenario {
        name: format!("healthy; {}", rates(canary_rps, TOTAL_RPS)),
        steps: vec![(0, canary_rps / TOTAL_RPS)],
        ..failure_regression(0.001, 0.001, duration_s)
    }
}

/// Failure bursts of `failure` over `share` of seconds, `length` long.
pub fn failure_bursts(hits: BurstsHit, share: f64, failure: f64, length: BurstLength) -> Bursts {
    Bursts { hits, share, length, failure, latency: None }
}

/// A healthy canary on a platform where each pod has its own failure bursts (a GC pause, a
/// restart, a flaky connection to a dependency): both versions have the same burst process,
/// drawn independently, so the canary's mean failure rate equals stable's — but its bursts fall
/// in other seconds than stable's and never cancel out.
pub fn own_bursts(share: f64, failure: f64, length: BurstLength, canary_rps: f64, duration_s: i64) -> Scenario {
    let b = failure_bursts(BurstsHit::Each, share, failure, length);
    Scenario {
        name: format!("healthy, own bursts {}; {}", describe(&b), rates(canary_rps, TOTAL_RPS)),
        bursts: vec![b],
        ..healthy(canary_rps, duration_s)
    }
}

/// A healthy canary when something both versions depend on fails in bursts (a database
/// failover, a noisy node): both versions fail in the same seconds.
pub fn shared_bursts(share: f64, failure: f64, length: BurstLength, canary_rps: f64, duration_s: i64) -> Scenario {
    let b = failure_bursts(BurstsHit::Both, share, failure, length);
    Scenario {
        name: format!("healthy, shared bursts {}; {}", describe(&b), rates(canary_rps, TOTAL_RPS)),
        bursts: vec![b],
        ..healthy(canary_rps, duration_s)
    }
}

/// A healthy canary when both kinds happen: shared bursts and each version's own.
pub fn shared_and_own_bursts(shared: Bursts, own: Bursts, canary_rps: f64, duration_s: i64) -> Scenario {
    let shared = Bursts { hits: BurstsHit::Both, ..shared };
    let own = Bursts { hits: BurstsHit::Each, ..own };
    Scenario {
        name: format!(
            "healthy, shared bursts {} and own bursts {}; {}",
            describe(&shared),
            describe(&own),
            rates(canary_rps, TOTAL_RPS)
        ),
        bursts: vec![shared, own],
        ..healthy(canary_rps, duration_s)
    }
}

/// A healthy canary whose slow requests cluster: during `share` of seconds (one second each) a
/// version's requests take [`spike_latency`] — each version on its own (`BurstsHit::Each`: a GC
/// pause) or both together (`BurstsHit::Both`: a slow dependency). No extra failures.
pub fn latency_spikes(share: f64, hits: BurstsHit, canary_rps: f64, duration_s: i64) -> Scenario {
    let b = Bursts { hits, share, length: BurstLength::Fixed(1), failure: 0.0, latency: Some(spike_latency()) };
    let whose = if hits == BurstsHit::Both { "shared" } else { "own" };
    Scenario {
        name: format!(
            "healthy, {whose} latency spikes {} (4× latency); {}",
            describe(&b),
            rates(canary_rps, TOTAL_RPS)
        ),
        bursts: vec![b],
        ..healthy(canary_rps, duration_s)
    }
}

/// A healthy scenario's name without "healthy, ": the shape a bad canary is put on.
fn shape(name: &str) -> &str {
    name.strip_prefix("healthy, ").unwrap_or(name)
}

/// Bisection for the `x` in `[low, high]` where the increasing `f(x)` reaches `target`.
fn solve(low: f64, high: f64, target: f64, f: impl Fn(f64) -> f64) -> Option<f64> {
    if f(high) < target || f(low) > target {
        return None;
    }
    let (mut lo, mut hi) = (low, high);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < target { lo = mid } else { hi = mid }
    }
    Some(0.5 * (lo + hi))
}

/// `base` with a bad canary that bursts more often: it gets bursts of its own on top of the
/// scenario's (`like`'s failure probability and length), as often as needed for its mean failure
/// rate to be `ratio` × stable's. Models a canary that pauses, restarts or loses a dependency more
/// often than stable (a leak, a retry storm) — bursts themselves are normal, more of them are not.
///
/// # Panics
/// When bursts like `like` cannot raise the canary's failure rate that far (even in every second).
pub fn more_frequent_canary_bursts(base: Scenario, like: &Bursts, ratio: f64) -> Scenario {
    let stable = base.mean_failure(Version::Stable);
    let with = |share: f64| {
        let mut s = base.clone();
        s.bursts.push(Bursts { hits: BurstsHit::Canary, share, ..like.clone() });
        s
    };
    let share =
        solve(0.0, 1.0, ratio * stable, |share| with(share).mean_failure(Version::Canary)).unwrap_or_else(|| {
            panic!("bursts of {} cannot make the canary {ratio}× stable in {}", describe(like), base.name)
        });
    let mut s = with(share);
    s.name =
        format!("canary {ratio}× stable failures (more bursts: +{:.1}% of s); {}", share * 100.0, shape(&base.name));
    s
}

/// `base` (whose bursts hit each version on its own) with a bad canary whose bursts are worse: it
/// bursts as often and as long as stable, but a larger share of a burst second's requests fail,
/// enough for its mean failure rate to be `ratio` × stable's. Models a canary that handles a
/// dependency's hiccup worse (no retry, a shorter timeout).
///
/// # Panics
/// When even bursts that fail every request cannot make the canary that bad.
pub fn bigger_canary_bursts(base: Scenario, ratio: f64) -> Scenario {
    let stable = base.mean_failure(Version::Stable);
    let with = |failure: f64| {
        let mut s = base.clone();
        s.bursts = base
            .bursts
            .iter()
            .flat_map(|b| match b.hits {
                BurstsHit::Each => vec![
                    Bursts { hits: BurstsHit::Stable, ..b.clone() },
                    Bursts { hits: BurstsHit::Canary, failure, ..b.clone() },
                ],
                _ => vec![b.clone()],
            })
            .collect();
        s
    };
    let failure = solve(0.0, 1.0, ratio * stable, |f| with(f).mean_failure(Version::Canary))
        .unwrap_or_else(|| panic!("bigger bursts cannot make the canary {ratio}× stable in {}", base.name));
    let mut s = with(failure);
    s.name =
        format!("canary {ratio}× stable failures (its bursts {:.1}% failing); {}", failure * 100.0, shape(&base.name));
    s
}

/// An independent-failure regression (`stable_failure` → `canary_failure`, from the start) on
/// streams that also carry `bursts`: what detecting the plain targets costs on a bursty platform.
pub fn regression_with_bursts(
    stable_failure: f64,
    canary_failure: f64,
    bursts: Bursts,
    canary_rps: f64,
    duration_s: i64,
) -> Scenario {
    let whose = if bursts.hits == BurstsHit::Both { "shared" } else { "own" };
    Scenario {
        name: format!(
            "failures {} → {} with {whose} bursts {}; {}",
            percent(stable_failure),
            percent(canary_failure),
            describe(&bursts),
            rates(canary_rps, TOTAL_RPS)
        ),
        steps: vec![(0, canary_rps / TOTAL_RPS)],
        bursts: vec![bursts],
        ..failure_regression(stable_failure, canary_failure, duration_s)
    }
}

/// A canary that drifts slowly: its failure probability grows linearly from stable's at the start
/// to `end_failure` at the end of the run (a cache that fills, a leak that grows).
pub fn drifting_canary(stable_failure: f64, end_failure: f64, canary_rps: f64, duration_s: i64) -> Scenario {
    Scenario {
        name: format!(
            "drift: canary failures {} → {} over {} min; {}",
            percent(stable_failure),
            percent(end_failure),
            duration_s / 60,
            rates(canary_rps, TOTAL_RPS)
        ),
        steps: vec![(0, canary_rps / TOTAL_RPS)],
        canary_failure_at_end: Some(end_failure),
        ..failure_regression(stable_failure, stable_failure, duration_s)
    }
}

/// Trickle traffic: `total_rps` in all (e.g. 2 req/s), the canary taking `canary_share` of it,
/// failures `stable_failure` → `canary_failure` (equal: a healthy canary).
pub fn trickle(
    total_rps: f64,
    canary_share: f64,
    stable_failure: f64,
    canary_failure: f64,
    duration_s: i64,
) -> Scenario {
    let what = if stable_failure == canary_failure {
        format!("healthy at {} failures", percent(stable_failure))
    } else {
        format!("failures {} → {}", percent(stable_failure), percent(canary_failure))
    };
    Scenario {
        name: format!("trickle, {what}; {}", rates(total_rps * canary_share, total_rps)),
        total_rps,
        steps: vec![(0, canary_share)],
        ..failure_regression(stable_failure, canary_failure, duration_s)
    }
}

/// `base` with failure bursts added (its name says which).
pub fn with_bursts(base: Scenario, bursts: Bursts) -> Scenario {
    let whose = if bursts.hits == BurstsHit::Both { "shared" } else { "own" };
    let mut s = base;
    s.name = format!("{}, {whose} bursts {}", s.name, describe(&bursts));
    s.bursts.push(bursts);
    s
}

/// High failure rates on both versions (a service that sheds load, a flaky upstream): stable at
/// `stable_failure` (1–5%), the canary at `canary_failure` (equal: healthy), independent failures.
pub fn noisy(stable_failure: f64, canary_failure: f64, canary_rps: f64, duration_s: i64) -> Scenario {
    let what = if stable_failure == canary_failure {
        format!("healthy at {} failures", percent(stable_failure))
    } else {
        format!(
            "failures {} → {} ({}× stable)",
            percent(stable_failure),
            percent(canary_failure),
            (canary_failure / stable_failure * 100.0).round() / 100.0
        )
    };
    Scenario {
        name: format!("{what}; {}", rates(canary_rps, TOTAL_RPS)),
        steps: vec![(0, canary_rps / TOTAL_RPS)],
        ..failure_regression(stable_failure, canary_failure, duration_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::generate;

    /// Observed failure rate of each version over many seeds.
    fn observed(s: &Scenario, seeds: u64) -> (f64, f64) {
        let (mut c, mut b) = ((0u64, 0u64), (0u64, 0u64));
        for seed in 0..seeds {
            for w in generate(s, seed).1 {
                c = (c.0 + w.canary.failures, c.1 + w.canary.requests);
                b = (b.0 + w.stable.failures, b.1 + w.stable.requests);
            }
        }
        (c.0 as f64 / c.1 as f64, b.0 as f64 / b.1 as f64)
    }

    #[test]
    fn a_healthy_canary_fails_as_often_as_stable_under_its_own_bursts() {
        let s = own_bursts(0.02, 0.5, BurstLength::Geometric(5.0), 50.0, 3600);
        let want = 0.98 * 0.001 + 0.02 * 0.5;
        assert!((s.mean_failure(Version::Canary) - want).abs() < 1e-12);
        assert!((s.mean_failure(Version::Stable) - want).abs() < 1e-12);
        let (canary, stable) = observed(&s, 20);
        assert!((canary / want - 1.0).abs() < 0.1 && (stable / want - 1.0).abs() < 0.1, "{canary} {stable} vs {want}");
    }

    #[test]
    fn bad_canaries_on_bursty_streams_fail_ten_times_as_often() {
        let base = own_bursts(0.01, 0.2, BurstLength::Fixed(1), 50.0, 3600);
        let like = base.bursts[0].clone();
        let stable = base.mean_failure(Version::Stable);
        for bad in [
            more_frequent_canary_bursts(base.clone(), &like, 10.0),
            bigger_canary_bursts(own_bursts(0.05, 0.05, BurstLength::Fixed(1), 50.0, 3600), 10.0),
        ] {
            let ratio = bad.mean_failure(Version::Canary) / bad.mean_failure(Version::Stable);
            assert!((ratio - 10.0).abs() < 1e-6, "{}: {ratio}", bad.name);
            let (canary, stable_seen) = observed(&bad, 10);
            assert!((canary / stable_seen / 10.0 - 1.0).abs() < 0.15, "{}: {canary} vs {stable_seen}", bad.name);
        }
        assert!((base.mean_failure(Version::Stable) - stable).abs() < 1e-15, "the base scenario is unchanged");
    }

    #[test]
    fn a_drifting_canary_ends_at_its_final_rate() {
        let s = drifting_canary(0.001, 0.021, 5.0, 1000);
        assert!((s.expected_rates(Version::Canary, 0).0 - 0.001).abs() < 1e-12);
        assert!((s.expected_rates(Version::Canary, 500).0 - 0.011).abs() < 1e-12);
        assert!((s.mean_failure(Version::Canary) - 0.011).abs() < 1e-4);
        assert!((s.expected_rates(Version::Stable, 999).0 - 0.001).abs() < 1e-12);
    }

    #[test]
    fn latency_spikes_slow_a_burst_second_without_failing_it() {
        let s = latency_spikes(0.05, BurstsHit::Each, 50.0, 600);
        let (failure, slow) = s.expected_rates(Version::Canary, 10);
        assert!((failure - 0.001).abs() < 1e-12);
        let spike = crate::simulate::bursts::slow_share(&spike_latency());
        assert!((spike - 0.3735).abs() < 1e-3 && (slow - (0.95 * 0.01 + 0.05 * spike)).abs() < 1e-12, "{spike} {slow}");
        let mut slow_seen = (0, 0);
        for seed in 0..10 {
            for w in generate(&s, seed).1 {
                slow_seen = (
                    slow_seen.0 + w.canary.slower_than(crate::simulate::STABLE_P99_BUCKET),
                    slow_seen.1 + w.canary.timed(),
                );
            }
        }
        let seen = slow_seen.0 as f64 / slow_seen.1 as f64;
        assert!((seen / slow - 1.0).abs() < 0.1, "{seen} vs {slow}");
    }

    #[test]
    fn names_say_the_shape() {
        assert_eq!(
            own_bursts(0.005, 0.2, BurstLength::Fixed(1), 5.0, 60).name,
            "healthy, own bursts 0.5% of s × 20% failing, 1 s; 5 vs 95 req/s"
        );
        assert_eq!(
            shared_bursts(0.02, 0.5, BurstLength::Geometric(30.0), 50.0, 60).name,
            "healthy, shared bursts 2% of s × 50% failing, ~30 s geometric; 50 vs 50 req/s"
        );
        let base = own_bursts(0.01, 0.2, BurstLength::Fixed(1), 5.0, 60);
        let like = base.bursts[0].clone();
        assert_eq!(
            more_frequent_canary_bursts(base, &like, 10.0).name,
            "canary 10× stable failures (more bursts: +13.7% of s); own bursts 1% of s × 20% failing, 1 s; 5 vs 95 req/s"
        );
        assert_eq!(trickle(2.0, 0.1, 0.001, 0.001, 60).name, "trickle, healthy at 0.10% failures; 0.2 vs 1.8 req/s");
        assert_eq!(noisy(0.02, 0.03, 5.0, 60).name, "failures 2.00% → 3.00% (1.5× stable); 5 vs 95 req/s");
    }
}
