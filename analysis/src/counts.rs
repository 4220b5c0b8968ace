//! Request, failure and latency counts for one backend over one window, the unit every provider
//! returns and every judge reads.

use serde::{Deserialize, Serialize};
use shifter_proto::LATENCY_BOUNDS_MS;

/// Number of latency buckets: [`LATENCY_BOUNDS_MS`] then `+Inf`.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Counts for one backend over a half-open window `[from, to)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendCounts {
    pub requests: u64,
    pub failures: u64,
    /// Per-bucket (not cumulative) latency counts: [`LATENCY_BOUNDS_MS`] then `+Inf`. May be empty
    /// when nothing was recorded, or shorter than [`LATENCY_BUCKETS`]; missing buckets count zero.
    pub latency_counts: Vec<u64>,
    /// Attempts sent towards this backend that failed before reaching it (the dial was refused,
    /// reset or timed out) and that the proxy retried on a fresh pick. The client never saw them,
    /// so they are in neither `requests` nor `failures`. Zero from a source that cannot see them
    /// (Prometheus' `response_total` counts responses only).
    #[serde(default)]
    pub failed_attempts: u64,
    /// The same counts second by second, when the source keeps them (the mesh does; Prometheus
    /// does not): how failures and slow requests cluster in time (see [`crate::dispersion`]).
    /// Empty, or summing to the totals above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seconds: Vec<BackendCounts>,
}

impl BackendCounts {
    pub fn new(requests: u64, failures: u64) -> Self {
        BackendCounts { requests, failures, latency_counts: Vec::new(), failed_attempts: 0, seconds: Vec::new() }
    }

    /// `f` of each second, or of the whole window when the source kept no seconds.
    pub fn per_second(&self, f: impl Fn(&BackendCounts) -> (u64, u64)) -> Vec<(u64, u64)> {
        if self.seconds.is_empty() { vec![f(self)] } else { self.seconds.iter().map(f).collect() }
    }

    /// Adds one second's counts, keeping it as a second of this window too.
    pub fn push_second(&mut self, second: BackendCounts) {
        self.add(&second);
        self.seconds.push(BackendCounts { seconds: Vec::new(), ..second });
    }

    /// Every trial this backend was given: each request it answered (or failed) and each attempt
    /// that failed on it before being retried elsewhere.
    ///
    /// Counting a retried attempt as a failed trial of the backend it was sent to is sound: the
    /// proxy draws the backend of every attempt afresh by weight, whatever happened to earlier
    /// attempts, so a retry decides only how many trials there are — never which backend the next
    /// one goes to, nor how that backend fares. Each attempt is then a trial of its backend like
    /// any request, and the comparative test, which judges each window's failed trials given
    /// each version's share of trials, keeps its guarantee: a rule that stops or continues on
    /// outcomes already seen (retry after a failure) leaves the likelihood of those outcomes
    /// unchanged. Counting only the responses clients got would instead hide a dead canary
    /// endpoint behind the stable version that answers the retries: at 10% weight with three
    /// attempts, one request in a thousand would fail, and the canary would be judged slowly.
    pub fn trials(&self) -> u64 {
        self.requests.saturating_add(self.failed_attempts)
    }

    /// Trials that failed: failed requests and failed attempts (see [`BackendCounts::trials`]).
    pub fn failed_trials(&self) -> u64 {
        self.failures.min(self.requests).saturating_add(self.failed_attempts)
    }

    /// Adds another window's totals to these (not its seconds: see [`BackendCounts::push_second`]).
    pub fn add(&mut self, other: &BackendCounts) {
        self.requests += other.requests;
        self.failures += other.failures;
        self.failed_attempts += other.failed_attempts;
        if self.latency_counts.len() < other.latency_counts.len() {
            self.latency_counts.resize(other.latency_counts.len(), 0);
        }
        for (a, b) in self.latency_counts.iter_mut().zip(&other.latency_counts) {
            *a += b;
        }
    }

    /// Requests with a recorded latency.
    pub fn timed(&self) -> u64 {
        self.latency_counts.iter().sum()
    }

    /// Requests slower than the upper bound of bucket `bucket` (i.e. in later buckets).
    pub fn slower_than(&self, bucket: usize) -> u64 {
        self.latency_counts.iter().skip(bucket + 1).sum()
    }

    /// The `q`-quantile in milliseconds, interpolated linearly inside its bucket the way
    /// Prometheus' `histogram_quantile` does. `None` without timed requests. A quantile in the
    /// `+Inf` bucket reports the last finite bound (a lower bound on the true value).
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.timed();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &c) in self.latency_counts.iter().enumerate() {
            if c > 0 && (below + c) as f64 >= rank {
                let Some(&upper) = LATENCY_BOUNDS_MS.get(i) else {
                    return Some(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]);
                };
                let lower = if i == 0 { 0.0 } else { LATENCY_BOUNDS_MS[i - 1] };
                let within = (rank - below as f64) / c as f64;
                return Some(lower + (upper - lower) * within.clamp(0.0, 1.0));
            }
            below += c;
        }
        Some(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1])
    }

    /// The bucket bound nearest the `q`-quantile of these counts, as a bucket index: of the bounds
    /// just below and at or above the quantile, the one whose share of slower requests is closer to
    /// `1 − q`. The exceedance threshold "slower than the stable p`q`". `None` without timed
    /// requests or when the quantile lies beyond the last finite bound.
    pub fn bucket_at_quantile(&self, q: f64) -> Option<usize> {
        let total = self.timed();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut cumulative = 0u64;
        for (i, &c) in self.latency_counts.iter().enumerate() {
            let below = cumulative;
            cumulative += c;
            if cumulative as f64 >= rank {
                if i >= LATENCY_BOUNDS_MS.len() {
                    return None;
                }
                let closer_below = i > 0 && below > 0 && rank - below as f64 <= cumulative as f64 - rank;
                return Some(if closer_below { i - 1 } else { i });
            }
        }
        None
    }
}

/// One judged window: the canary's and the stable version's counts over the same span.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCounts {
    pub canary: BackendCounts,
    pub stable: BackendCounts,
}

/// Formats a count with thousands separators: `23100` → `23,100`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Formats a fraction as a percentage with enough digits to tell small rates apart.
pub fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if p == 0.0 || p >= 10.0 {
        format!("{p:.1}%")
    } else if p >= 0.1 {
        format!("{p:.2}%")
    } else {
        format!("{p:.3}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(pairs: &[(usize, u64)]) -> BackendCounts {
        let mut c = BackendCounts { latency_counts: vec![0; LATENCY_BUCKETS], ..Default::default() };
        for &(i, n) in pairs {
            c.latency_counts[i] = n;
            c.requests += n;
        }
        c
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket_like_prometheus() {
        // 100 requests in (10, 20] ms: the median is halfway, p99 near the top.
        let c = hist(&[(6, 100)]);
        assert_eq!(c.latency_quantile_ms(0.5), Some(15.0));
        assert!((c.latency_quantile_ms(0.99).unwrap() - 19.9).abs() < 1e-9);
        assert_eq!(BackendCounts::default().latency_quantile_ms(0.5), None);
        // Everything beyond the last bound reports that bound.
        assert_eq!(hist(&[(25, 3)]).latency_quantile_ms(0.5), Some(50000.0));
    }

    #[test]
    fn thresholds_are_the_bucket_bounds_nearest_the_quantile() {
        // 90 fast (≤ 10 ms), 9 at ≤ 100 ms, 1 at ≤ 500 ms.
        let c = hist(&[(5, 90), (10, 9), (14, 1)]);
        assert_eq!(c.bucket_at_quantile(0.5), Some(5));
        assert_eq!(c.bucket_at_quantile(0.9), Some(5));
        assert_eq!(c.bucket_at_quantile(0.93), Some(9));
        assert_eq!(c.bucket_at_quantile(0.95), Some(10));
        assert_eq!(c.bucket_at_quantile(0.999), Some(14));
        // 990 requests at ≤ 300 ms and 10 beyond: p99 sits on the 300 ms bound, whichever side
        // a few requests more or less would put the rank.
        assert_eq!(hist(&[(12, 990), (13, 10)]).bucket_at_quantile(0.99), Some(12));
        assert_eq!(hist(&[(12, 989), (13, 11)]).bucket_at_quantile(0.99), Some(12));
        assert_eq!(c.slower_than(5), 10);
        assert_eq!(c.slower_than(10), 1);
    }

    #[test]
    fn failed_attempts_are_failed_trials_of_their_backend() {
        let dead = BackendCounts { requests: 1, failures: 1, failed_attempts: 99, ..Default::default() };
        assert_eq!((dead.trials(), dead.failed_trials()), (100, 100));
        let healthy = BackendCounts::new(900, 0);
        assert_eq!((healthy.trials(), healthy.failed_trials()), (900, 0));
        let mut sum = dead.clone();
        sum.add(&dead);
        assert_eq!((sum.trials(), sum.failed_trials()), (200, 200));
        // Counts saved before the field existed still read.
        let old: BackendCounts = serde_json::from_str(r#"{"requests":5,"failures":1,"latency_counts":[]}"#).unwrap();
        assert_eq!(old.failed_attempts, 0);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(23100), "23,100");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_240_000), "1,240,000");
        assert_eq!(percent(0.041), "4.10%");
        assert_eq!(percent(0.002), "0.20%");
        assert_eq!(percent(0.0005), "0.050%");
        assert_eq!(percent(0.0), "0.0%");
    }
}
