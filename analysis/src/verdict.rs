//! What one analysis tick concludes, per metric and overall, with the sentence behind it.

use serde::{Deserialize, Serialize};
pub use shifter_crds::canary::VerdictResult;

/// The verdict on one metric for one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricVerdict {
    /// The metric's name as configured (`success-rate`, `latency`, or the user's).
    pub name: String,
    pub result: VerdictResult,
    /// A sentence with the numbers behind the result.
    pub reason: String,
    /// Sequential evidence against "the canary is no worse", when the judge is comparative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<f64>,
    /// For an Inconclusive comparative metric: about how many more canary requests it needs to
    /// pass if the canary goes on as it looks now. `None` when it cannot say (no data yet, or the
    /// canary looks too bad to pass at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_to_pass: Option<f64>,
}

impl MetricVerdict {
    pub fn new(name: &str, result: VerdictResult, reason: impl Into<String>) -> Self {
        MetricVerdict { name: name.to_string(), result, reason: reason.into(), evidence: None, requests_to_pass: None }
    }
}

/// The verdict for one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub result: VerdictResult,
    pub per_metric: Vec<MetricVerdict>,
    /// One sentence for status and Events.
    pub reason: String,
    /// The judged window `[from, to)` in unix seconds.
    pub window_from: i64,
    pub window_to: i64,
    /// For an Inconclusive verdict: about how many seconds until a Pass is possible at the
    /// canary's current traffic, when that can be estimated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_pass: Option<i64>,
}

impl Verdict {
    /// Combines metric verdicts: any Fail fails (naming every failing metric); otherwise any Error
    /// is an Error; otherwise Pass only when every metric passes; otherwise Inconclusive.
    pub fn combine(per_metric: Vec<MetricVerdict>, window_from: i64, window_to: i64) -> Verdict {
        let pick = |r: VerdictResult| -> Vec<&MetricVerdict> { per_metric.iter().filter(|m| m.result == r).collect() };
        let (result, named) = if !pick(VerdictResult::Fail).is_empty() {
            (VerdictResult::Fail, pick(VerdictResult::Fail))
        } else if !pick(VerdictResult::Error).is_empty() {
            (VerdictResult::Error, pick(VerdictResult::Error))
        } else if !per_metric.is_empty() && per_metric.iter().all(|m| m.result == VerdictResult::Pass) {
            (VerdictResult::Pass, pick(VerdictResult::Pass))
        } else {
            (VerdictResult::Inconclusive, pick(VerdictResult::Inconclusive))
        };
        let reason = if named.is_empty() {
            "no metrics configured".to_string()
        } else {
            named.iter().map(|m| format!("{}: {}", m.name, m.reason)).collect::<Vec<_>>().join("; ")
        };
        Verdict { result, reason, per_metric, window_from, window_to, seconds_to_pass: None }
    }

    /// A verdict where every metric shares the same result and reason (e.g. the source is down).
    pub fn uniform(names: &[String], result: VerdictResult, reason: &str, window_from: i64, window_to: i64) -> Verdict {
        let per_metric = names.iter().map(|n| MetricVerdict::new(n, result, reason)).collect();
        Verdict { result, per_metric, reason: reason.to_string(), window_from, window_to, seconds_to_pass: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(name: &str, result: VerdictResult) -> MetricVerdict {
        MetricVerdict::new(name, result, format!("{name} says {result:?}"))
    }

    #[test]
    fn fail_wins_then_error_then_inconclusive() {
        use VerdictResult::*;
        let v = Verdict::combine(vec![mv("a", Pass), mv("b", Error), mv("c", Fail)], 0, 10);
        assert_eq!(v.result, Fail);
        assert_eq!(v.reason, "c: c says Fail");
        assert_eq!(Verdict::combine(vec![mv("a", Inconclusive), mv("b", Error)], 0, 10).result, Error);
        assert_eq!(Verdict::combine(vec![mv("a", Pass), mv("b", Inconclusive)], 0, 10).result, Inconclusive);
        assert_eq!(Verdict::combine(vec![mv("a", Pass), mv("b", Pass)], 0, 10).result, Pass);
        assert_eq!(Verdict::combine(vec![], 0, 10).result, Inconclusive);
    }
}
