//! Runs shifter's analyzer and the threshold baseline on the same simulated streams and prints a
//! Markdown table of detection times, false rollbacks and the failed requests a bad canary causes.
//!
//! ```text
//! cargo run --release -p shifter-analysis --example simulate -- --seeds 500
//! ```

use std::time::Instant;

use shifter_analysis::simulate::threshold::ThresholdConfig;
use shifter_analysis::simulate::{
    Scenario, Summary, failure_regression, generate, healthy_rollout, latency_regression, run_shifter, run_threshold,
    shifted_latency, summarize, tail_latency,
};
use shifter_analysis::{AnalyzerConfig, Target};

fn main() {
    let mut seeds = 500u64;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seeds" => seeds = args.next().and_then(|v| v.parse().ok()).expect("--seeds N"),
            "--only" => only = args.next(),
            other => panic!("unknown argument {other}; use --seeds N [--only NAME-SUBSTRING]"),
        }
    }
    let target =
        Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() };
    let config = AnalyzerConfig::defaults(target);
    let scenarios = [
        failure_regression(0.001, 0.011, 1800),
        failure_regression(0.001, 0.10, 1800),
        latency_regression("latency shift: 1% → 2% slower than stable p99", shifted_latency(), 1800),
        latency_regression("tail only: 1% → 2% slower than stable p99", tail_latency(), 1800),
        healthy_rollout(3600),
    ];
    let baselines = [ThresholdConfig::common_defaults(1), ThresholdConfig::common_defaults(5)];
    println!("seeds per scenario: {seeds}; judge defaults: interval 10s, alpha 0.01, tolerance 1.2\n");
    println!(
        "| scenario (5 vs 95 req/s) | judge | rollbacks | median detection | p90 detection | excess failed requests | excess slow requests | first Pass (median) | passed before any rollback |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for s in scenarios.iter().filter(|s| only.as_ref().is_none_or(|o| s.name.contains(o.as_str()))) {
        let started = Instant::now();
        let mut ours = Vec::new();
        let mut theirs = vec![Vec::new(); baselines.len()];
        for seed in 0..seeds {
            let (baseline, seconds) = generate(s, seed);
            ours.push(run_shifter(s, &baseline, &seconds, &config));
            for (b, out) in baselines.iter().zip(theirs.iter_mut()) {
                out.push(run_threshold(s, &seconds, b));
            }
        }
        row(s, "shifter (sequential, defaults)", &summarize(&ours, s.regression_at_s));
        for (b, out) in baselines.iter().zip(&theirs) {
            let name = format!("threshold 60s, ≥99%, p99 ≤ 500ms, rollback after {}", b.failed_checks_limit);
            row(s, &name, &summarize(out, s.regression_at_s));
        }
        eprintln!("{}: {:.1}s", s.name, started.elapsed().as_secs_f64());
    }
}

fn row(s: &Scenario, judge: &str, sum: &Summary) {
    let t = |v: Option<i64>| v.map_or_else(|| format!("> {} s", s.duration_s), |v| format!("{v} s"));
    println!(
        "| {} | {judge} | {}/{} ({:.1}%) | {} | {} | {:.1} | {:.1} | {} | {} |",
        s.name,
        sum.rollbacks,
        sum.runs,
        100.0 * sum.rollbacks as f64 / sum.runs.max(1) as f64,
        t(sum.median_s),
        t(sum.p90_s),
        sum.mean_excess_failures,
        sum.mean_excess_slow,
        sum.median_first_pass_s.map_or("-".to_string(), |v| format!("{v} s")),
        sum.passed_first,
    );
}
