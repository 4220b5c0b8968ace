//! Seeded per-second streams of canary and stable counts.

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
}

impl Scenario {
    /// The stable version's failure probability and share of requests slower than the stable p99
    /// bucket bound at second `t`.
    pub fn stable_rates_at(&self, t: i64) -> (f64, f64) {
        let slow = |m: &LatencyModel| m.probabilities()[super::STABLE_P99_BUCKET + 1..].iter().sum::<f64>();
        match self.incidents.iter().find(|i| i.from_s <= t && t < i.to_s) {
            Some(i) => (self.stable_failure.max(i.failure), slow(&i.latency)),
            None => (self.stable_failure, slow(&self.stable_latency)),
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
    let mut rng = Rng::new(seed);
    let mut baseline = BackendCounts::default();
    for _ in 0..s.baseline_s {
        let n = rng.poisson(s.total_rps);
        baseline.push_second(backend_second(&mut rng, n, s.stable_failure, &s.stable_latency));
    }
    let mut seconds = Vec::with_capacity(s.duration_s as usize);
    for t in 0..s.duration_s {
        let share = s.steps.iter().rev().find(|(at, _)| *at <= t).map_or(0.0, |(_, w)| *w);
        let incident = s.incidents.iter().find(|i| i.from_s <= t && t < i.to_s);
        let regressed = t >= s.regression_at_s;
        let (cf, cl) =
            if regressed { (s.canary_failure, &s.canary_latency) } else { (s.stable_failure, &s.stable_latency) };
        let (cf, cl, sf, sl) = match incident {
            Some(i) => (cf.max(i.failure), &i.latency, s.stable_failure.max(i.failure), &i.latency),
            None => (cf, cl, s.stable_failure, &s.stable_latency),
        };
        let nc = rng.poisson(s.total_rps * share);
        let nb = rng.poisson(s.total_rps * (1.0 - share));
        let canary = backend_second(&mut rng, nc, cf, cl);
        let stable = backend_second(&mut rng, nb, sf, sl);
        seconds.push(WindowCounts { canary, stable });
    }
    (baseline, seconds)
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
        };
        assert_eq!(generate(&s, 3), generate(&s, 3));
        assert_ne!(generate(&s, 3), generate(&s, 4));
    }
}
