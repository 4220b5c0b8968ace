//! Latency comparisons that read whole histograms: the Mann-Whitney statistic from bucket counts
//! (how often a canary request is slower than a stable one), used to explain latency verdicts.

/// Mann-Whitney U of canary against stable, from per-bucket counts in the same buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// `U = Σ_k c_k · (B_<k + b_k / 2)`: pairs where the canary request is slower, ties counted half.
    pub u: f64,
    /// `n_c · n_b / 2`, U's mean when both come from one distribution.
    pub mean: f64,
    /// U's variance under that null, corrected for ties (every bucket is a tie group).
    pub variance: f64,
    /// `θ = U / (n_c · n_b)`: the chance a canary request is slower than a stable one (0.5: same).
    pub theta: f64,
}

impl MannWhitney {
    /// `None` unless both versions have timed requests.
    pub fn from_buckets(canary: &[u64], stable: &[u64]) -> Option<MannWhitney> {
        let buckets = canary.len().max(stable.len());
        let at = |v: &[u64], k: usize| v.get(k).copied().unwrap_or(0) as f64;
        let n_c: f64 = canary.iter().sum::<u64>() as f64;
        let n_b: f64 = stable.iter().sum::<u64>() as f64;
        if n_c == 0.0 || n_b == 0.0 {
            return None;
        }
        let n = n_c + n_b;
        let mut u = 0.0;
        let mut stable_below = 0.0;
        let mut ties = 0.0;
        for k in 0..buckets {
            let (c, b) = (at(canary, k), at(stable, k));
            u += c * (stable_below + b / 2.0);
            stable_below += b;
            let t = c + b;
            ties += t * t * t - t;
        }
        let mean = n_c * n_b / 2.0;
        let variance = if n > 1.0 { n_c * n_b / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0))) } else { 0.0 };
        Some(MannWhitney { u, mean, variance, theta: u / (n_c * n_b) })
    }

    /// The standardised statistic `(U − mean) / √variance` (0 when every request tied).
    pub fn z(&self) -> f64 {
        if self.variance > 0.0 { (self.u - self.mean) / self.variance.sqrt() } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_histograms_are_even_and_a_slower_canary_is_not() {
        let same = MannWhitney::from_buckets(&[10, 20, 5], &[20, 40, 10]).unwrap();
        assert!((same.theta - 0.5).abs() < 1e-12);
        assert!(same.z().abs() < 1e-12);
        let slower = MannWhitney::from_buckets(&[0, 10, 25], &[20, 40, 10]).unwrap();
        assert!(slower.theta > 0.7 && slower.z() > 3.0, "{slower:?}");
        assert_eq!(MannWhitney::from_buckets(&[], &[1]), None);
        // Everything in one bucket: all ties, no variance.
        let tied = MannWhitney::from_buckets(&[3], &[4]).unwrap();
        assert_eq!((tied.theta, tied.z()), (0.5, 0.0));
    }
}
