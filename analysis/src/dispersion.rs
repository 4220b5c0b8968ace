//! How much failures (or slow requests) cluster in time, measured from the seconds inside each
//! judged window, and how much a window's counts must be discounted for it.
//!
//! The comparative test treats every request as an independent trial. Real failures come in
//! bursts — a pause, a restart, a dependency failing a second's worth of requests at once — and
//! a burst then looks like dozens of independent failures: overwhelming evidence from what is one
//! event. Under a beta-binomial model of each slice (second) of a version's traffic, a slice of
//! `n` requests has variance `n·p·(1−p)·(1 + (n−1)·ρ)`: `ρ` is the intra-slice correlation, 0 for
//! independent failures. A window made of slices of `n_j` requests then has its variance
//! inflated by `φ = 1 + ρ·(Σ n_j² − Σ n_j)/Σ n_j`, and carries the information of `Σ n_j / φ`
//! independent requests. The e-process counts each version's trials and events divided by its `φ`
//! (a quasi-likelihood): with independent failures `ρ ≈ 0` and nothing changes; with bursts the
//! evidence a burst carries shrinks to what a handful of failures would carry.
//!
//! `ρ` is estimated by the method of moments from the spread of each version's per-slice counts
//! around that version's own rate in the same window — so a shared incident or a weight step
//! (which move the rate of a whole window) is not mistaken for clustering, and a canary that is
//! simply worse (a higher rate, evenly spread) is not either. Bursts that last several seconds
//! are measured by also pooling the seconds into longer slices ([`SCALES`]), and the largest
//! inflation wins. The estimate includes the window being judged, so the first burst ever seen is
//! discounted in the very window it happens.

use serde::{Deserialize, Serialize};

/// Slice lengths, in seconds, at which clustering is measured.
pub const SCALES: [usize; 3] = [1, 2, 5];

/// How many standard errors the measured excess must clear before it counts as clustering.
pub const NOISE_Z: f64 = 2.0;

/// The same for what a single window shows on its own (see `local_rho`).
pub const LOCAL_NOISE_Z: f64 = 2.0;

/// Windows compared with each other to see bursts that outlast a window (the current one and the
/// ones just before it).
pub const WINDOW_GROUP: usize = 12;

/// Method-of-moments sums for `ρ` at each of [`SCALES`], over every window seen so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Clustering {
    /// `Σ (S − p̂q̂·A)` per scale: squared deviations of slice counts beyond what binomial slices
    /// would give.
    excess: [f64; SCALES.len()],
    /// `Σ p̂q̂·B` per scale: what a unit of `ρ` adds to them.
    scale: [f64; SCALES.len()],
    /// `Σ Var(S)` per scale were slices binomial: the noise the excess must clear.
    #[serde(default)]
    noise: [f64; SCALES.len()],
    /// The same three sums with whole windows as the slices, over groups of [`WINDOW_GROUP`]
    /// consecutive windows: bursts that outlast a window.
    #[serde(default)]
    windows: [f64; 3],
    /// The totals `(trials, events)` of the last [`WINDOW_GROUP`] windows, the current one last.
    #[serde(default)]
    recent: Vec<(u64, u64)>,
    #[serde(default)]
    windows_seen: u64,
}

impl Clustering {
    /// Adds one window of one version, as per-second `(trials, events)`.
    pub fn observe(&mut self, seconds: &[(u64, u64)]) {
        for (i, &length) in SCALES.iter().enumerate() {
            let slices = pool(seconds, length);
            if let Some((excess, scale, noise)) = moments(&slices) {
                self.excess[i] += excess;
                self.scale[i] += scale;
                self.noise[i] += noise;
            }
        }
        let total = pool(seconds, seconds.len().max(1)).first().copied().unwrap_or((0, 0));
        self.recent.push(total);
        if self.recent.len() > WINDOW_GROUP {
            self.recent.remove(0);
        }
        // Every window starts a comparison with the ones before it, so each window's scatter is
        // counted in up to WINDOW_GROUP overlapping groups: its noise is counted as often and as
        // correlated (variance × the overlap), or noise would pass for clustering.
        self.windows_seen += 1;
        if let Some((excess, scale, noise)) = moments(&self.recent) {
            let overlap = self.recent.len() as f64;
            self.windows[0] += excess;
            self.windows[1] += scale;
            self.windows[2] += noise * overlap;
        }
    }

    /// The correlation between requests of one window, beyond noise (see [`Clustering::rho`]).
    pub fn rho_windows(&self) -> f64 {
        let [excess, scale, noise] = self.windows;
        if scale <= 0.0 {
            return 0.0;
        }
        ((excess - NOISE_Z * noise.sqrt()) / scale).clamp(0.0, 1.0)
    }

    /// The intra-slice correlation at scale index `i` that the data show beyond noise: the
    /// estimate less [`NOISE_Z`] standard errors of what binomial slices would scatter, never below
    /// 0. Independent failures then almost never count as clustered (which would slow every
    /// verdict), while a burst — many times the noise — counts almost in full.
    pub fn rho(&self, i: usize) -> f64 {
        if self.scale[i] <= 0.0 {
            return 0.0;
        }
        let clear = self.excess[i] - NOISE_Z * self.noise[i].sqrt();
        (clear / self.scale[i]).clamp(0.0, 1.0)
    }

    /// The variance inflation of a window with these per-second trials (the window just
    /// observed): the largest over scales, the whole window among them, of what the clustering
    /// seen so far implies and of what this window alone shows. Rare bursts make an average a poor
    /// guide — quiet hours dilute one burst's share of it — so a window that is itself far more
    /// scattered than binomial noise allows is discounted by its own scatter.
    pub fn inflation(&self, seconds: &[(u64, u64)]) -> f64 {
        let inflate = |slices: &[(u64, u64)], rho: f64| {
            let n: f64 = slices.iter().map(|(n, _)| *n as f64).sum();
            if n <= 0.0 {
                return 1.0;
            }
            let n2: f64 = slices.iter().map(|(n, _)| (*n as f64) * (*n as f64)).sum();
            1.0 + rho * (n2 - n) / n
        };
        let mut phi: f64 = 1.0;
        for (i, &length) in SCALES.iter().enumerate() {
            let slices = pool(seconds, length);
            phi = phi.max(inflate(&slices, self.rho(i).max(local_rho(&slices))));
        }
        let whole = pool(seconds, seconds.len().max(1));
        phi.max(inflate(&whole, self.rho_windows().max(local_rho(&self.recent))))
    }

    /// The larger clustering of two versions, scale by scale (the null says they share one).
    pub fn max(&self, other: &Clustering) -> Clustering {
        let mut out = Clustering::default();
        for i in 0..SCALES.len() {
            // Keep the sums of the version with the larger ρ at this scale.
            let pick = if self.rho(i) >= other.rho(i) { self } else { other };
            out.excess[i] = pick.excess[i];
            out.scale[i] = pick.scale[i];
            out.noise[i] = pick.noise[i];
        }
        let pick = if self.rho_windows() >= other.rho_windows() { self } else { other };
        out.windows = pick.windows;
        out
    }
}

/// What one block of slices shows on its own, beyond [`LOCAL_NOISE_Z`] standard errors of noise:
/// each window gets this chance anew, so it must clear more noise than the running estimate.
fn local_rho(slices: &[(u64, u64)]) -> f64 {
    match moments(slices) {
        Some((excess, scale, noise)) if scale > 0.0 => {
            ((excess - LOCAL_NOISE_Z * noise.sqrt()) / scale).clamp(0.0, 1.0)
        }
        _ => 0.0,
    }
}

/// Consecutive seconds pooled into slices of `length` seconds (the last one may be shorter).
fn pool(seconds: &[(u64, u64)], length: usize) -> Vec<(u64, u64)> {
    seconds.chunks(length.max(1)).map(|c| c.iter().fold((0, 0), |(n, e), (sn, se)| (n + sn, e + se.min(sn)))).collect()
}

/// One block's `(S − p̂q̂·A, p̂q̂·B, Var(S))`, or `None` when it says nothing (fewer than two
/// slices with trials, or no trials). `S = Σ (e_j − n_j p̂)²` around the block's own rate `p̂`;
/// `E[S] = p q (A + ρ B)` with `A = Σ n_j (1 − n_j/N)` and `B = Σ n_j (n_j − 1)(1 − n_j/N)`; were
/// the slices binomial, each square would vary by `μ + 2μ²` with `μ = n_j p q`.
fn moments(slices: &[(u64, u64)]) -> Option<(f64, f64, f64)> {
    let n_total: f64 = slices.iter().map(|(n, _)| *n as f64).sum();
    let e_total: f64 = slices.iter().map(|(_, e)| *e as f64).sum();
    if n_total < 2.0 || slices.iter().filter(|(n, _)| *n > 0).count() < 2 {
        return None;
    }
    let p = e_total / n_total;
    let pq = p * (1.0 - p);
    let (mut s, mut a, mut b, mut v) = (0.0, 0.0, 0.0, 0.0);
    for &(n, e) in slices {
        let (n, e) = (n as f64, e as f64);
        s += (e - n * p).powi(2);
        a += n * (1.0 - n / n_total);
        b += n * (n - 1.0) * (1.0 - n / n_total);
        let mu = n * pq;
        v += mu + 2.0 * mu * mu;
    }
    Some((s - pq * a, pq * b, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Rng;

    fn window(rng: &mut Rng, rps: u64, p: f64, burst: Option<(usize, f64)>) -> Vec<(u64, u64)> {
        (0..10)
            .map(|t| {
                let rate = match burst {
                    Some((at, f)) if at == t => f,
                    _ => p,
                };
                (rps, rng.binomial(rps, rate))
            })
            .collect()
    }

    #[test]
    fn independent_failures_show_no_clustering() {
        let mut rng = Rng::new(1);
        let mut c = Clustering::default();
        for _ in 0..360 {
            c.observe(&window(&mut rng, 95, 0.01, None));
        }
        let phi = c.inflation(&[(95, 0); 10]);
        assert!(phi < 1.05, "φ {phi} for binomial seconds");
    }

    #[test]
    fn one_burst_is_discounted_in_the_window_it_happens() {
        // 20 req/s, 0.1% failures, then one second failing 20% (4 of 20).
        let mut rng = Rng::new(2);
        let mut c = Clustering::default();
        for _ in 0..30 {
            c.observe(&window(&mut rng, 20, 0.001, None));
        }
        let burst = window(&mut rng, 20, 0.001, Some((3, 0.2)));
        c.observe(&burst);
        let phi = c.inflation(&burst);
        assert!(phi > 1.5, "a burst second inflates its window: φ {phi}");
    }

    #[test]
    fn a_worse_rate_spread_evenly_is_not_clustering() {
        let mut rng = Rng::new(3);
        let mut c = Clustering::default();
        for _ in 0..100 {
            c.observe(&window(&mut rng, 5, 0.011, None));
        }
        assert!(c.inflation(&[(5, 0); 10]) < 1.05);
    }

    #[test]
    fn bursts_lasting_seconds_are_seen_at_a_longer_scale() {
        let mut rng = Rng::new(4);
        let mut c = Clustering::default();
        for k in 0..200 {
            let mut w = window(&mut rng, 50, 0.001, None);
            if k % 10 == 0 {
                for s in &mut w[2..5] {
                    s.1 = rng.binomial(50, 0.3);
                }
            }
            c.observe(&w);
        }
        assert!(c.rho(2) > 0.0 && c.rho(1) > 0.0, "{c:?}");
        let phi = c.inflation(&[(50, 0); 10]);
        assert!(phi > 2.0, "φ {phi}");
    }
}
