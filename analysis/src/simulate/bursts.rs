//! Failures and slow requests that come in bursts. Real services do not fail one request at a
//! time: a garbage-collection pause, a restart or a dependency failing for a second makes a whole
//! second's worth of requests fail or crawl together. A burst process marks the seconds a version
//! spends inside a burst; during such a second its requests fail with the burst's probability and
//! take the burst's latency. Processes either hit each version on its own (independent draws of
//! the same process) or both versions in the same seconds.

use super::stream::{LatencyModel, Rng, Version};

/// Which versions a burst process hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BurstsHit {
    /// Each version has bursts of its own, drawn independently: the same process, other seconds.
    /// A healthy canary on a bursty platform.
    Each,
    /// Both versions in the same seconds: a shared dependency failing, a noisy node.
    Both,
    /// The canary alone (a canary that pauses or restarts more often than stable).
    Canary,
    /// The stable version alone.
    Stable,
}

impl BurstsHit {
    pub fn hits(self, version: Version) -> bool {
        match self {
            BurstsHit::Each | BurstsHit::Both => true,
            BurstsHit::Canary => version == Version::Canary,
            BurstsHit::Stable => version == Version::Stable,
        }
    }
}

/// How long one burst lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BurstLength {
    /// Every burst lasts exactly this many seconds (a restart that takes 5 s).
    Fixed(u32),
    /// Geometric with this mean in seconds: each burst second is followed by another with
    /// probability `1 − 1/mean` (a dependency that recovers at a random moment).
    Geometric(f64),
}

impl BurstLength {
    /// Mean length in seconds (at least 1).
    pub fn mean_s(self) -> f64 {
        match self {
            BurstLength::Fixed(l) => f64::from(l.max(1)),
            BurstLength::Geometric(m) => m.max(1.0),
        }
    }
}

/// One burst process.
#[derive(Debug, Clone, PartialEq)]
pub struct Bursts {
    pub hits: BurstsHit,
    /// Long-run share of seconds a version spends inside a burst of this process.
    pub share: f64,
    pub length: BurstLength,
    /// Failure probability of a burst second's requests (the version's own, if higher).
    pub failure: f64,
    /// Latency of a burst second's requests; `None` keeps the version's own.
    pub latency: Option<LatencyModel>,
}

impl Bursts {
    /// Probability that a burst starts in a second outside one. Bursts alternate with quiet
    /// spells: a quiet spell lasts `(1 − p)/p` seconds on average and a burst `L`, so the share
    /// of burst seconds is `L / (L + (1 − p)/p)`; solved for `p`.
    fn start_probability(&self) -> f64 {
        let s = self.share.clamp(0.0, 1.0);
        let l = self.length.mean_s();
        if s >= 1.0 { 1.0 } else { s / (s + l * (1.0 - s)) }
    }

    /// Which of `len` consecutive seconds fall inside a burst. The first second is drawn from the
    /// process' long-run state, so every second has the same chance `share` of being in a burst.
    pub fn draw(&self, rng: &mut Rng, len: usize) -> Vec<bool> {
        let start = self.start_probability();
        // Burst seconds still to come, the current one included (0: quiet).
        let mut left: u32 = 0;
        if len > 0 && rng.uniform() < self.share {
            // A second picked at random inside fixed-length bursts is equally likely to be any of
            // its seconds; geometric bursts have no memory.
            left = match self.length {
                BurstLength::Fixed(l) => 1 + (rng.uniform() * f64::from(l.max(1))) as u32,
                BurstLength::Geometric(_) => 1,
            };
        }
        let mut out = Vec::with_capacity(len);
        for i in 0..len {
            if left == 0 && i > 0 && rng.uniform() < start {
                left = match self.length {
                    BurstLength::Fixed(l) => l.max(1),
                    BurstLength::Geometric(_) => 1,
                };
            }
            let inside = left > 0;
            if inside {
                left -= 1;
                if let (0, BurstLength::Geometric(mean)) = (left, self.length)
                    && rng.uniform() < 1.0 - 1.0 / mean.max(1.0)
                {
                    left = 1;
                }
            }
            out.push(inside);
        }
        out
    }
}

/// The expected value of "the highest failure probability among the active processes, or `base`"
/// when each process is active on its own with its share: the chance a version's request fails in
/// a second picked at random.
pub fn expected_failure<'a>(base: f64, processes: impl Iterator<Item = &'a Bursts>) -> f64 {
    let mut by_failure: Vec<&Bursts> = processes.collect();
    by_failure.sort_by(|a, b| b.failure.total_cmp(&a.failure));
    let mut quiet = 1.0;
    let mut expected = 0.0;
    for b in by_failure {
        let share = b.share.clamp(0.0, 1.0);
        expected += quiet * share * b.failure.max(base);
        quiet *= 1.0 - share;
    }
    expected + quiet * base
}

/// The expected share of requests slower than the stable p99 bound when the first active process
/// (in order) that sets a latency decides a second's latency, and `base` holds otherwise.
pub fn expected_slow<'a>(base: &LatencyModel, processes: impl Iterator<Item = &'a Bursts>) -> f64 {
    let mut quiet = 1.0;
    let mut expected = 0.0;
    for b in processes {
        if let Some(latency) = &b.latency {
            let share = b.share.clamp(0.0, 1.0);
            expected += quiet * share * slow_share(latency);
            quiet *= 1.0 - share;
        }
    }
    expected + quiet * slow_share(base)
}

/// Share of a latency model's requests slower than the stable p99 bound (300 ms).
pub fn slow_share(m: &LatencyModel) -> f64 {
    m.probabilities()[super::STABLE_P99_BUCKET + 1..].iter().sum::<f64>()
}

/// One process' burst seconds for each version (`None`: the process does not hit it).
#[derive(Debug, Clone, Default)]
struct Lanes {
    canary: Option<Vec<bool>>,
    stable: Option<Vec<bool>>,
}

/// The drawn burst seconds of every process of a scenario, for both versions, over the history
/// before the rollout and the rollout itself.
#[derive(Debug, Clone, Default)]
pub struct BurstSeconds {
    /// One per process, in order.
    lanes: Vec<Lanes>,
    /// Second of the first entry (the start of the history, negative).
    first_s: i64,
}

impl BurstSeconds {
    /// Draws every process over `[first_s, end_s)` from its own generator seeded by `seed`, so the
    /// request draws of a scenario without bursts are the same as if bursts did not exist.
    pub fn draw(processes: &[Bursts], seed: u64, first_s: i64, end_s: i64) -> Self {
        let mut rng = Rng::new(seed ^ 0x6275_7273_7473_2121);
        let len = (end_s - first_s).max(0) as usize;
        let lanes = processes
            .iter()
            .map(|b| match b.hits {
                BurstsHit::Each => {
                    let stable = Some(b.draw(&mut rng, len));
                    Lanes { canary: Some(b.draw(&mut rng, len)), stable }
                }
                BurstsHit::Both => {
                    let both = b.draw(&mut rng, len);
                    Lanes { canary: Some(both.clone()), stable: Some(both) }
                }
                BurstsHit::Canary => Lanes { canary: Some(b.draw(&mut rng, len)), stable: None },
                BurstsHit::Stable => Lanes { canary: None, stable: Some(b.draw(&mut rng, len)) },
            })
            .collect();
        BurstSeconds { lanes, first_s }
    }

    /// Whether process `i` has `version` inside a burst at second `t`.
    pub fn active(&self, i: usize, version: Version, t: i64) -> bool {
        let Some(lanes) = self.lanes.get(i) else { return false };
        let lane = if version == Version::Canary { &lanes.canary } else { &lanes.stable };
        let at = t - self.first_s;
        lane.as_ref().is_some_and(|l| at >= 0 && l.get(at as usize).copied().unwrap_or(false))
    }

    /// A version's failure probability and latency at second `t`, given its own outside bursts:
    /// the highest failure probability of the active processes and the latency of the first
    /// active one that sets a latency.
    pub fn rates<'a>(
        &self,
        processes: &'a [Bursts],
        version: Version,
        t: i64,
        failure: f64,
        latency: &'a LatencyModel,
    ) -> (f64, &'a LatencyModel) {
        let mut failure = failure;
        let mut burst_latency = None;
        for (i, b) in processes.iter().enumerate() {
            if self.active(i, version, t) {
                failure = failure.max(b.failure);
                burst_latency = burst_latency.or(b.latency.as_ref());
            }
        }
        (failure, burst_latency.unwrap_or(latency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::healthy_latency;

    fn process(share: f64, length: BurstLength) -> Bursts {
        Bursts { hits: BurstsHit::Each, share, length, failure: 0.2, latency: None }
    }

    /// Share of burst seconds and mean burst length over a long draw.
    fn observed(b: &Bursts, seed: u64) -> (f64, f64) {
        let seconds = b.draw(&mut Rng::new(seed), 2_000_000);
        let inside = seconds.iter().filter(|s| **s).count();
        let bursts = seconds.windows(2).filter(|w| w[1] && !w[0]).count() + usize::from(seconds[0]);
        (inside as f64 / seconds.len() as f64, inside as f64 / bursts as f64)
    }

    #[test]
    fn bursts_take_their_share_of_seconds_and_last_as_long_as_asked() {
        for (share, length) in [
            (0.005, BurstLength::Fixed(1)),
            (0.02, BurstLength::Fixed(5)),
            (0.05, BurstLength::Geometric(30.0)),
            (0.01, BurstLength::Geometric(3.0)),
        ] {
            let (s, l) = observed(&process(share, length), 11);
            assert!((s - share).abs() < 0.1 * share, "{length:?}: share {s} instead of {share}");
            // Bursts that run into each other look like one longer burst; at these shares that
            // happens rarely.
            assert!((l / length.mean_s() - 1.0).abs() < 0.05 + share * 2.0, "{length:?}: length {l}");
        }
    }

    #[test]
    fn a_history_starts_in_the_long_run_state() {
        // Over many short draws, the first second is inside a burst as often as any other.
        let b = process(0.2, BurstLength::Fixed(10));
        let mut rng = Rng::new(5);
        let runs = 20_000;
        let first = (0..runs).filter(|_| b.draw(&mut rng, 1)[0]).count() as f64 / runs as f64;
        assert!((first - 0.2).abs() < 0.015, "{first}");
    }

    #[test]
    fn each_version_draws_its_own_bursts_and_shared_ones_coincide() {
        let each = process(0.05, BurstLength::Fixed(1));
        let both = Bursts { hits: BurstsHit::Both, ..each.clone() };
        let seconds = BurstSeconds::draw(&[each, both], 3, -1000, 400_000);
        let together = |i| {
            (-1000..400_000)
                .filter(|t| seconds.active(i, Version::Canary, *t) && seconds.active(i, Version::Stable, *t))
                .count() as f64
                / 401_000.0
        };
        assert!((together(0) - 0.05 * 0.05).abs() < 0.0006, "independent: {}", together(0));
        assert!((together(1) - 0.05).abs() < 0.003, "shared: {}", together(1));
    }

    #[test]
    fn expected_rates_combine_independent_processes() {
        let a = Bursts { failure: 0.5, ..process(0.1, BurstLength::Fixed(1)) };
        let b = Bursts { failure: 0.2, ..process(0.2, BurstLength::Fixed(1)) };
        // 0.1 · 0.5 + 0.9 · 0.2 · 0.2 + 0.9 · 0.8 · 0.01
        let want = 0.05 + 0.036 + 0.0072;
        assert!((expected_failure(0.01, [&b, &a].into_iter()) - want).abs() < 1e-12);
        let slow = LatencyModel::lognormal(240.0, healthy_latency_sigma());
        let c = Bursts { latency: Some(slow.clone()), ..a };
        let want = 0.1 * slow_share(&slow) + 0.9 * 0.01;
        assert!((expected_slow(&healthy_latency(), [&b, &c].into_iter()) - want).abs() < 1e-12);
    }

    fn healthy_latency_sigma() -> f64 {
        (300.0f64 / 60.0).ln() / crate::simulate::Z_99
    }
}
