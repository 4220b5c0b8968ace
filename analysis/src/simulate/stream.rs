//! Seeded per-second streams of canary and stable counts: Poisson traffic split by weight,
//! failures and latencies per request, with bursts, incidents, regressions and drift on top.

use super::bursts::{BurstSeconds, Bursts, expected_failure, expected_slow, slow_share};
use crate::counts::{BackendCounts, LATENCY_BUCKETS, WindowCounts};

/// xoshiro256++ seeded through SplitMix64: small, fast and reproducible on every platform.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = (self.s[0].wrapping_add(self.s[3])).rotate_left(23).wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Poisson by inversion, in chunks of mean ≤ 500 so `e^-λ` never underflows.
    pub fn poisson(&mut self, mut lambda: f64) -> u64 {
        let mut total = 0;
        while lambda > 0.0 {
            let l = lambda.min(500.0);
            lambda -= l;
            let u = self.uniform();
            let mut p = (-l).exp();
            let mut cdf = p;
            let mut k = 0u64;
            while u > cdf && p > 0.0 {
                k += 1;
                p *= l / k as f64;
                cdf += p;
            }
            total += k;
        }
        total
    }

    /// Binomial(n, p): geometric skips between successes for small `p`, trial by trial otherwise.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p <= 0.0 || n == 0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.2 {
            return (0..n).filter(|_| self.uniform() < p).count() as u64;
        }
        let log_q = (1.0 - p).ln();
        let mut count = 0;
        let mut position = 0u64;
        loop {
            let u = 1.0 - self.uniform();
            position += (u.ln() / log_q).floor() as u64 + 1;
            if position > n {
                return count;
            }
            count += 1;
        }
    }
}

/// A latency distribution over the histogram buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyModel {
    probabilities: Vec<f64>,
    cumulative: Vec<f64>,
}

impl LatencyModel {
    pub fn from_probabilities(probabilities: Vec<f64>) -> Self {
        assert_eq!(probabilities.len(), LATENCY_BUCKETS, "one probability per bucket");
        let mut c = 0.0;
        let cumulative = probabilities
            .iter()
            .map(|p| {
                c += p;
                c
            })
            .collect();
        LatencyModel { probabilities, cumulative }
    }

    pub fn lognormal(median_ms: f64, sigma: f64) -> Self {
        Self::from_probabilities(super::lognormal_buckets(median_ms, sigma))
    }

    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.uniform() * self.cumulative[LATENCY_BUCKETS - 1];
        self.cumulative.partition_point(|c| *c <= u).min(LATENCY_BUCKETS - 1)
    }
}

/// A period when both versions degrade alike (a database outage, a noisy neighbour).
#[derive(Debug, Clone)]
pub struct Incident {
    pub from_s: i64,
    pub to_s: i64,
    pub failure: f64,
    pub latency: LatencyModel,
}

/// One of the two versions a rollout compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Canary,
    Stable,
}

/// What happens during one simulated rollout.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub duration_s: i64,
    pub total_rps: f64,
    /// `(start second, canary share)`, starting at second 0.
    pub steps: Vec<(i64, f64)>,
    pub stable_failure: f64,
    /// The canary's failure probability from `regression_at_s` on (the stable one before).
    pub canary_failure: f64,
    pub regression_at_s: i64,
    pub stable_latency: LatencyModel,
    pub canary_latency: LatencyModel,
    pub incidents: Vec<Incident>,
    /// Seconds of stable-only traffic before the rollout, from which latency thresholds are chosen.
    pub baseline_s: i64,
    /// Failure and latency bursts, over the history and the rollout. Empty: every request fails
    /// (and is slow) on its own.
    pub bursts: Vec<Bursts>,
    /// A canary that drifts: its failure probability grows linearly from `canary_failure` at
    /// `regression_at_s` to this at the end of the run. `None`: it stays at `canary_failure`.
    pub canary_failure_at_end: Option<f64>,
}

impl Scenario {
    /// The stable version's failure probability and share of requests slower than the stable p99
    /// bucket bound at second `t` (the mean over its bursts, which are random).
    pub fn stable_rates_at(&self, t: i64) -> (f64, f64) {
        self.expected_rates(Version::Stable, t)
    }

    /// A version's chance that a request at second `t` fails, and that it is slower than the
    /// stable p99 bucket bound, averaged over the random burst seconds.
    pub fn expected_rates(&self, version: Version, t: i64) -> (f64, f64) {
        let (failure, latency) = self.own_rates(version, t);
        let processes = || self.bursts.iter().filter(|b| b.hits.hits(version));
        match self.incident_at(t) {
            Some(i) => (expected_failure(failure.max(i.failure), processes()), slow_share(&i.latency)),
            None => (expected_failure(failure, processes()), expected_slow(latency, processes())),
        }
    }

    /// A version's failure probability over the whole rollout, averaged over its seconds.
    pub fn mean_failure(&self, version: Version) -> f64 {
        let n = self.duration_s.max(1);
        (0..n).map(|t| self.expected_rates(version, t).0).sum::<f64>() / n as f64
    }

    /// A version's failure probability and latency at second `t` outside bursts and incidents.
    fn own_rates(&self, version: Version, t: i64) -> (f64, &LatencyModel) {
        if version == Version::Stable || t < self.regression_at_s {
            return (self.stable_failure, &self.stable_latency);
        }
        let failure = match self.canary_failure_at_end {
            Some(end) => {
                let span = (self.duration_s - self.regression_at_s).max(1) as f64;
                self.canary_failure + (end - self.canary_failure) * (t - self.regression_at_s) as f64 / span
            }
            None => self.canary_failure,
        };
        (failure, &self.canary_latency)
    }

    fn incident_at(&self, t: i64) -> Option<&Incident> {
        self.incidents.iter().find(|i| i.from_s <= t && t < i.to_s)
    }

    /// A version's failure probability and latency at second `t` of one drawn run: its own rates,
    /// then its active bursts, then any incident.
    fn rates_at<'a>(&'a self, bursts: &BurstSeconds, version: Version, t: i64) -> (f64, &'a LatencyModel) {
        let (failure, latency) = self.own_rates(version, t);
        let (failure, latency) = bursts.rates(&self.bursts, version, t, failure, latency);
        match self.incident_at(t) {
            Some(i) => (failure.max(i.failure), &i.latency),
            None => (failure, latency),
        }
    }
}

/// One second of the stream: both versions' counts.
pub type Second = WindowCounts;

fn backend_second(rng: &mut Rng, requests: u64, failure: f64, latency: &LatencyModel) -> BackendCounts {
    let mut latency_counts = vec![0; LATENCY_BUCKETS];
    for _ in 0..requests {
        latency_counts[latency.sample(rng)] += 1;
    }
    BackendCounts { requests, failures: rng.binomial(requests, failure), latency_counts, ..Default::default() }
}

/// Generates the stable-only baseline before the rollout and then every second of it.
pub fn generate(s: &Scenario, seed: u64) -> (BackendCounts, Vec<Second>) {
    let (history, seconds) = generate_seconds(s, seed);
    let mut baseline = BackendCounts::default();
    for h in history {
        baseline.push_second(h);
    }
    (baseline, seconds)
}

/// Like [`generate`], with the stable-only history before the rollout kept second by second (a
/// judge can measure from it how bursty the stable version is).
pub fn generate_seconds(s: &Scenario, seed: u64) -> (Vec<BackendCounts>, Vec<Second>) {
    let mut rng = Rng::new(seed);
    let bursts = BurstSeconds::draw(&s.bursts, seed, -s.baseline_s, s.duration_s);
    let mut history = Vec::with_capacity(s.baseline_s.max(0) as usize);
    for t in -s.baseline_s..0 {
        let n = rng.poisson(s.total_rps);
        let (failure, latency) = bursts.rates(&s.bursts, Version::Stable, t, s.stable_failure, &s.stable_latency);
        history.push(backend_second(&mut rng, n, failure, latency));
    }
    let mut seconds = Vec::with_capacity(s.duration_s.max(0) as usize);
    for t in 0..s.duration_s {
        let share = s.steps.iter().rev().find(|(at, _)| *at <= t).map_or(0.0, |(_, w)| *w);
        let (cf, cl) = s.rates_at(&bursts, Version::Canary, t);
        let (sf, sl) = s.rates_at(&bursts, Version::Stable, t);
        let nc = rng.poisson(s.total_rps * share);
        let nb = rng.poisson(s.total_rps * (1.0 - share));
        let canary = backend_second(&mut rng, nc, cf, cl);
        let stable = backend_second(&mut rng, nb, sf, sl);
        seconds.push(WindowCounts { canary, stable });
    }
    (history, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_have_the_right_means() {
        let mut rng = Rng::new(7);
        let n = 20_000;
        let mean = (0..n).map(|_| rng.poisson(95.0)).sum::<u64>() as f64 / n as f64;
        assert!((mean - 95.0).abs() < 0.3, "{mean}");
        let mean = (0..n).map(|_| rng.binomial(1000, 0.011)).sum::<u64>() as f64 / n as f64;
        assert!((mean - 11.0).abs() < 0.15, "{mean}");
        let mean = (0..n).map(|_| rng.binomial(10, 0.5)).sum::<u64>() as f64 / n as f64;
        assert!((mean - 5.0).abs() < 0.05, "{mean}");
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let s = Scenario {
            name: "t".into(),
            duration_s: 20,
            total_rps: 100.0,
            steps: vec![(0, 0.05)],
            stable_failure: 0.01,
            canary_failure: 0.01,
            regression_at_s: 0,
            stable_latency: super::super::healthy_latency(),
            canary_latency: super::super::healthy_latency(),
            incidents: vec![],
            baseline_s: 5,
            bursts: vec![],
            canary_failure_at_end: None,
        };
        assert_eq!(generate(&s, 3), generate(&s, 3));
        assert_ne!(generate(&s, 3), generate(&s, 4));
    }
}
