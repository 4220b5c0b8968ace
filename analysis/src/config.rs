//! The judge configuration, built from a Canary's `spec.analysis` with its documented defaults.

use serde::{Deserialize, Serialize};
use shifter_crds::canary::{Analysis, Metric, MetricKind, MetricMode};
use shifter_crds::duration::parse_duration;

use crate::error::ConfigError;

/// Defaults of `spec.analysis`, as documented on the Canary type.
pub const DEFAULT_INTERVAL_S: i64 = 10;
pub const DEFAULT_ALPHA: f64 = 0.01;
pub const DEFAULT_TOLERANCE: f64 = 1.2;
pub const DEFAULT_MIN_REQUESTS: u64 = 200;
pub const DEFAULT_MIN_DURATION_S: i64 = 30;
pub const DEFAULT_QUANTILE: f64 = 0.99;
/// A comparative metric also passes when the canary's rate is shown to be at most this much above
/// stable's (absolute, 1 percentage point — the margin a "success rate ≥ 99%" check allows). At low
/// failure rates a ratio bound needs more events than a rollout ever sees; see `bench/ANALYSIS.md`.
pub const DEFAULT_PROMOTION_MARGIN: f64 = 0.01;
/// Stable quantiles whose bucket bounds become latency exceedance thresholds, besides the metric's.
pub const LATENCY_THRESHOLD_QUANTILES: [f64; 2] = [0.75, 0.9];
/// Stable requests with a latency needed before thresholds are chosen.
pub const MIN_BASELINE_REQUESTS: u64 = 200;

/// Who the analysis is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub namespace: String,
    /// The apex service clients call.
    pub service: String,
    pub stable: String,
    pub canary: String,
}

/// How one metric is judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Judge {
    /// Canary failures against stable's, sequentially; Fail on evidence of any harm, Pass when the
    /// canary is shown to be within `tolerance` (ratio) or the promotion margin.
    ComparativeFailures { tolerance: f64 },
    /// Requests slower than thresholds picked from stable's latency quantiles before the rollout,
    /// judged like failures.
    ComparativeLatency { tolerance: f64, quantiles: Vec<f64> },
    /// The canary's success rate in each window is at least `min_percent`.
    MinSuccessRate { min_percent: f64 },
    /// The canary's latency `quantile` in each window is at most `max_ms`.
    MaxLatency { quantile: f64, max_ms: f64 },
    /// A custom query's value for each window lies within `[min, max]`.
    CustomRange { query: String, min: Option<f64>, max: Option<f64> },
}

impl Judge {
    pub fn is_comparative(&self) -> bool {
        matches!(self, Judge::ComparativeFailures { .. } | Judge::ComparativeLatency { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricConfig {
    pub name: String,
    pub judge: Judge,
}

/// Everything the analyzer needs, with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyzerConfig {
    pub target: Target,
    pub interval_s: i64,
    /// Chance of a false rollback over the whole rollout, divided among metrics.
    pub alpha: f64,
    /// Canary requests a step needs before it can pass.
    pub min_requests: u64,
    /// Seconds a step lasts before it can pass.
    pub min_duration_s: i64,
    /// Seconds after each weight change whose windows are ignored.
    pub warmup_s: i64,
    pub promotion_margin: f64,
    /// How far before the rollout to read stable's history: 15 minutes, all the mesh keeps. Its
    /// seconds show how stable's failures and slow requests cluster before the canary has shown
    /// anything — a rare burst needs that long to be seen at all — and its last
    /// [`crate::analyzer::LATENCY_BASELINE_S`] choose latency thresholds.
    pub baseline_lookback_s: i64,
    pub metrics: Vec<MetricConfig>,
}

impl AnalyzerConfig {
    /// The default judges: comparative success rate and comparative latency at p99.
    pub fn defaults(target: Target) -> Self {
        let analysis = Analysis::default();
        Self::from_analysis(target, &analysis).expect("the default analysis is valid")
    }

    /// Builds the configuration from a Canary's `spec.analysis`.
    pub fn from_analysis(target: Target, analysis: &Analysis) -> Result<Self, ConfigError> {
        let seconds = |field: &str, raw: &Option<String>, default: i64| -> Result<i64, ConfigError> {
            match raw {
                None => Ok(default),
                Some(raw) => parse_duration(raw)
                    .map(|d| d.as_secs() as i64)
                    .map_err(|e| ConfigError::invalid(format!("spec.analysis.{field}"), e)),
            }
        };
        let alpha = analysis.alpha.unwrap_or(DEFAULT_ALPHA);
        if !(alpha > 0.0 && alpha < 0.5) {
            return Err(ConfigError::invalid("spec.analysis.alpha", format!("{alpha} must be between 0 and 0.5")));
        }
        let interval_s = seconds("interval", &analysis.interval, DEFAULT_INTERVAL_S)?.max(1);
        let metrics = if analysis.metrics.is_empty() {
            vec![
                MetricConfig {
                    name: "success-rate".into(),
                    judge: Judge::ComparativeFailures { tolerance: DEFAULT_TOLERANCE },
                },
                MetricConfig { name: "latency".into(), judge: latency_judge(DEFAULT_TOLERANCE, DEFAULT_QUANTILE) },
            ]
        } else {
            analysis.metrics.iter().enumerate().map(|(i, m)| metric_config(i, m)).collect::<Result<_, _>>()?
        };
        Ok(AnalyzerConfig {
            target,
            interval_s,
            alpha,
            min_requests: analysis.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS),
            min_duration_s: seconds("minDuration", &analysis.min_duration, DEFAULT_MIN_DURATION_S)?,
            warmup_s: seconds("warmup", &analysis.warmup, 0)?,
            promotion_margin: DEFAULT_PROMOTION_MARGIN,
            baseline_lookback_s: 900,
            metrics,
        })
    }

    /// The level metric `index` is judged at: α divided evenly among metrics (Bonferroni), so the
    /// chance that any metric ever fails a healthy canary stays ≤ α.
    pub fn alpha_for(&self, index: usize) -> f64 {
        match self.metrics.len() {
            n if index < n => self.alpha / n as f64,
            _ => self.alpha,
        }
    }

    pub fn metric_names(&self) -> Vec<String> {
        self.metrics.iter().map(|m| m.name.clone()).collect()
    }
}

fn latency_judge(tolerance: f64, quantile: f64) -> Judge {
    let mut quantiles: Vec<f64> = LATENCY_THRESHOLD_QUANTILES.iter().copied().filter(|q| *q < quantile).collect();
    quantiles.push(quantile);
    Judge::ComparativeLatency { tolerance, quantiles }
}

fn metric_config(i: usize, m: &Metric) -> Result<MetricConfig, ConfigError> {
    let at = |field: &str| format!("spec.analysis.metrics[{i}].{field}");
    let mode =
        m.mode.unwrap_or(if m.kind == MetricKind::Custom { MetricMode::Absolute } else { MetricMode::Comparative });
    let tolerance = m.tolerance.unwrap_or(DEFAULT_TOLERANCE);
    if tolerance < 1.0 {
        return Err(ConfigError::invalid(at("tolerance"), format!("{tolerance} must be at least 1 (a ratio)")));
    }
    let quantile = m.quantile.unwrap_or(DEFAULT_QUANTILE);
    if !(quantile > 0.0 && quantile < 1.0) {
        return Err(ConfigError::invalid(at("quantile"), format!("{quantile} must be between 0 and 1")));
    }
    let judge = match (m.kind, mode) {
        (MetricKind::SuccessRate, MetricMode::Comparative) => Judge::ComparativeFailures { tolerance },
        (MetricKind::Latency, MetricMode::Comparative) => latency_judge(tolerance, quantile),
        (MetricKind::SuccessRate, MetricMode::Absolute) => Judge::MinSuccessRate {
            min_percent: m
                .min_success_rate
                .ok_or_else(|| ConfigError::invalid(at("minSuccessRate"), "required for an absolute success rate"))?,
        },
        (MetricKind::Latency, MetricMode::Absolute) => Judge::MaxLatency {
            quantile,
            max_ms: m
                .max_latency_ms
                .ok_or_else(|| ConfigError::invalid(at("maxLatencyMs"), "required for an absolute latency"))?,
        },
        (MetricKind::Custom, _) => {
            let query = m.query.clone().filter(|q| !q.is_empty());
            let query = query.ok_or_else(|| ConfigError::invalid(at("query"), "a custom metric needs a query"))?;
            if m.min.is_none() && m.max.is_none() {
                return Err(ConfigError::invalid(at("min"), "a custom metric needs min, max or both"));
            }
            Judge::CustomRange { query, min: m.min, max: m.max }
        }
    };
    let name = if m.name.is_empty() { format!("metric-{i}") } else { m.name.clone() };
    Ok(MetricConfig { name, judge })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() }
    }

    #[test]
    fn defaults_follow_the_canary_documentation() {
        let c = AnalyzerConfig::defaults(target());
        assert_eq!((c.interval_s, c.alpha, c.min_requests, c.min_duration_s), (10, 0.01, 200, 30));
        assert_eq!(c.metrics.len(), 2);
        assert_eq!(c.metrics[0].judge, Judge::ComparativeFailures { tolerance: 1.2 });
        assert_eq!(c.metrics[1].judge, Judge::ComparativeLatency { tolerance: 1.2, quantiles: vec![0.75, 0.9, 0.99] });
        assert!((c.alpha_for(0) - 0.005).abs() < 1e-15, "the two default metrics share α evenly");
        assert!((c.alpha_for(1) - 0.005).abs() < 1e-15);
    }

    #[test]
    fn absolute_metrics_need_their_threshold_and_name_the_field() {
        let analysis = Analysis {
            interval: Some("1m".into()),
            metrics: vec![Metric {
                name: "sr".into(),
                kind: MetricKind::SuccessRate,
                mode: Some(MetricMode::Absolute),
                ..Default::default()
            }],
            ..Default::default()
        };
        let err = AnalyzerConfig::from_analysis(target(), &analysis).unwrap_err();
        assert_eq!(err.to_string(), "spec.analysis.metrics[0].minSuccessRate: required for an absolute success rate");
        let mut ok = analysis.clone();
        ok.metrics[0].min_success_rate = Some(99.0);
        let c = AnalyzerConfig::from_analysis(target(), &ok).unwrap();
        assert_eq!(c.interval_s, 60);
        assert_eq!(c.metrics[0].judge, Judge::MinSuccessRate { min_percent: 99.0 });
    }

    #[test]
    fn bad_durations_are_reported_with_their_field() {
        let analysis = Analysis { min_duration: Some("30".into()), ..Default::default() };
        let err = AnalyzerConfig::from_analysis(target(), &analysis).unwrap_err();
        assert!(err.to_string().starts_with("spec.analysis.minDuration: "), "{err}");
    }
}
