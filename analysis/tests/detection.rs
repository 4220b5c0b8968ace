//! Regressions are caught, in simulated time, well before a threshold check once a minute would
//! catch them, and hurt fewer users. Detection times are simulated seconds, not wall-clock time.

use shifter_analysis::simulate::threshold::ThresholdConfig;
use shifter_analysis::simulate::{
    Scenario, Summary, failure_regression, generate, latency_regression, run_shifter, run_threshold, shifted_latency,
    summarize,
};
use shifter_analysis::{AnalyzerConfig, Target};

fn target() -> Target {
    Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() }
}

/// shifter with defaults and the threshold baseline (rollback after 5 failed checks) on the same streams.
fn compare(scenario: &Scenario, seeds: u64) -> (Summary, Summary) {
    let config = AnalyzerConfig::defaults(target());
    let baseline = ThresholdConfig::common_defaults(5);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for seed in 0..seeds {
        let (history, seconds) = generate(scenario, 7_000 + seed);
        ours.push(run_shifter(scenario, &history, &seconds, &config));
        theirs.push(run_threshold(scenario, &seconds, &baseline));
    }
    (summarize(&ours, 0), summarize(&theirs, 0))
}

#[test]
fn a_tenfold_jump_in_failures_is_caught_in_seconds() {
    let (ours, theirs) = compare(&failure_regression(0.001, 0.10, 600), 100);
    assert_eq!(ours.rollbacks, 100);
    assert!(ours.median_s.unwrap() <= 20, "{ours:?}");
    assert_eq!(theirs.median_s, Some(300), "{theirs:?}");
    assert!(ours.mean_excess_failures * 5.0 < theirs.mean_excess_failures, "{ours:?} {theirs:?}");
}

#[test]
fn one_percent_more_failures_at_five_requests_a_second_is_caught_in_minutes() {
    let (ours, theirs) = compare(&failure_regression(0.001, 0.011, 900), 100);
    assert_eq!(ours.rollbacks, 100, "{ours:?}");
    assert!(ours.median_s.unwrap() <= 90 && ours.p90_s.unwrap() <= 240, "{ours:?}");
    assert!(theirs.median_s.unwrap() >= 4 * ours.median_s.unwrap(), "{ours:?} {theirs:?}");
    assert_eq!(ours.passed_first, 0, "a failing canary was promoted: {ours:?}");
}

#[test]
fn a_uniformly_slower_canary_is_caught_and_never_promoted() {
    let (ours, theirs) = compare(&latency_regression("shift", shifted_latency(), 900), 100);
    assert_eq!(ours.rollbacks, 100, "{ours:?}");
    assert!(ours.median_s.unwrap() <= 300, "{ours:?}");
    assert_eq!(ours.passed_first, 0, "{ours:?}");
    assert!(theirs.rollbacks < 10, "the p99 ≤ 500 ms check should not see this: {theirs:?}");
}
