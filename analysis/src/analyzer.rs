//! The analyzer the canary controller calls every tick. It owns the sequential evidence of one
//! rollout, which is small and serialisable so a restarted controller resumes where it stopped.
//!
//! ```no_run
//! use shifter_analysis::{Analyzer, AnalyzerConfig, AnyProvider, BackendCounts, MeshSource, Target};
//! use shifter_crds::canary::Analysis;
//!
//! struct Telemetry; // the controller's store
//! impl MeshSource for Telemetry {
//!     fn counts(&self, _ns: &str, _svc: &str, _backend: &str, _from: i64, _to: i64) -> BackendCounts {
//!         BackendCounts::default()
//!     }
//! }
//!
//! # async fn rollout(spec: Analysis, started_at: i64, now: i64) -> Result<(), Box<dyn std::error::Error>> {
//! let target = Target { namespace: "shop".into(), service: "web".into(), stable: "web-v1".into(), canary: "web-v2".into() };
//! let provider = AnyProvider::from_spec(&spec.provider, Telemetry)?;
//! let mut analyzer = Analyzer::new(AnalyzerConfig::from_analysis(target, &spec)?, started_at);
//! let verdict = analyzer.tick(&provider, now).await; // every `interval`
//! println!("{:?}: {}", verdict.result, verdict.reason);
//! let saved = serde_json::to_string(analyzer.state())?; // keep with the Canary's status
//! analyzer.reset_for_step(now); // after changing the weight
//! # let _ = saved; Ok(()) }
//! ```

use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::config::{AnalyzerConfig, Judge, MIN_BASELINE_REQUESTS};
use crate::counts::{BackendCounts, LATENCY_BUCKETS, WindowCounts, thousands};
use crate::eprocess::RiskRatioEProcess;
use crate::error::{ConfigError, ProviderError};
use crate::judge::{self, Comparison};
use crate::latency::MannWhitney;
use crate::provider::{MetricsProvider, render_template};
use crate::verdict::{MetricVerdict, Verdict, VerdictResult};

/// Per-metric evidence carried from tick to tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum MetricState {
    Failures {
        /// Evidence on failed trials: requests and failed attempts (see [`BackendCounts::trials`]).
        process: Box<RiskRatioEProcess>,
        /// Failed attempts among the trials, to say how much of the evidence they are.
        #[serde(default)]
        attempts: FailedAttempts,
    },
    Latency {
        /// Bucket indices of the exceedance thresholds; empty until chosen.
        thresholds: Vec<usize>,
        processes: Vec<RiskRatioEProcess>,
        /// Stable latency counts gathered to choose thresholds; emptied once they are chosen.
        baseline: Vec<u64>,
        /// Judged latency histograms since the thresholds were chosen, to explain verdicts.
        #[serde(default)]
        canary_buckets: Vec<u64>,
        #[serde(default)]
        stable_buckets: Vec<u64>,
    },
    /// Absolute judges look at one window at a time and keep nothing.
    Window,
}

/// Attempts that failed before reaching each version and were retried elsewhere, judged so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedAttempts {
    pub canary: u64,
    pub stable: u64,
}

/// Everything a rollout's analysis needs to resume after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalyzerState {
    pub started_at: i64,
    /// Data before this unix second has been judged.
    pub judged_until: i64,
    pub step_started_at: i64,
    /// Canary requests judged in the current step.
    pub step_canary_requests: u64,
    /// Whether stable's latency before the rollout has been looked up.
    pub baseline_checked: bool,
    /// Error verdicts in a row (the metrics source failing); the controller rolls back past its limit.
    #[serde(default)]
    pub consecutive_errors: u32,
    pub metrics: Vec<MetricState>,
}

/// Judges one rollout, tick by tick.
#[derive(Debug, Clone)]
pub struct Analyzer {
    config: AnalyzerConfig,
    state: AnalyzerState,
}

impl Analyzer {
    /// A new rollout whose canary starts receiving traffic at `started_at` (unix seconds).
    pub fn new(config: AnalyzerConfig, started_at: i64) -> Self {
        let metrics = config
            .metrics
            .iter()
            .map(|m| match &m.judge {
                Judge::ComparativeFailures { .. } => MetricState::Failures {
                    process: Box::new(RiskRatioEProcess::with_reference()),
                    attempts: FailedAttempts::default(),
                },
                Judge::ComparativeLatency { .. } => MetricState::Latency {
                    thresholds: Vec::new(),
                    processes: Vec::new(),
                    baseline: Vec::new(),
                    canary_buckets: Vec::new(),
                    stable_buckets: Vec::new(),
                },
                _ => MetricState::Window,
            })
            .collect();
        let state = AnalyzerState {
            started_at,
            judged_until: started_at,
            step_started_at: started_at,
            step_canary_requests: 0,
            baseline_checked: false,
            consecutive_errors: 0,
            metrics,
        };
        Analyzer { config, state }
    }

    /// Resumes from a state saved by [`Analyzer::state`] under the same configuration.
    pub fn resume(config: AnalyzerConfig, state: AnalyzerState) -> Result<Self, ConfigError> {
        let fresh = Analyzer::new(config, state.started_at);
        let same_shape = fresh.state.metrics.len() == state.metrics.len()
            && fresh
                .state
                .metrics
                .iter()
                .zip(&state.metrics)
                .all(|(a, b)| std::mem::discriminant(a) == std::mem::discriminant(b));
        if !same_shape {
            return Err(ConfigError::invalid(
                "spec.analysis.metrics",
                "changed during the rollout; the saved analysis state no longer fits it",
            ));
        }
        Ok(Analyzer { config: fresh.config, state })
    }

    pub fn config(&self) -> &AnalyzerConfig {
        &self.config
    }

    pub fn state(&self) -> &AnalyzerState {
        &self.state
    }

    /// Call when the canary weight changes at `now`. The evidence carries over (each window's own
    /// share accounts for the weight); step volume and duration start again, and a window that
    /// would straddle the change is dropped so every judged window has one share.
    pub fn reset_for_step(&mut self, now_unix_s: i64) {
        self.state.step_started_at = now_unix_s;
        self.state.step_canary_requests = 0;
        self.state.judged_until = self.state.judged_until.max(now_unix_s);
    }

    /// Stable's traffic before the rollout: its recent latency chooses exceedance thresholds up
    /// front, and its seconds (when the source keeps them) say how its failures cluster in time
    /// before the canary has shown anything.
    pub fn observe_baseline(&mut self, stable: &BackendCounts) {
        let interval = self.config.interval_s.max(1) as usize;
        let windows: Vec<&[BackendCounts]> = stable.seconds.chunks(interval).collect();
        let history = |process: &mut RiskRatioEProcess, f: &dyn Fn(&BackendCounts) -> (u64, u64)| {
            for window in &windows {
                process.observe_stable_history(&window.iter().map(f).collect::<Vec<_>>());
            }
        };
        for (metric, state) in self.config.metrics.iter().zip(self.state.metrics.iter_mut()) {
            match (&metric.judge, state) {
                (_, MetricState::Failures { process, .. }) => {
                    history(process, &|s| (s.requests, s.failures.min(s.requests)));
                }
                (
                    Judge::ComparativeLatency { quantiles, .. },
                    MetricState::Latency { thresholds, processes, baseline, .. },
                ) if thresholds.is_empty() => {
                    // Thresholds, and how slow requests cluster, follow the recent latency: the
                    // last LATENCY_BASELINE_S of the history when it has seconds. Failures learn
                    // their clustering from all of it.
                    let recent = stable.seconds.len().saturating_sub(LATENCY_BASELINE_S);
                    if stable.seconds.is_empty() {
                        add_into(baseline, &stable.latency_counts);
                    } else {
                        for second in &stable.seconds[recent..] {
                            add_into(baseline, &second.latency_counts);
                        }
                    }
                    choose_thresholds(quantiles, thresholds, processes, baseline);
                    let recent_windows = windows.len().saturating_sub(LATENCY_BASELINE_S / interval);
                    for (t, p) in thresholds.iter().zip(processes.iter_mut()) {
                        for window in &windows[recent_windows..] {
                            let counts: Vec<(u64, u64)> =
                                window.iter().map(|s| (s.timed(), s.slower_than(*t))).collect();
                            p.observe_stable_history(&counts);
                        }
                    }
                }
                _ => {}
            }
        }
        self.state.baseline_checked = true;
    }

    /// Fetches the window since the last tick from `provider` and judges it. `now_unix_s` should
    /// be the end of complete data (the controller subtracts its telemetry flush delay).
    pub async fn tick<P: MetricsProvider>(&mut self, provider: &P, now_unix_s: i64) -> Verdict {
        let verdict = self.fetch_and_judge(provider, now_unix_s).await;
        if verdict.result == VerdictResult::Error {
            self.state.consecutive_errors += 1;
        } else {
            self.state.consecutive_errors = 0;
        }
        verdict
    }

    async fn fetch_and_judge<P: MetricsProvider>(&mut self, provider: &P, now_unix_s: i64) -> Verdict {
        let names = self.config.metric_names();
        let (from, to) = (self.state.judged_until, now_unix_s);
        let min_window = provider.min_window_s().max(1);
        if to - from < min_window {
            let reason = format!("waiting for a full window: {}s of {min_window}s", (to - from).max(0));
            return Verdict::uniform(&names, VerdictResult::Inconclusive, &reason, from, to);
        }
        let target = self.config.target.clone();
        if !self.state.baseline_checked {
            let lookback = self.config.baseline_lookback_s;
            let start = self.state.started_at;
            match provider.counts(&target, &target.stable, start - lookback, start).await {
                Ok(stable) => self.observe_baseline(&stable),
                Err(error) => {
                    debug!(%error, "no stable latency before the rollout; thresholds come from the first windows");
                    self.state.baseline_checked = true;
                }
            }
        }
        let canary = provider.counts(&target, &target.canary, from, to).await;
        let stable = provider.counts(&target, &target.stable, from, to).await;
        let window = match (canary, stable) {
            (Ok(canary), Ok(stable)) => WindowCounts { canary, stable },
            (canary, stable) => {
                let failed = [(&target.canary, "canary", canary.err()), (&target.stable, "stable", stable.err())];
                let errors: Vec<_> = failed.into_iter().filter_map(|(b, role, e)| e.map(|e| (b, role, e))).collect();
                let missing_only = errors.iter().all(|(_, _, e)| e.is_missing_data());
                let result = if missing_only { VerdictResult::Inconclusive } else { VerdictResult::Error };
                if missing_only {
                    // The source answered and had nothing for this span; move on rather than ask again.
                    self.state.judged_until = to;
                }
                let reason =
                    errors.iter().map(|(b, role, e)| format!("{role} {b}: {e}")).collect::<Vec<_>>().join("; ");
                return Verdict::uniform(&names, result, &reason, from, to);
            }
        };
        let mut custom = Vec::new();
        for metric in &self.config.metrics {
            if let Judge::CustomRange { query, .. } = &metric.judge {
                let query = render_template(query, &target, to - from);
                custom.push(provider.custom(&query, &target, from, to).await);
            }
        }
        self.observe(from, to, &window, custom)
    }

    /// Judges one window `[from, to)` of counts (and custom query values, in the order of the
    /// custom metrics). The sequential evidence keeps everything seen so far.
    pub fn observe(
        &mut self,
        from: i64,
        to: i64,
        window: &WindowCounts,
        custom: Vec<Result<f64, ProviderError>>,
    ) -> Verdict {
        self.state.judged_until = self.state.judged_until.max(to);
        let warming = from < self.state.step_started_at + self.config.warmup_s;
        let (c, s) = (&window.canary, &window.stable);
        if !warming {
            self.state.step_canary_requests += c.requests;
            for (metric, state) in self.config.metrics.iter().zip(self.state.metrics.iter_mut()) {
                match (state, &metric.judge) {
                    // Every trial counts, including attempts the proxy retried elsewhere: a failed
                    // attempt is a failed trial of the backend it was sent to.
                    (MetricState::Failures { process, attempts }, _) => {
                        let responses = |x: &BackendCounts| (x.requests, x.failures.min(x.requests));
                        process.observe_seconds_and_attempts(
                            &c.per_second(responses),
                            &s.per_second(responses),
                            c.failed_attempts,
                            s.failed_attempts,
                        );
                        attempts.canary += c.failed_attempts;
                        attempts.stable += s.failed_attempts;
                    }
                    (
                        MetricState::Latency { thresholds, processes, baseline, canary_buckets, stable_buckets },
                        Judge::ComparativeLatency { quantiles, .. },
                    ) => {
                        if thresholds.is_empty() {
                            add_into(baseline, &s.latency_counts);
                            choose_thresholds(quantiles, thresholds, processes, baseline);
                        } else {
                            add_into(canary_buckets, &c.latency_counts);
                            add_into(stable_buckets, &s.latency_counts);
                            for (t, p) in thresholds.iter().zip(processes.iter_mut()) {
                                let slow = |x: &BackendCounts| (x.timed(), x.slower_than(*t));
                                p.observe_seconds(&c.per_second(slow), &s.per_second(slow));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut custom = custom.into_iter();
        let per_metric = self
            .config
            .metrics
            .iter()
            .zip(&self.state.metrics)
            .enumerate()
            .map(|(index, (metric, state))| {
                let alpha = self.config.alpha_for(index);
                let name = metric.name.as_str();
                let verdict = match (&metric.judge, state) {
                    (Judge::CustomRange { min, max, .. }, _) => {
                        let value = custom.next().unwrap_or_else(|| {
                            Err(ProviderError::Unsupported("no value was fetched for this custom query".into()))
                        });
                        judge::custom_range(name, &value, *min, *max)
                    }
                    _ if warming => MetricVerdict::new(
                        name,
                        VerdictResult::Inconclusive,
                        format!("warming up: windows before {}s into the step are ignored", self.config.warmup_s),
                    ),
                    (Judge::ComparativeFailures { tolerance }, MetricState::Failures { process, attempts }) => {
                        judge::failures(name, process, *attempts, self.comparison(alpha, *tolerance))
                    }
                    (
                        Judge::ComparativeLatency { tolerance, .. },
                        MetricState::Latency { thresholds, processes, baseline, canary_buckets, stable_buckets },
                    ) => {
                        let seen = baseline.iter().sum();
                        let c = self.comparison(alpha, *tolerance);
                        let v = judge::latency(name, thresholds, processes, seen, MIN_BASELINE_REQUESTS, c);
                        with_mann_whitney(v, canary_buckets, stable_buckets)
                    }
                    (Judge::MinSuccessRate { min_percent }, _) => judge::min_success_rate(name, c, *min_percent),
                    (Judge::MaxLatency { quantile, max_ms }, _) => judge::max_latency(name, c, *quantile, *max_ms),
                    _ => MetricVerdict::new(name, VerdictResult::Error, "analysis state does not fit this metric"),
                };
                self.gate_promotion(verdict, to)
            })
            .collect();
        let mut verdict = Verdict::combine(per_metric, from, to);
        if verdict.result == VerdictResult::Inconclusive && !warming {
            // The canary's traffic since the step began: a single window of a trickle is too
            // few requests to say how fast they come.
            let rate = self.state.step_canary_requests as f64 / (to - self.state.step_started_at).max(1) as f64;
            verdict.seconds_to_pass = self.seconds_to_pass(&verdict.per_metric, rate, to);
            verdict.reason.push_str(&time_to_pass_sentence(verdict.seconds_to_pass, rate));
        }
        debug!(result = ?verdict.result, reason = %verdict.reason, from, to, "analysis tick");
        verdict
    }

    /// About how long until every metric can pass, at `rate` canary requests per second: the
    /// slowest metric's remaining requests, and the step's minimum volume and duration. `None`
    /// when a metric cannot tell (no data yet, or a canary that looks too bad to pass) or there is
    /// no canary traffic.
    fn seconds_to_pass(&self, per_metric: &[MetricVerdict], rate: f64, to: i64) -> Option<i64> {
        if rate <= 0.0 {
            return None;
        }
        let mut requests: f64 = 0.0;
        for m in per_metric.iter().filter(|m| m.result == VerdictResult::Inconclusive) {
            requests = requests.max(m.requests_to_pass?);
        }
        let step_left = self.config.min_requests.max(1).saturating_sub(self.state.step_canary_requests) as f64;
        let time_left = (self.state.step_started_at + self.config.min_duration_s - to).max(0) as f64;
        let seconds = (requests.max(step_left) / rate).max(time_left);
        Some(seconds.min(1e9).ceil() as i64)
    }

    fn comparison(&self, alpha: f64, tolerance: f64) -> Comparison {
        Comparison { alpha, tolerance, margin: self.config.promotion_margin }
    }

    /// A Pass also needs the step's minimum canary volume and duration.
    fn gate_promotion(&self, verdict: MetricVerdict, to: i64) -> MetricVerdict {
        if verdict.result != VerdictResult::Pass {
            return verdict;
        }
        let requests = self.state.step_canary_requests;
        let elapsed = to - self.state.step_started_at;
        // Never a Pass without canary traffic, whatever `minRequests` says.
        if requests >= self.config.min_requests.max(1) && elapsed >= self.config.min_duration_s {
            return verdict;
        }
        MetricVerdict {
            result: VerdictResult::Inconclusive,
            requests_to_pass: Some(0.0),
            reason: format!(
                "{}; but the step has {} of {} canary requests and {}s of {}s",
                verdict.reason,
                thousands(requests),
                thousands(self.config.min_requests.max(1)),
                elapsed.max(0),
                self.config.min_duration_s
            ),
            ..verdict
        }
    }
}

/// "; at 0.2 canary req/s a pass needs about 3 h more — raise the canary's weight or add load
/// with a rollout webhook", or nothing when there is no estimate.
pub fn time_to_pass_sentence(seconds: Option<i64>, rate: f64) -> String {
    let Some(seconds) = seconds else { return String::new() };
    let rate = if rate >= 10.0 { format!("{rate:.0}") } else { format!("{rate:.1}") };
    let mut sentence = format!("; at {rate} canary req/s a pass needs about {} more", human_duration(seconds));
    if seconds > 15 * 60 {
        sentence.push_str(" — raise the canary's weight, or add load with a rollout webhook");
    }
    sentence
}

/// `45s`, `12 min`, `3 h`, `2 days`: rounded, for a person.
pub fn human_duration(seconds: i64) -> String {
    match seconds {
        s if s < 90 => format!("{s}s"),
        s if s < 90 * 60 => format!("{} min", (s + 30) / 60),
        s if s < 48 * 3600 => format!("{} h", (s + 1800) / 3600),
        s => format!("{} days", (s + 43_200) / 86_400),
    }
}

/// Adds how often a canary request was slower than a stable one to a judged latency verdict.
fn with_mann_whitney(mut verdict: MetricVerdict, canary: &[u64], stable: &[u64]) -> MetricVerdict {
    // Only verdicts that judged evidence; "no data yet" stays short.
    if let Some(mw) = MannWhitney::from_buckets(canary, stable)
        && verdict.evidence.is_some()
    {
        verdict.reason.push_str(&format!(
            "; a canary request is slower than a stable one in {:.1}% of pairs (50% = same)",
            100.0 * mw.theta
        ));
    }
    verdict
}

fn add_into(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// How much of stable's history before the rollout picks latency thresholds, in seconds.
pub const LATENCY_BASELINE_S: usize = 300;

/// Picks exceedance thresholds once the baseline holds enough stable requests: for each quantile,
/// the smallest bucket bound at or above it (quantiles in `+Inf` use the last finite bound).
fn choose_thresholds(
    quantiles: &[f64],
    thresholds: &mut Vec<usize>,
    processes: &mut Vec<RiskRatioEProcess>,
    baseline: &mut Vec<u64>,
) {
    let counts = BackendCounts { latency_counts: baseline.clone(), ..Default::default() };
    if counts.timed() < MIN_BASELINE_REQUESTS {
        return;
    }
    for q in quantiles {
        let t = counts.bucket_at_quantile(*q).unwrap_or(LATENCY_BUCKETS - 2);
        if !thresholds.contains(&t) {
            thresholds.push(t);
        }
    }
    thresholds.sort_unstable();
    *processes = thresholds.iter().map(|_| RiskRatioEProcess::new()).collect();
    baseline.clear();
}
