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
        let expired = seen_at.elapsed() >= duration;
        let mine = holder.as_deref() == Some(me.as_str());
        if mine || holder.is_none() || expired {
            let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
            let acquire = if mine { spec.acquire_time.clone() } else { None };
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
            // Wake exactly when the lease would expire, or at the next retry if sooner.
            Ok(duration.saturating_sub(seen_at.elapsed()).min(self.config.retry) + Duration::from_millis(10))
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
