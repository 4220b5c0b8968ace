//! The baseline shifter is compared with: fixed thresholds checked once per interval on the
//! canary alone, as common progressive-delivery defaults do (1 minute, success rate ≥ 99%,
//! p99 ≤ 500 ms), rolling back after a number of failed checks within a step.

use crate::counts::BackendCounts;
use crate::verdict::VerdictResult;

/// Settings of the threshold baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdConfig {
    pub interval_s: i64,
    pub min_success_percent: f64,
    pub max_p99_ms: f64,
    /// Failed checks in one step that trigger a rollback.
    pub failed_checks_limit: u32,
}

impl ThresholdConfig {
    /// 60 s interval, success rate ≥ 99%, p99 ≤ 500 ms, the given failed-check limit.
    pub fn common_defaults(failed_checks_limit: u32) -> Self {
        ThresholdConfig { interval_s: 60, min_success_percent: 99.0, max_p99_ms: 500.0, failed_checks_limit }
    }
}

/// The threshold judge's running state.
#[derive(Debug, Clone)]
pub struct ThresholdJudge {
    config: ThresholdConfig,
    failed_checks: u32,
}

impl ThresholdJudge {
    pub fn new(config: ThresholdConfig) -> Self {
        ThresholdJudge { config, failed_checks: 0 }
    }

    pub fn interval_s(&self) -> i64 {
        self.config.interval_s
    }

    /// A new step starts with no failed checks.
    pub fn reset_for_step(&mut self) {
        self.failed_checks = 0;
    }

    /// Checks one interval's canary counts: Fail once the failed checks reach the limit.
    /// A window without canary requests is not checked.
    pub fn check(&mut self, canary: &BackendCounts) -> VerdictResult {
        if canary.requests == 0 {
            return VerdictResult::Inconclusive;
        }
        let success = 100.0 * (1.0 - canary.failures as f64 / canary.requests as f64);
        let p99 = canary.latency_quantile_ms(0.99).unwrap_or(0.0);
        if success < self.config.min_success_percent || p99 > self.config.max_p99_ms {
            self.failed_checks += 1;
        }
        if self.failed_checks >= self.config.failed_checks_limit { VerdictResult::Fail } else { VerdictResult::Pass }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_back_after_the_limit_of_failed_checks() {
        let mut j = ThresholdJudge::new(ThresholdConfig::common_defaults(2));
        let bad = BackendCounts::new(300, 4);
        let good = BackendCounts::new(300, 2);
        assert_eq!(j.check(&bad), VerdictResult::Pass);
        assert_eq!(j.check(&good), VerdictResult::Pass);
        assert_eq!(j.check(&BackendCounts::default()), VerdictResult::Inconclusive);
        assert_eq!(j.check(&bad), VerdictResult::Fail);
        j.reset_for_step();
        assert_eq!(j.check(&bad), VerdictResult::Pass);
    }
}
