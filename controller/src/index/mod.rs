//! The index: watch events in, one routing snapshot per authority out on `tokio::sync::watch`
//! channels. It knows nothing about gRPC; the server reads it through [`DestinationIndex`].

pub mod gateway;
pub mod resolve;
pub mod state;
pub mod translate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use shifter_crds::TrafficSplit;
use shifter_crds::route_group::HTTPRouteGroup;
use shifter_proto::v1 as pb;
use tokio::sync::watch;

use crate::authority::Authority;
pub use gateway::{ParentReport, RouteInfo, RouteKey, RouteKind};
pub use resolve::{Check, SplitReport};
pub use state::SplitInfo;
pub use state::{ClusterState, Key};
use state::{ServiceInfo, SliceInfo, key_of, route_group_matches};

/// What the gRPC server needs from an index: a channel of snapshots for an authority.
pub trait DestinationIndex: Send + Sync + 'static {
    /// The current snapshot for `authority` and every later one. Snapshots coalesce: a slow reader
    /// sees only the newest.
    fn watch(&self, authority: &Authority) -> watch::Receiver<Arc<Published>> {
        self.watch_from(authority, &authority.namespace)
    }

    /// The same as seen by a client in `client_namespace`: Gateway API consumer routes in that
    /// namespace for the Service replace its producer routes for that client. An empty namespace
    /// means the Service's own.
    fn watch_from(&self, authority: &Authority, client_namespace: &str) -> watch::Receiver<Arc<Published>>;

    /// The Service authority a connection to `addr` (a ClusterIP and port, as a sidecar recovers
    /// it from a redirected connection) is for; `None` when no Service has that address and port.
    fn authority_at(&self, addr: SocketAddr) -> Option<Authority>;
}

/// A snapshot and when the index produced it (for push-latency metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub snapshot: pb::Snapshot,
    pub at: Instant,
}

/// Routing state for every authority a proxy asked about.
pub struct Index {
    inner: Mutex<Inner>,
    changes: watch::Sender<u64>,
}

/// Channels nobody subscribes to any more are swept when the map reaches this size (and then
/// at twice what survived), so authorities proxies asked about once cannot pile up.
const SWEEP_AT: usize = 1024;

struct Inner {
    state: ClusterState,
    /// Keyed by authority and the namespace of the clients it is for.
    published: HashMap<(Authority, String), Channel>,
    /// Size of `published` that triggers the next sweep.
    sweep_at: usize,
    /// Versions start from the process start time so a restarted controller never goes back.
    next_version: u64,
}

struct Channel {
    tx: watch::Sender<Arc<Published>>,
    /// The content last sent, with version 0, to detect real changes.
    content: pb::Snapshot,
}

/// The kinds the index is built from, for whole-list resets after a re-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    EndpointSlice,
    TrafficSplit,
    HTTPRouteGroup,
    HTTPRoute,
    GRPCRoute,
}

impl Default for Index {
    fn default() -> Self {
        let start_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Index {
            inner: Mutex::new(Inner {
                state: ClusterState::default(),
                published: HashMap::new(),
                sweep_at: SWEEP_AT,
                next_version: start_ms * 1000,
            }),
            changes: watch::Sender::new(0),
        }
    }
}

impl Index {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to the state; when it reports a change, republishes `namespace`.
    fn update(&self, namespace: Option<&str>, change: impl FnOnce(&mut ClusterState) -> bool) {
        let mut inner = self.lock();
        if !change(&mut inner.state) {
            return;
        }
        inner.republish(namespace);
        drop(inner);
        self.changes.send_modify(|n| *n += 1);
    }

    pub fn apply_service(&self, svc: &Service) {
        let key = key_of(svc);
        let info = ServiceInfo::from_service(svc);
        self.update(Some(&key.0.clone()), |s| s.insert_service(key, info));
    }

    pub fn delete_service(&self, key: &Key) {
        self.update(Some(&key.0), |s| s.remove_service(key));
    }

    pub fn apply_endpoint_slice(&self, slice: &EndpointSlice) {
        let key = key_of(slice);
        let ns = key.0.clone();
        match SliceInfo::from_slice(slice) {
            Some(info) => self.update(Some(&ns), |s| s.slices.insert(key, info.clone()) != Some(info)),
            None => self.update(Some(&ns), |s| s.slices.remove(&key).is_some()),
        }
    }

    pub fn delete_endpoint_slice(&self, key: &Key) {
        self.update(Some(&key.0), |s| s.slices.remove(key).is_some());
    }

    pub fn apply_split(&self, split: &TrafficSplit) {
        let key = key_of(split);
        let info = SplitInfo::from_split(split);
        self.update(Some(&key.0.clone()), |s| s.splits.insert(key, info.clone()) != Some(info));
    }

    pub fn delete_split(&self, key: &Key) {
        self.update(Some(&key.0), |s| s.splits.remove(key).is_some());
    }

    pub fn apply_route_group(&self, group: &HTTPRouteGroup) {
        let key = key_of(group);
        let matches = route_group_matches(group);
        self.update(Some(&key.0.clone()), |s| s.route_groups.insert(key, matches.clone()) != Some(matches));
    }

    pub fn delete_route_group(&self, key: &Key) {
        self.update(Some(&key.0), |s| s.route_groups.remove(key).is_some());
    }

    pub fn apply_gateway_route(&self, key: RouteKey, info: RouteInfo) {
        self.update(Some(&key.0.clone()), |s| s.gateway_routes.insert(key, info.clone()) != Some(info));
    }

    pub fn delete_gateway_route(&self, key: &RouteKey) {
        self.update(Some(&key.0), |s| s.gateway_routes.remove(key).is_some());
    }

    /// Forgets every object of `kind` not in `keep` (after a watch re-list).
    pub fn retain(&self, kind: Kind, keep: &[Key]) {
        self.update(None, |s| {
            let count = |s: &ClusterState| {
                (s.services.len(), s.slices.len(), s.splits.len(), s.route_groups.len(), s.gateway_routes.len())
            };
            let before = count(s);
            let route_kind = |kind: RouteKind| {
                move |(ns, k, name): &RouteKey, _: &mut RouteInfo| {
                    *k != kind || keep.contains(&(ns.clone(), name.clone()))
                }
            };
            match kind {
                Kind::Service => s.retain_services(|k| keep.contains(k)),
                Kind::EndpointSlice => s.slices.retain(|k, _| keep.contains(k)),
                Kind::TrafficSplit => s.splits.retain(|k, _| keep.contains(k)),
                Kind::HTTPRouteGroup => s.route_groups.retain(|k, _| keep.contains(k)),
                Kind::HTTPRoute => s.gateway_routes.retain(route_kind(RouteKind::Http)),
                Kind::GRPCRoute => s.gateway_routes.retain(route_kind(RouteKind::Grpc)),
            }
            before != count(s)
        });
    }

    /// Every Gateway API route the index knows.
    pub fn route_keys(&self) -> Vec<RouteKey> {
        self.lock().state.gateway_routes.keys().cloned().collect()
    }

    /// The route at `key` as last read, with what its status should say per Service parent.
    pub fn gateway_route(&self, key: &RouteKey) -> Option<(RouteInfo, Vec<ParentReport>)> {
        let inner = self.lock();
        let info = inner.state.gateway_routes.get(key)?.clone();
        Some((info, gateway::reports(&inner.state, key)))
    }

    /// What to report in the status of the split at `key`, if it exists.
    pub fn report(&self, key: &Key) -> Option<SplitReport> {
        resolve::report(&self.lock().state, key)
    }

    /// Every split the index knows.
    pub fn split_keys(&self) -> Vec<Key> {
        self.lock().state.splits.keys().cloned().collect()
    }

    /// The current snapshot for an authority.
    pub fn current(&self, authority: &Authority) -> pb::Snapshot {
        self.watch(authority).borrow().snapshot.clone()
    }

    /// The split at `key` as last read, with its report.
    pub fn split(&self, key: &Key) -> Option<(SplitInfo, SplitReport)> {
        let inner = self.lock();
        let info = inner.state.splits.get(key)?.clone();
        Some((info, resolve::report(&inner.state, key)?))
    }

    /// The digest of the routing an authority would get now, without subscribing to it.
    pub fn digest_for(&self, authority: &Authority) -> String {
        with_digest(resolve::snapshot(&self.lock().state, authority, &authority.namespace)).digest
    }

    /// Ticks on every change to the state; the status writer waits on it.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// How many authorities hold a channel, subscribed or not.
    pub fn channels(&self) -> usize {
        self.lock().published.len()
    }

    /// Authorities with at least one subscriber and the version each was last sent at.
    pub fn published_versions(&self) -> Vec<(Authority, u64)> {
        self.lock()
            .published
            .iter()
            .filter(|(_, p)| p.tx.receiver_count() > 0)
            .map(|((a, _), p)| (a.clone(), p.tx.borrow().snapshot.version))
            .collect()
    }
}

impl DestinationIndex for Index {
    fn authority_at(&self, addr: SocketAddr) -> Option<Authority> {
        self.lock().state.authority_at(addr)
    }

    fn watch_from(&self, authority: &Authority, client_namespace: &str) -> watch::Receiver<Arc<Published>> {
        let client = if client_namespace.is_empty() { &authority.namespace } else { client_namespace };
        let key = (authority.clone(), client.to_string());
        let mut inner = self.lock();
        if let Some(p) = inner.published.get(&key) {
            return p.tx.subscribe();
        }
        if inner.published.len() >= inner.sweep_at {
            inner.published.retain(|_, p| p.tx.receiver_count() > 0);
            inner.sweep_at = SWEEP_AT.max(2 * inner.published.len());
        }
        let content = with_digest(resolve::snapshot(&inner.state, authority, client));
        inner.next_version += 1;
        let first = pb::Snapshot { version: inner.next_version, ..content.clone() };
        let (tx, rx) = watch::channel(Arc::new(Published { snapshot: first, at: Instant::now() }));
        inner.published.insert(key, Channel { tx, content });
        rx
    }
}

/// Stamps the content digest: FNV-1a over the protobuf encoding with version 0, so every replica
/// computes the same digest for the same routing.
fn with_digest(mut snapshot: pb::Snapshot) -> pb::Snapshot {
    use prost::Message;
    snapshot.version = 0;
    snapshot.digest.clear();
    let hash = snapshot
        .encode_to_vec()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    snapshot.digest = format!("{hash:016x}");
    snapshot
}

impl Inner {
    /// Recomputes every watched authority in `namespace` (all namespaces when None) and sends a new
    /// snapshot where the content changed. Authorities nobody watches any more are dropped.
    fn republish(&mut self, namespace: Option<&str>) {
        self.published.retain(|_, p| p.tx.receiver_count() > 0);
        let Inner { state, published, next_version, .. } = self;
        for ((authority, client), p) in published.iter_mut() {
            // A namespace's objects route its Services, and its consumer routes its clients.
            if namespace.is_some_and(|ns| ns != authority.namespace && ns != client) {
                continue;
            }
            let content = with_digest(resolve::snapshot(state, authority, client));
            if content == p.content {
                continue;
            }
            *next_version += 1;
            let snapshot = pb::Snapshot { version: *next_version, ..content.clone() };
            p.tx.send_replace(Arc::new(Published { snapshot, at: Instant::now() }));
            p.content = content;
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gateway;
