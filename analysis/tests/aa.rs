//! A/A: a canary identical to stable, judged every tick through weight steps and a shared
//! incident, must be rolled back in at most a fraction α of runs. A judge that re-ran a
//! fixed-horizon test every tick ("peeking") fails this by a wide margin.

use shifter_analysis::simulate::measure::binomial_upper;
use shifter_analysis::simulate::{Scenario, generate, healthy_rollout, run_shifter};
use shifter_analysis::{AnalyzerConfig, Target};

const SEEDS: u64 = 500;

fn target() -> Target {
    Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() }
}

/// Rollbacks over `seeds` runs of `scenario`, split over two threads.
fn rollbacks(scenario: &Scenario, alpha: f64, seeds: u64) -> u64 {
    let mut config = AnalyzerConfig::defaults(target());
    config.alpha = alpha;
    let run = |range: std::ops::Range<u64>| {
        range
            .filter(|seed| {
                let (baseline, seconds) = generate(scenario, 1_000_000 + seed);
                run_shifter(scenario, &baseline, &seconds, &config).rolled_back_at.is_some()
            })
            .count() as u64
    };
    std::thread::scope(|s| {
        let half = s.spawn(|| run(0..seeds / 2));
        run(seeds / 2..seeds) + half.join().expect("simulation thread")
    })
}

#[test]
fn healthy_canaries_are_rolled_back_at_most_alpha_of_the_time() {
    let scenario = healthy_rollout(900);
    for alpha in [0.01, 0.1] {
        let rollbacks = rollbacks(&scenario, alpha, SEEDS);
        let limit = binomial_upper(SEEDS, alpha);
        eprintln!("alpha {alpha}: {rollbacks} of {SEEDS} healthy canaries rolled back");
        assert!(
            rollbacks <= limit,
            "alpha {alpha}: {rollbacks} of {SEEDS} healthy canaries rolled back (limit {limit})"
        );
    }
}

#[test]
fn the_same_rollout_with_a_bad_canary_is_rolled_back_every_time() {
    // The A/A test above has teeth only if the same streams and judge catch a real regression.
    let scenario = Scenario { canary_failure: 0.02, ..healthy_rollout(900) };
    assert_eq!(rollbacks(&scenario, 0.01, 40), 40);
}
