//! Fencing for the leader's writes. Holding the Lease is not enough: a leader that was paused
//! (a long GC-like stall, SIGSTOP, a frozen VM) wakes up believing it still leads while another
//! replica already took over. So every leader-only write — status, a Canary's TrafficSplit,
//! Events — first asks the [`Fence`] whether this replica is still certain to hold the Lease for
//! longer than the write may take, and each write is bounded by [`WRITE_TIMEOUT`].
//!
//! The arithmetic: a renewal *sent* at `t` that succeeded keeps every other replica out until at
//! least `t + lease duration` (they judge expiry from when they first see the renewed record, which
//! is after `t`). The fence trusts only `t + renew_deadline`, shorter than the lease by a safety
//! margin for clock-rate drift and server latency, and lets a write start only if it would end,
//! timeout included, before then.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest any leader-only write may take; shorter than the lease's safety margin.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a leader-only write was not made or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("not written: this replica cannot prove it still holds the leader lease")]
    Fenced,
    #[error("not written: no answer within {WRITE_TIMEOUT:?}")]
    Timeout,
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Shared between the elector (which extends it) and every writer (which checks it).
#[derive(Clone, Debug)]
pub struct Fence {
    /// Until when this replica is certain no other replica leads; `None` when it does not lead.
    held_until: Arc<Mutex<Option<Instant>>>,
    /// How long after a renewal was sent the fence trusts it.
    trust: Duration,
}

impl Fence {
    /// A fence that trusts each renewal for `renew_deadline` (which must be shorter than the
    /// lease duration).
    pub fn new(renew_deadline: Duration) -> Self {
        Fence { held_until: Arc::default(), trust: renew_deadline }
    }

    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&self, sent: Instant) {
        let mut held = self.held_until.lock().unwrap_or_else(|p| p.into_inner());
        let until = sent + self.trust;
        *held = Some(held.map_or(until, |h| h.max(until)));
    }

    /// Leadership was lost or given up: no write passes until the next successful renewal.
    pub fn revoke(&self) {
        *self.held_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether a write starting at `now` and taking at most [`WRITE_TIMEOUT`] ends inside the lease.
    pub fn admits(&self, now: Instant) -> bool {
        self.held_until.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|until| now + WRITE_TIMEOUT <= until)
    }

    /// Runs `write` if the fence admits it now, bounded by [`WRITE_TIMEOUT`].
    pub async fn write<T>(&self, write: impl Future<Output = Result<T, kube::Error>>) -> Result<T, WriteError> {
        if !self.admits(Instant::now()) {
            return Err(WriteError::Fenced);
        }
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(WriteError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_renewal_admits_writes_until_the_trusted_part_of_the_lease_runs_out() {
        let fence = Fence::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(!fence.admits(t0), "no renewal yet");
        fence.renewed(t0);
        assert!(fence.admits(t0));
        assert!(fence.admits(t0 + Duration::from_secs(10) - WRITE_TIMEOUT));
        assert!(!fence.admits(t0 + Duration::from_secs(10) - WRITE_TIMEOUT + Duration::from_millis(1)));
    }

    #[test]
    fn a_paused_leader_that_wakes_after_the_lease_is_fenced() {
        let fence = Fence::new(Duration::from_secs(10));
        let t0 = Instant::now();
        fence.renewed(t0);
        // Stopped for 20 s: longer than the lease (15 s) another replica waited out.
        assert!(!fence.admits(t0 + Duration::from_secs(20)));
    }

    #[test]
    fn revoking_closes_the_fence_and_a_late_older_renewal_never_shortens_it() {
        let fence = Fence::new(Duration::from_secs(10));
        let t0 = Instant::now();
        fence.renewed(t0 + Duration::from_secs(2));
        fence.renewed(t0);
        assert!(fence.admits(t0 + Duration::from_secs(8) - WRITE_TIMEOUT));
        fence.revoke();
        assert!(!fence.admits(t0));
    }

    #[tokio::test]
    async fn a_fenced_write_is_never_started() {
        let fence = Fence::new(Duration::from_secs(10));
        let started = std::sync::atomic::AtomicBool::new(false);
        let result = fence
            .write(async {
                started.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, kube::Error>(())
            })
            .await;
        assert!(matches!(result, Err(WriteError::Fenced)));
        assert!(!started.load(std::sync::atomic::Ordering::SeqCst), "the write's future was never polled");
    }
}
