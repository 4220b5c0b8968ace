//! Measures judges on a scenario over many seeds, split over threads, and writes the rows of the
//! runner's Markdown table: for every judge its rollbacks, detection times and the harm a bad
//! canary did, a 95% upper confidence bound on the false-rollback rate of a healthy canary, and
//! how many runs passed (would have promoted) before any rollback.

use std::ops::Range;

use statrs::function::beta::inv_beta_reg;

use super::grid::{Expect, GridScenario};
use super::run::{Outcome, Summary, run_shifter, run_threshold, summarize};
use super::stream::{Scenario, generate};
use super::threshold::ThresholdConfig;
use crate::config::{AnalyzerConfig, Target};

/// The judges that see the same streams.
#[derive(Debug, Clone)]
pub struct Judges {
    pub shifter: AnalyzerConfig,
    pub thresholds: Vec<ThresholdConfig>,
}

impl Judges {
    /// shifter with the Canary defaults, and the threshold baseline rolling back after 1 and after
    /// 5 failed checks.
    pub fn defaults() -> Self {
        let target = Target {
            namespace: "shop".into(),
            service: "web".into(),
            stable: "web-v1".into(),
            canary: "web-v2".into(),
        };
        Judges {
            shifter: AnalyzerConfig::defaults(target),
            thresholds: vec![ThresholdConfig::common_defaults(1), ThresholdConfig::common_defaults(5)],
        }
    }

    /// Each judge's name in the table, shifter first.
    pub fn names(&self) -> Vec<String> {
        let mut out = vec!["shifter (sequential, defaults)".to_string()];
        out.extend(self.thresholds.iter().map(|t| {
            format!(
                "threshold {}s, ≥{}%, p99 ≤ {}ms, rollback after {}",
                t.interval_s, t.min_success_percent, t.max_p99_ms, t.failed_checks_limit
            )
        }));
        out
    }
}

/// Every judge's summary over the seeds, shifter first.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub summaries: Vec<Summary>,
}

fn run_seed(s: &Scenario, seed: u64, judges: &Judges) -> Vec<Outcome> {
    let (baseline, seconds) = generate(s, seed);
    let mut out = vec![run_shifter(s, &baseline, &seconds, &judges.shifter)];
    out.extend(judges.thresholds.iter().map(|t| run_threshold(s, &seconds, t)));
    out
}

/// Runs every judge on `seeds` of `s`, the seeds split into contiguous parts over `threads`
/// threads; the result does not depend on the number of threads.
pub fn measure(s: &Scenario, seeds: Range<u64>, threads: usize, judges: &Judges) -> Measured {
    let seeds: Vec<u64> = seeds.collect();
    let part = seeds.len().div_ceil(threads.max(1)).max(1);
    let per_seed: Vec<Vec<Outcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .chunks(part)
            .map(|seeds| scope.spawn(move || seeds.iter().map(|seed| run_seed(s, *seed, judges)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let judges_n = 1 + judges.thresholds.len();
    let summaries = (0..judges_n)
        .map(|j| {
            let outcomes: Vec<Outcome> = per_seed.iter().map(|o| o[j].clone()).collect();
            summarize(&outcomes, s.regression_at_s)
        })
        .collect();
    Measured { summaries }
}

/// The 99.9% quantile of Binomial(`n`, `p`): an A/A run with more rollbacks than this over `n`
/// seeds rolls back more often than `p`, not by bad luck.
pub fn binomial_upper(n: u64, p: f64) -> u64 {
    let mut pmf = (1.0 - p).powf(n as f64);
    let mut cdf = pmf;
    let mut k = 0;
    while cdf < 0.999 && k < n {
        pmf *= (n - k) as f64 / (k + 1) as f64 * p / (1.0 - p);
        k += 1;
        cdf += pmf;
    }
    k
}

/// One-sided Clopper-Pearson upper bound on a rate seen `k` times in `n` runs: the rate is below it
/// with probability `confidence` (at k = 0, 1 − (1 − confidence)^(1/n)).
pub fn upper_bound(k: usize, n: usize, confidence: f64) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    inv_beta_reg((k + 1) as f64, (n - k) as f64, confidence)
}

/// The heading rows of the table.
pub fn table_header() -> String {
    [
        "| scenario | judge | rollbacks | false rollbacks, 95% upper bound | median detection | p90 detection | excess failed requests | excess slow requests | first Pass (median) | passed before any rollback |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    .join("\n")
}

/// One row of the table: one judge on one scenario.
pub fn row(g: &GridScenario, judge: &str, sum: &Summary) -> String {
    let s = &g.scenario;
    let t = |v: Option<i64>| v.map_or_else(|| format!("> {} s", s.duration_s), |v| format!("{v} s"));
    let share = |k: usize| 100.0 * k as f64 / sum.runs.max(1) as f64;
    let bound = match g.expect {
        Expect::Healthy => format!("{:.2}%", 100.0 * upper_bound(sum.rollbacks, sum.runs, 0.95)),
        Expect::Regression => "-".to_string(),
    };
    format!(
        "| {} | {judge} | {}/{} ({:.1}%) | {bound} | {} | {} | {:.1} | {:.1} | {} | {} ({:.1}%) |",
        s.name,
        sum.rollbacks,
        sum.runs,
        share(sum.rollbacks),
        t(sum.median_s),
        t(sum.p90_s),
        sum.mean_excess_failures,
        sum.mean_excess_slow,
        sum.median_first_pass_s.map_or("-".to_string(), |v| format!("{v} s")),
        sum.passed_first,
        share(sum.passed_first),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::failure_regression;

    #[test]
    fn the_upper_bound_is_clopper_pearson() {
        let zero = upper_bound(0, 2000, 0.95);
        assert!((zero - (1.0 - 0.05f64.powf(1.0 / 2000.0))).abs() < 1e-9, "{zero}");
        // 20 of 2,000 (1%): the exact one-sided 95% bound is about 1.44%.
        let twenty = upper_bound(20, 2000, 0.95);
        assert!((0.0140..0.0148).contains(&twenty), "{twenty}");
        assert_eq!(upper_bound(5, 5, 0.95), 1.0);
        assert_eq!(upper_bound(0, 0, 0.95), 1.0);
    }

    #[test]
    fn results_do_not_depend_on_the_number_of_threads() {
        let s = failure_regression(0.001, 0.02, 300);
        let judges = Judges::defaults();
        let one = measure(&s, 0..12, 1, &judges);
        assert_eq!(one, measure(&s, 0..12, 5, &judges));
        assert_eq!(one.summaries.len(), 3);
        assert_eq!(one.summaries[0].runs, 12);
    }
}
