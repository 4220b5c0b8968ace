//! A/A on bursty streams: real failures cluster (a GC pause, a restart, a dependency failing a
//! second's worth of requests), and a healthy canary on such a platform must still be rolled back
//! in at most a fraction α of runs. The canary has the same burst process as stable — drawn on its
//! own, or shared — so its mean failure rate equals stable's. A judge that treats every request as
//! an independent trial reads one canary burst as overwhelming evidence and fails this. The
//! companion test gives the same shapes a canary that bursts ten times as much and must catch it.

use shifter_analysis::simulate::measure::{Judges, binomial_upper, measure};
use shifter_analysis::simulate::scenarios::{more_frequent_canary_bursts, own_bursts, shared_bursts};
use shifter_analysis::simulate::{BurstLength, Bursts, BurstsHit, Scenario};
use shifter_analysis::{AnalyzerConfig, Target};

const SEEDS: u64 = 300;
const ALPHA: f64 = 0.01;
/// Ten minutes of rollout: 60 ticks of the default 10 s interval.
const DURATION_S: i64 = 600;
/// A 20% canary: 20 vs 80 req/s, so canary bursts are frequent enough to matter within a run.
const CANARY_RPS: f64 = 20.0;

fn judges(alpha: f64) -> Judges {
    let target =
        Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() };
    let mut shifter = AnalyzerConfig::defaults(target);
    shifter.alpha = alpha;
    Judges { shifter, thresholds: Vec::new() }
}

/// Rollbacks of shifter's defaults over `seeds` runs, split over two threads.
fn rollbacks(scenario: &Scenario, seeds: u64) -> u64 {
    let m = measure(scenario, 1_000_000..1_000_000 + seeds, 2, &judges(ALPHA));
    m.summaries[0].rollbacks as u64
}

fn assert_at_most_alpha(scenario: &Scenario) {
    let rollbacks = rollbacks(scenario, SEEDS);
    let limit = binomial_upper(SEEDS, ALPHA);
    eprintln!("{}: {rollbacks} of {SEEDS} healthy canaries rolled back (limit {limit})", scenario.name);
    assert!(
        rollbacks <= limit,
        "{}: {rollbacks} of {SEEDS} healthy canaries rolled back at alpha {ALPHA} (limit {limit})",
        scenario.name
    );
}

/// Each version fails 50% of its requests in 2% of seconds, on its own.
fn own_one_second() -> Scenario {
    own_bursts(0.02, 0.5, BurstLength::Fixed(1), CANARY_RPS, DURATION_S)
}

/// Both versions fail 50% of their requests in the same 2% of seconds.
fn shared_one_second() -> Scenario {
    shared_bursts(0.02, 0.5, BurstLength::Fixed(1), CANARY_RPS, DURATION_S)
}

/// Each version spends 2% of seconds in bursts of about 10 s failing 20% of requests.
fn own_ten_seconds() -> Scenario {
    own_bursts(0.02, 0.2, BurstLength::Geometric(10.0), CANARY_RPS, DURATION_S)
}

#[test]
fn healthy_canaries_with_their_own_one_second_bursts_are_rolled_back_at_most_alpha_of_the_time() {
    assert_at_most_alpha(&own_one_second());
}

#[test]
fn healthy_canaries_under_bursts_shared_with_stable_are_rolled_back_at_most_alpha_of_the_time() {
    assert_at_most_alpha(&shared_one_second());
}

#[test]
fn healthy_canaries_with_bursts_lasting_seconds_are_rolled_back_at_most_alpha_of_the_time() {
    assert_at_most_alpha(&own_ten_seconds());
}

#[test]
fn canaries_bursting_into_ten_times_stable_failures_are_rolled_back_on_the_same_shapes() {
    // The A/A tests above have teeth only if the same shapes with a bad canary are caught: here
    // the canary has extra bursts of the same kind, enough for ten times stable's failure rate,
    // within half an hour (bursts of ten seconds carry less evidence each, as they should).
    for base in [own_one_second(), shared_one_second(), own_ten_seconds()] {
        let like = Bursts { hits: BurstsHit::Canary, ..base.bursts[0].clone() };
        let bad = Scenario { duration_s: 1800, ..more_frequent_canary_bursts(base, &like, 10.0) };
        let caught = rollbacks(&bad, 40);
        assert_eq!(caught, 40, "{}: only {caught} of 40 bad canaries rolled back", bad.name);
    }
}
