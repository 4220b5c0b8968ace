//! Runs a judge over a generated stream, tick by tick, and summarises many runs.

use crate::analyzer::Analyzer;
use crate::config::AnalyzerConfig;
use crate::counts::{BackendCounts, WindowCounts};
use crate::simulate::STABLE_P99_BUCKET;
use crate::simulate::stream::{Scenario, Second};
use crate::simulate::threshold::{ThresholdConfig, ThresholdJudge};
use crate::verdict::VerdictResult;

/// What happened in one simulated rollout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Second at which the judge rolled back, if it did.
    pub rolled_back_at: Option<i64>,
    /// Canary failures beyond what the stable failure rate would have caused, before the rollback
    /// (or over the whole run without one).
    pub excess_failures: f64,
    /// Canary requests slower than 300 ms (the stable p99) beyond the stable 1%, likewise.
    pub excess_slow: f64,
    /// First tick at which every metric passed.
    pub first_pass_at: Option<i64>,
}

fn is_step_start(s: &Scenario, t: i64) -> bool {
    t > 0 && s.steps.iter().any(|(at, _)| *at == t)
}

/// Canary failures and slow requests beyond what the stable version had at that second's rates
/// (a shared incident is not the canary's doing).
fn harm(s: &Scenario, t: i64, second: &Second) -> (f64, f64) {
    let (failure, slow) = s.stable_rates_at(t);
    let c = &second.canary;
    let excess = c.failures as f64 - c.requests as f64 * failure;
    let slow = c.slower_than(STABLE_P99_BUCKET) as f64 - c.timed() as f64 * slow;
    (excess, slow)
}

/// A window as a provider that keeps seconds (the mesh) returns it: totals and each second.
fn sum(seconds: &[Second]) -> WindowCounts {
    let mut w = WindowCounts::default();
    for s in seconds {
        w.canary.push_second(s.canary.clone());
        w.stable.push_second(s.stable.clone());
    }
    w
}

/// shifter's analyzer, ticking every `config.interval_s` and told of each weight step.
pub fn run_shifter(s: &Scenario, baseline: &BackendCounts, seconds: &[Second], config: &AnalyzerConfig) -> Outcome {
    let mut analyzer = Analyzer::new(config.clone(), 0);
    analyzer.observe_baseline(baseline);
    let interval = config.interval_s.max(1);
    let mut out = Outcome::default();
    let mut last = 0i64;
    for t in 1..=seconds.len() as i64 {
        let (e, slow) = harm(s, t - 1, &seconds[(t - 1) as usize]);
        out.excess_failures += e;
        out.excess_slow += slow;
        let step = is_step_start(s, t);
        if t % interval == 0 || step {
            let window = sum(&seconds[last as usize..t as usize]);
            let verdict = analyzer.observe(last, t, &window, Vec::new());
            last = t;
            match verdict.result {
                VerdictResult::Fail => {
                    out.rolled_back_at = Some(t);
                    return out;
                }
                VerdictResult::Pass if out.first_pass_at.is_none() => out.first_pass_at = Some(t),
                _ => {}
            }
        }
        if step {
            analyzer.reset_for_step(t);
        }
    }
    out
}

/// The threshold baseline on the same stream.
pub fn run_threshold(s: &Scenario, seconds: &[Second], config: &ThresholdConfig) -> Outcome {
    let mut judge = ThresholdJudge::new(config.clone());
    let interval = judge.interval_s().max(1);
    let mut out = Outcome::default();
    let mut last = 0i64;
    for t in 1..=seconds.len() as i64 {
        let (e, slow) = harm(s, t - 1, &seconds[(t - 1) as usize]);
        out.excess_failures += e;
        out.excess_slow += slow;
        if t % interval == 0 {
            let window = sum(&seconds[last as usize..t as usize]);
            last = t;
            match judge.check(&window.canary) {
                VerdictResult::Fail => {
                    out.rolled_back_at = Some(t);
                    return out;
                }
                VerdictResult::Pass if out.first_pass_at.is_none() => out.first_pass_at = Some(t),
                _ => {}
            }
        }
        if is_step_start(s, t) {
            judge.reset_for_step();
            last = t;
        }
    }
    out
}

/// Many runs of one judge on one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub runs: usize,
    pub rollbacks: usize,
    /// Detection time percentiles in seconds after the regression started (`None`: fewer runs
    /// than that percentile were rolled back within the horizon).
    pub median_s: Option<i64>,
    pub p90_s: Option<i64>,
    pub mean_excess_failures: f64,
    pub mean_excess_slow: f64,
    /// Median second of the first tick at which every metric passed (`None`: in fewer than half).
    pub median_first_pass_s: Option<i64>,
    /// Runs with a Pass before any rollback: for a bad canary, a promotion that should not happen.
    pub passed_first: usize,
}

/// Summarises outcomes; detection times are measured from `regression_at_s`.
pub fn summarize(outcomes: &[Outcome], regression_at_s: i64) -> Summary {
    let mut times: Vec<Option<i64>> =
        outcomes.iter().map(|o| o.rolled_back_at.map(|t| (t - regression_at_s).max(0))).collect();
    times.sort_by_key(|t| t.unwrap_or(i64::MAX));
    let pct = |q: f64| -> Option<i64> {
        if times.is_empty() {
            return None;
        }
        let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
        times[i]
    };
    let n = outcomes.len().max(1) as f64;
    let mut passes: Vec<i64> = outcomes.iter().map(|o| o.first_pass_at.unwrap_or(i64::MAX)).collect();
    passes.sort_unstable();
    let median_first_pass_s = passes.get(passes.len().saturating_sub(1) / 2).copied().filter(|t| *t != i64::MAX);
    Summary {
        runs: outcomes.len(),
        rollbacks: outcomes.iter().filter(|o| o.rolled_back_at.is_some()).count(),
        median_s: pct(0.5),
        p90_s: pct(0.9),
        mean_excess_failures: outcomes.iter().map(|o| o.excess_failures).sum::<f64>() / n,
        mean_excess_slow: outcomes.iter().map(|o| o.excess_slow).sum::<f64>() / n,
        median_first_pass_s,
        passed_first: outcomes
            .iter()
            .filter(|o| o.first_pass_at.is_some_and(|p| o.rolled_back_at.is_none_or(|r| p < r)))
            .count(),
    }
}
