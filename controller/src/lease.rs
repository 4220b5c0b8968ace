//! Leader election on a `coordination.k8s.io/v1` Lease. Every replica serves proxies; only the
//! leader writes status, records Events and drives Canaries.
//!
//! Expiry is judged by the local clock from when this replica last saw the lease record change
//! (as client-go does), so clock skew between replicas cannot shorten a lease. A leader that has not
//! renewed within `renew_deadline` (shorter than the lease) stops acting as leader at once, before
//! any other replica can take over. A follower sleeps exactly until the lease would expire, so
//! failover completes within one lease duration of the leader's last renewal.
//!
//! The elector also keeps the [`Fence`] every leader-only write checks: it is extended from the
//! moment each successful renewal was *sent*, and closed whenever this replica stops leading.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::fence::Fence;

/// Annotation on the Lease naming the leader's gRPC address, so other replicas can relay telemetry.
pub const ADDRESS_ANNOTATION: &str = "shifter.dev/grpc-address";

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica (pod name, or host name plus pid).
    pub identity: String,
    /// Where this replica serves gRPC, advertised while it leads.
    pub address: Option<String>,
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: "shifter-controller".into(),
            identity: identity.into(),
            address: None,
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// What this replica knows about leadership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leadership {
    pub is_leader: bool,
    pub holder: Option<String>,
    /// The leader's advertised gRPC address.
    pub leader_address: Option<String>,
}

/// What the rest of the controller reads from the election.
#[derive(Clone)]
pub struct Election {
    pub leadership: watch::Receiver<Leadership>,
    pub fence: Fence,
}

/// Runs the election under `supervisor` until the process ends; read the channel for the current
/// state and check the fence before each leader-only write.
pub fn spawn_elector(supervisor: &crate::supervise::Supervisor, client: Client, config: LeaseConfig) -> Election {
    let (tx, rx) = watch::channel(Leadership::default());
    let fence = Fence::new(config.renew_deadline);
    let election = Election { leadership: rx, fence: fence.clone() };
    let span = tracing::info_span!("lease", identity = %config.identity);
    supervisor.spawn("lease", span, move || {
        let elector = Elector::new(client.clone(), config.clone(), tx.clone(), fence.clone());
        async move {
            elector.run().await;
            Ok(())
        }
    });
    election
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    tx: watch::Sender<Leadership>,
    fence: Fence,
    /// The record last seen (holder, renew time, resourceVersion) and when it was first seen so.
    observed: Option<(String, Instant)>,
    last_renew: Option<Instant>,
}

impl Elector {
    fn new(client: Client, config: LeaseConfig, tx: watch::Sender<Leadership>, fence: Fence) -> Self {
        // A restarted elector starts as a follower: it has proven nothing yet.
        fence.revoke();
        tx.send_if_modified(|cur| std::mem::take(cur) != Leadership::default());
        Elector { api: Api::namespaced(client, &config.namespace), config, tx, fence, observed: None, last_renew: None }
    }

    async fn run(mut self) {
        loop {
            let attempt = tokio::time::timeout(self.config.renew_deadline / 2, self.try_acquire_or_renew()).await;
            let next = match attempt {
                Ok(Ok(next)) => next,
                Ok(Err(error)) => {
                    warn!(%error, "lease update failed");
                    self.config.retry
                }
                Err(_) => {
                    warn!("lease update timed out");
                    self.config.retry
                }
            };
            // A leader that could not renew in time steps down before anyone else may take over.
            if self.last_renew.is_some_and(|t| t.elapsed() > self.config.renew_deadline) {
                self.last_renew = None;
                self.publish(false, None, None);
            }
            tokio::time::sleep(next).await;
        }
    }

    fn publish(&self, is_leader: bool, holder: Option<String>, leader_address: Option<String>) {
        if !is_leader {
            self.fence.revoke();
        }
        let next = Leadership { is_leader, holder, leader_address };
        self.tx.send_if_modified(|cur| {
            if *cur == next {
                return false;
            }
            if cur.is_leader != next.is_leader {
                info!(leader = next.is_leader, holder = ?next.holder, "leadership changed");
            }
            *cur = next;
            true
        });
    }

    /// One round; returns how long to wait before the next.
    async fn try_acquire_or_renew(&mut self) -> Result<Duration, kube::Error> {
        let me = self.config.identity.clone();
        let existing = self.api.get_opt(&self.config.name).await?;
        let Some(mut lease) = existing else {
            let lease = self.lease_for_me(ObjectMeta { name: Some(self.config.name.clone()), ..Default::default() }, 0);
            let sent = Instant::now();
            match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => self.won(sent),
                Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Duration::ZERO),
                Err(e) => return Err(e),
            }
            return Ok(self.config.retry);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let record = format!("{holder:?}/{:?}/{:?}", spec.renew_time, lease.metadata.resource_version);
        let seen_at = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => {
                let now = Instant::now();
                self.observed = Some((record, now));
                now
            }
        };
        let duration =
            spec.lease_duration_seconds.map_or(self.config.duration, |s| Duration::from_secs(s.max(1) as u64));
        let round =
            decide(holder.as_deref(), &me, duration, seen_at.elapsed(), spec.lease_transitions, self.config.retry);
        if let Round::Take { transitions, renewal } = round {
            let acquire = if renewal { spec.acquire_time.clone() } else { None };
            let mut updated = self.lease_for_me(lease.metadata.clone(), transitions);
            if let (Some(s), Some(t)) = (updated.spec.as_mut(), acquire) {
                s.acquire_time = Some(t);
            }
            let sent = Instant::now();
            match self.api.replace(&self.config.name, &PostParams::default(), &updated).await {
                Ok(_) => {
                    self.won(sent);
                    Ok(self.config.retry)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // Someone else wrote first; look again at once.
                    self.last_renew = None;
                    self.publish(false, holder, None);
                    Ok(Duration::ZERO)
                }
                Err(e) => Err(e),
            }
        } else {
            self.last_renew = None;
            let address = lease.metadata.annotations.take().and_then(|mut a| a.remove(ADDRESS_ANNOTATION));
            self.publish(false, holder, address);
            Ok(match round {
                Round::Follow { wake_in } => wake_in,
                Round::Take { .. } => Duration::ZERO,
            })
        }
    }

    /// A write of our record, sent at `sent`, succeeded.
    fn won(&mut self, sent: Instant) {
        self.last_renew = Some(sent);
        self.fence.renewed(sent);
        self.observed = None;
        self.publish(true, Some(self.config.identity.clone()), self.config.address.clone());
    }

    fn lease_for_me(&self, mut metadata: ObjectMeta, transitions: i32) -> Lease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let annotations = metadata.annotations.get_or_insert_with(Default::default);
        match &self.config.address {
            Some(a) => annotations.insert(ADDRESS_ANNOTATION.into(), a.clone()),
            None => annotations.remove(ADDRESS_ANNOTATION),
        };
        Lease {
            metadata,
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.config.duration.as_secs() as i32),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..Default::default()
            }),
        }
    }
}

/// What one round of the election does, decided from the Lease as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Write our record: a renewal of our own lease, or a takeover counted in `transitions`.
    Take { transitions: i32, renewal: bool },
    /// Someone else holds a live lease: look again after `wake_in`.
    Follow { wake_in: Duration },
}

/// Decides a round: take the lease when it is ours, unheld, or unchanged for a whole `duration`
/// since this replica first saw it (`seen_for`, on this replica's clock); otherwise wake exactly
/// when it would expire, or at the next retry if sooner.
fn decide(
    holder: Option<&str>,
    me: &str,
    duration: Duration,
    seen_for: Duration,
    transitions: Option<i32>,
    retry: Duration,
) -> Round {
    let mine = holder == Some(me);
    if mine || holder.is_none() || seen_for >= duration {
        // A Lease is outside input: its counter may hold anything.
        let transitions = transitions.unwrap_or(0).max(0).saturating_add(i32::from(!mine));
        return Round::Take { transitions, renewal: mine };
    }
    Round::Follow { wake_in: duration.saturating_sub(seen_for).min(retry) + Duration::from_millis(10) }
}

/// Gives the lease up (on shutdown) so another replica takes over without waiting for expiry.
pub async fn release(client: Client, config: &LeaseConfig) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let Some(mut lease) = api.get_opt(&config.name).await? else { return Ok(()) };
    let Some(spec) = lease.spec.as_mut() else { return Ok(()) };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    api.replace(&config.name, &PostParams::default(), &lease).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_holder_renews_its_own_lease_without_counting_a_transition() {
        assert_eq!(decide(Some("a"), "a", S(15), S(100), Some(3), S(2)), Round::Take { transitions: 3, renewal: true });
    }

    #[test]
    fn an_unheld_or_expired_lease_is_taken_and_counted() {
        assert_eq!(decide(None, "b", S(15), S(0), Some(3), S(2)), Round::Take { transitions: 4, renewal: false });
        assert_eq!(decide(Some("a"), "b", S(15), S(15), None, S(2)), Round::Take { transitions: 1, renewal: false });
    }

    #[test]
    fn a_live_lease_of_another_is_followed_until_it_would_expire() {
        let wake = |seen_for| match decide(Some("a"), "b", S(15), seen_for, Some(1), S(2)) {
            Round::Follow { wake_in } => wake_in,
            other => panic!("took a live lease: {other:?}"),
        };
        assert_eq!(wake(S(0)), S(2) + Duration::from_millis(10), "at the next retry");
        assert_eq!(wake(Duration::from_millis(14_500)), Duration::from_millis(510), "exactly at expiry");
    }

    #[test]
    fn a_hostile_transition_counter_cannot_overflow() {
        let round = decide(Some("a"), "b", S(1), S(1), Some(i32::MAX), S(2));
        assert_eq!(round, Round::Take { transitions: i32::MAX, renewal: false });
        let round = decide(None, "b", S(1), S(0), Some(-7), S(2));
        assert_eq!(round, Round::Take { transitions: 1, renewal: false });
    }
}
