//! The scenarios the simulation runner measures, in groups: the classic targets with independent
//! failures, healthy canaries on bursty streams (the burst grid), bad canaries the judge must
//! catch (on bursty streams and at high failure rates), trickle traffic and noisy services.
//! Each scenario says whether its canary is healthy (any rollback is a false one) or bad.

use super::bursts::{BurstLength, Bursts, BurstsHit};
use super::scenarios::{
    bigger_canary_bursts, drifting_canary, failure_bursts, latency_spikes, more_frequent_canary_bursts, noisy,
    own_bursts, regression_with_bursts, shared_and_own_bursts, shared_bursts, trickle, with_bursts,
};
use super::stream::Scenario;
use super::{failure_regression, healthy_rollout, latency_regression, shifted_latency, tail_latency};

/// How long a healthy or bad canary of the grid runs: 30 minutes, 180 ticks of the default judge.
pub const GRID_S: i64 = 1800;
/// How long trickle scenarios run: an hour, as a 0.2 req/s canary needs 17 minutes to reach the
/// default 200 requests.
pub const TRICKLE_S: i64 = 3600;

/// Share of seconds in a burst, share of a burst second's requests failing, canary req/s (of
/// 100): the axes of the burst grid.
pub const BURST_SHARES: [f64; 4] = [0.005, 0.01, 0.02, 0.05];
pub const BURST_FAILURES: [f64; 3] = [0.05, 0.2, 0.5];
pub const CANARY_RPS: [f64; 4] = [1.0, 5.0, 20.0, 50.0];

/// What the judge should do with a scenario's canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The canary is as good as stable: every rollback is a false one.
    Healthy,
    /// The canary is worse than stable: it should be rolled back, and never promoted.
    Regression,
}

/// A scenario of the grid with the verdict it calls for.
#[derive(Debug, Clone)]
pub struct GridScenario {
    pub expect: Expect,
    pub scenario: Scenario,
}

fn healthy(scenario: Scenario) -> GridScenario {
    GridScenario { expect: Expect::Healthy, scenario }
}

fn bad(scenario: Scenario) -> GridScenario {
    GridScenario { expect: Expect::Regression, scenario }
}

/// A group of scenarios the runner can be asked for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Classic,
    Bursts,
    Targets,
    Trickle,
    Noisy,
}

impl Group {
    pub const ALL: [Group; 5] = [Group::Classic, Group::Bursts, Group::Targets, Group::Trickle, Group::Noisy];

    pub fn name(self) -> &'static str {
        match self {
            Group::Classic => "classic",
            Group::Bursts => "bursts",
            Group::Targets => "targets",
            Group::Trickle => "trickle",
            Group::Noisy => "noisy",
        }
    }

    /// What the group measures, for the heading above its table.
    pub fn title(self) -> &'static str {
        match self {
            Group::Classic => "independent failures: the detection targets and the healthy hour",
            Group::Bursts => "healthy canaries on bursty streams (30 min each)",
            Group::Targets => "bad canaries: 10× failures under bursts, 2% → 3% and 4%, drift (30 min each)",
            Group::Trickle => "trickle traffic (1 h each)",
            Group::Noisy => "high failure rates on both versions (30 min each)",
        }
    }

    /// Groups named in `list` (comma-separated; `all` for every one).
    pub fn parse_list(list: &str) -> Result<Vec<Group>, String> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim) {
            if name == "all" {
                return Ok(Group::ALL.to_vec());
            }
            match Group::ALL.iter().find(|g| g.name() == name) {
                Some(g) if !out.contains(g) => out.push(*g),
                Some(_) => {}
                None => {
                    let known: Vec<&str> = Group::ALL.iter().map(|g| g.name()).collect();
                    return Err(format!("--group: unknown group {name:?}; use one of {}, or all", known.join(", ")));
                }
            }
        }
        Ok(out)
    }

    pub fn scenarios(self) -> Vec<GridScenario> {
        match self {
            Group::Classic => classic(),
            Group::Bursts => burst_grid(),
            Group::Targets => targets(),
            Group::Trickle => trickle_group(),
            Group::Noisy => noisy_group(),
        }
    }
}

/// The scenarios measured before bursts existed, with the same streams.
fn classic() -> Vec<GridScenario> {
    vec![
        bad(failure_regression(0.001, 0.011, 1800)),
        bad(failure_regression(0.001, 0.10, 1800)),
        bad(latency_regression("latency shift: 1% → 2% slower than stable p99", shifted_latency(), 1800)),
        bad(latency_regression("tail only: 1% → 2% slower than stable p99", tail_latency(), 1800)),
        healthy(healthy_rollout(3600)),
    ]
}

/// Healthy canaries: the canary has the same burst process as stable (drawn independently, or
/// shared), so its mean failure rate equals stable's.
fn burst_grid() -> Vec<GridScenario> {
    let mut out = Vec::new();
    let one = BurstLength::Fixed(1);
    for share in BURST_SHARES {
        for failure in BURST_FAILURES {
            for rps in CANARY_RPS {
                out.push(healthy(own_bursts(share, failure, one, rps, GRID_S)));
            }
        }
    }
    for (share, failure, rps) in cross([0.01, 0.05], [0.2, 0.5], [5.0, 50.0]) {
        out.push(healthy(shared_bursts(share, failure, one, rps, GRID_S)));
    }
    for length in [BurstLength::Fixed(5), BurstLength::Geometric(30.0)] {
        for (share, failure, rps) in cross([0.01, 0.05], [0.2, 0.5], [5.0, 50.0]) {
            out.push(healthy(own_bursts(share, failure, length, rps, GRID_S)));
        }
    }
    for (share, rps) in [(0.01, 5.0), (0.05, 5.0), (0.01, 50.0), (0.05, 50.0)] {
        out.push(healthy(shared_bursts(share, 0.5, BurstLength::Geometric(30.0), rps, GRID_S)));
    }
    for hits in [BurstsHit::Each, BurstsHit::Both] {
        for (share, rps) in [(0.01, 5.0), (0.05, 5.0), (0.01, 50.0), (0.05, 50.0)] {
            out.push(healthy(latency_spikes(share, hits, rps, GRID_S)));
        }
    }
    let shared = failure_bursts(BurstsHit::Both, 0.01, 0.5, one);
    let own = failure_bursts(BurstsHit::Each, 0.01, 0.2, one);
    for rps in [5.0, 50.0] {
        out.push(healthy(shared_and_own_bursts(shared.clone(), own.clone(), rps, GRID_S)));
    }
    out
}

fn cross<const A: usize, const B: usize, const C: usize>(
    a: [f64; A],
    b: [f64; B],
    c: [f64; C],
) -> impl Iterator<Item = (f64, f64, f64)> {
    a.into_iter().flat_map(move |x| b.into_iter().flat_map(move |y| c.into_iter().map(move |z| (x, y, z))))
}

/// Bad canaries. Under bursts, the 10× canary bursts more often than stable (same bursts, more
/// of them): bigger bursts cannot reach 10× on most of the grid — with bursts in 1% of seconds
/// failing 20% of requests, even bursts that fail every request make a canary only 3.7× worse — and
/// a canary that pauses or restarts more often is the common way a bad build shows on a bursty
/// platform. Two bigger-burst canaries are measured where they can reach 10×.
fn targets() -> Vec<GridScenario> {
    let mut out = Vec::new();
    let one = BurstLength::Fixed(1);
    let frequent = |share: f64, failure: f64, length: BurstLength, rps: f64| {
        let base = own_bursts(share, failure, length, rps, GRID_S);
        let like = base.bursts[0].clone();
        bad(more_frequent_canary_bursts(base, &like, 10.0))
    };
    for share in BURST_SHARES {
        for failure in BURST_FAILURES {
            out.push(frequent(share, failure, one, 5.0));
        }
    }
    for rps in [1.0, 20.0, 50.0] {
        out.push(frequent(0.01, 0.2, one, rps));
    }
    out.push(frequent(0.01, 0.2, BurstLength::Geometric(30.0), 5.0));
    let shared = shared_bursts(0.01, 0.5, one, 5.0, GRID_S);
    let like = Bursts { hits: BurstsHit::Canary, ..shared.bursts[0].clone() };
    out.push(bad(more_frequent_canary_bursts(shared, &like, 10.0)));
    for share in [0.02, 0.05] {
        out.push(bad(bigger_canary_bursts(own_bursts(share, 0.05, one, 5.0, GRID_S), 10.0)));
    }
    for hits in [BurstsHit::Each, BurstsHit::Both] {
        let b = failure_bursts(hits, 0.01, if hits == BurstsHit::Both { 0.5 } else { 0.2 }, one);
        for canary in [0.011, 0.10] {
            out.push(bad(regression_with_bursts(0.001, canary, b.clone(), 5.0, GRID_S)));
        }
    }
    for canary in [0.03, 0.04] {
        for rps in [5.0, 20.0, 50.0] {
            out.push(bad(noisy(0.02, canary, rps, GRID_S)));
        }
    }
    out.push(bad(drifting_canary(0.001, 0.021, 5.0, GRID_S)));
    out.push(bad(drifting_canary(0.001, 0.011, 50.0, GRID_S)));
    out.push(bad(drifting_canary(0.02, 0.06, 5.0, GRID_S)));
    out
}

/// 2 req/s in all with a 10% canary (0.2 req/s), and 10 req/s with a 10% canary.
fn trickle_group() -> Vec<GridScenario> {
    let bursts = |hits| failure_bursts(hits, 0.02, 0.5, BurstLength::Fixed(1));
    vec![
        healthy(trickle(2.0, 0.1, 0.001, 0.001, TRICKLE_S)),
        healthy(with_bursts(trickle(2.0, 0.1, 0.001, 0.001, TRICKLE_S), bursts(BurstsHit::Each))),
        healthy(with_bursts(trickle(2.0, 0.1, 0.001, 0.001, TRICKLE_S), bursts(BurstsHit::Both))),
        bad(trickle(2.0, 0.1, 0.001, 0.10, TRICKLE_S)),
        bad(trickle(2.0, 0.1, 0.001, 1.0, TRICKLE_S)),
        healthy(trickle(10.0, 0.1, 0.001, 0.001, TRICKLE_S)),
        healthy(with_bursts(trickle(10.0, 0.1, 0.001, 0.001, TRICKLE_S), bursts(BurstsHit::Each))),
        bad(trickle(10.0, 0.1, 0.001, 0.10, TRICKLE_S)),
    ]
}

/// Stable at 1–5% failures: healthy canaries, and canaries at a multiple of stable's rate.
fn noisy_group() -> Vec<GridScenario> {
    let mut out = Vec::new();
    for stable in [0.01, 0.02, 0.05] {
        for rps in [5.0, 50.0] {
            out.push(healthy(noisy(stable, stable, rps, GRID_S)));
        }
    }
    let bursts = failure_bursts(BurstsHit::Each, 0.01, 0.2, BurstLength::Fixed(1));
    out.push(healthy(with_bursts(noisy(0.02, 0.02, 5.0, GRID_S), bursts)));
    for stable in [0.01, 0.05] {
        for ratio in [1.5, 2.0, 3.0] {
            out.push(bad(noisy(stable, stable * ratio, 5.0, GRID_S)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Version;

    #[test]
    fn every_scenario_has_a_unique_name_and_healthy_canaries_fail_as_often_as_stable() {
        let all: Vec<GridScenario> = Group::ALL.iter().flat_map(|g| g.scenarios()).collect();
        let mut names: Vec<&str> = all.iter().map(|g| g.scenario.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "scenario names must tell scenarios apart for --only");
        for g in &all {
            let (c, s) = (g.scenario.mean_failure(Version::Canary), g.scenario.mean_failure(Version::Stable));
            match g.expect {
                Expect::Healthy => assert!((c - s).abs() < 1e-12, "{}: {c} vs {s}", g.scenario.name),
                Expect::Regression => {
                    let worse_latency = g.scenario.canary_latency != g.scenario.stable_latency;
                    assert!(c > s * 1.4 || worse_latency, "{}: {c} vs {s}", g.scenario.name)
                }
            }
        }
        assert_eq!(Group::Bursts.scenarios().len(), 48 + 8 + 16 + 4 + 8 + 2);
    }

    #[test]
    fn groups_are_picked_by_name() {
        assert_eq!(Group::parse_list("bursts,noisy"), Ok(vec![Group::Bursts, Group::Noisy]));
        assert_eq!(Group::parse_list("all").map(|g| g.len()), Ok(Group::ALL.len()));
        let err = Group::parse_list("burst").unwrap_err();
        assert!(err.starts_with("--group: unknown group \"burst\"") && err.contains("trickle"), "{err}");
    }
}
