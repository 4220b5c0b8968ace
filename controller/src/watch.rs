//! Feeds the index from the Kubernetes API with kube-runtime watchers: TrafficSplit,
//! HTTPRouteGroup, Service and EndpointSlice (those naming a Service).

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use shifter_crds::TrafficSplit;
use shifter_crds::route_group::HTTPRouteGroup;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::index::state::{Key, SERVICE_NAME_LABEL, key_of};
use crate::index::{Index, Kind, RouteKind, gateway, translate};
use crate::supervise::Supervisor;

/// How many kinds are watched: Service, EndpointSlice, TrafficSplit, HTTPRouteGroup, HTTPRoute
/// and GRPCRoute.
const KINDS: usize = 6;

/// Tells when every watcher has completed its first list.
#[derive(Clone)]
pub struct Synced(watch::Receiver<usize>);

impl Synced {
    /// True once every kind was listed (a Gateway API kind the cluster does not serve counts as
    /// listed and empty).
    pub fn is_synced(&self) -> bool {
        *self.0.borrow() >= KINDS
    }

    /// Waits until all kinds were listed.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|n| *n >= KINDS).await;
    }
}

/// Starts one supervised watcher task per kind; they run until the process ends, retrying with
/// backoff (and restarted by the supervisor should one ever stop).
pub fn spawn_watchers(supervisor: &Supervisor, client: Client, index: Arc<Index>) -> Synced {
    let (tx, rx) = watch::channel(0usize);
    let tx = Arc::new(tx);
    let all = watcher::Config::default;
    spawn_kind::<Service>(supervisor, Api::all(client.clone()), all(), index.clone(), tx.clone());
    let with_service = all().labels(SERVICE_NAME_LABEL);
    spawn_kind::<EndpointSlice>(supervisor, Api::all(client.clone()), with_service, index.clone(), tx.clone());
    spawn_kind::<TrafficSplit>(supervisor, Api::all(client.clone()), all(), index.clone(), tx.clone());
    spawn_kind::<HTTPRouteGroup>(supervisor, Api::all(client.clone()), all(), index.clone(), tx.clone());
    spawn_routes(supervisor, client.clone(), RouteKind::Http, index.clone(), tx.clone());
    spawn_routes(supervisor, client, RouteKind::Grpc, index, tx);
    Synced(rx)
}

/// Watches one Gateway API route kind, read as plain objects so that one route shifter cannot
/// parse is reported on that route instead of stopping the watch. On a cluster without the
/// Gateway API CRDs the kind counts as listed and empty, and the watch keeps retrying so routes
/// are picked up once the CRDs are installed.
fn spawn_routes(
    supervisor: &Supervisor,
    client: Client,
    kind: RouteKind,
    index: Arc<Index>,
    synced: Arc<watch::Sender<usize>>,
) {
    let index_kind = match kind {
        RouteKind::Http => Kind::HTTPRoute,
        RouteKind::Grpc => Kind::GRPCRoute,
    };
    let span = tracing::info_span!("watch", kind = kind.kind());
    let listed_once = Arc::new(AtomicBool::new(false));
    supervisor.spawn(&format!("watch-{}", kind.kind()), span, move || {
        let (client, index, synced, listed_once) = (client.clone(), index.clone(), synced.clone(), listed_once.clone());
        async move {
            let mark_listed = || {
                if !listed_once.swap(true, Ordering::SeqCst) {
                    synced.send_modify(|n| *n += 1);
                }
            };
            let api: Api<DynamicObject> = Api::all_with(client, &gateway::api_resource(kind));
            let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
            let mut listing: Option<Vec<Key>> = None;
            let apply = |obj: &DynamicObject| {
                let (ns, name) = key_of(obj);
                index.apply_gateway_route((ns, kind, name), translate::route(kind, obj));
            };
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Apply(obj)) => apply(&obj),
                    Ok(Event::Delete(obj)) => {
                        let (ns, name) = key_of(&obj);
                        index.delete_gateway_route(&(ns, kind, name));
                    }
                    Ok(Event::Init) => listing = Some(Vec::new()),
                    Ok(Event::InitApply(obj)) => {
                        apply(&obj);
                        if let Some(keys) = listing.as_mut() {
                            keys.push(key_of(&obj));
                        }
                    }
                    Ok(Event::InitDone) => {
                        if let Some(keys) = listing.take() {
                            info!(objects = keys.len(), "listed");
                            index.retain(index_kind, &keys);
                        }
                        mark_listed();
                    }
                    Err(watcher::Error::InitialListFailed(kube::Error::Api(status)))
                        if status.code == 404 || status.code == 403 =>
                    {
                        if !listed_once.load(Ordering::SeqCst) {
                            let why = if status.code == 404 { "does not serve" } else { "does not let shifter list" };
                            warn!("the cluster {why} {}; routes of this kind are read once it does", kind.kind());
                        }
                        mark_listed();
                    }
                    Err(error) => warn!(%error, "watch failed; retrying with backoff"),
                }
            }
            anyhow::bail!("the {} watch ended", kind.kind())
        }
    });
}

fn spawn_kind<K>(
    supervisor: &Supervisor,
    api: Api<K>,
    config: watcher::Config,
    index: Arc<Index>,
    synced: Arc<watch::Sender<usize>>,
) where
    K: Indexed,
    K::DynamicType: Default,
{
    let kind = K::KIND;
    let span = tracing::info_span!("watch", kind = ?kind);
    // Counted once per process, however often the task restarts.
    let listed_once = Arc::new(AtomicBool::new(false));
    supervisor.spawn(&format!("watch-{kind:?}"), span, move || {
        let (api, config, index, synced, listed_once) =
            (api.clone(), config.clone(), index.clone(), synced.clone(), listed_once.clone());
        async move {
            let mut stream = watcher::watcher(api, config).default_backoff().boxed();
            let mut listing: Option<Vec<Key>> = None;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Apply(obj)) => obj.apply_to(&index),
                    Ok(Event::Delete(obj)) => delete(&index, kind, &key_of(&obj)),
                    Ok(Event::Init) => listing = Some(Vec::new()),
                    Ok(Event::InitApply(obj)) => {
                        obj.apply_to(&index);
                        if let Some(keys) = listing.as_mut() {
                            keys.push(key_of(&obj));
                        }
                    }
                    Ok(Event::InitDone) => {
                        if let Some(keys) = listing.take() {
                            info!(objects = keys.len(), "listed");
                            index.retain(kind, &keys);
                        }
                        if !listed_once.swap(true, Ordering::SeqCst) {
                            synced.send_modify(|n| *n += 1);
                        }
                    }
                    Err(error) => warn!(%error, "watch failed; retrying with backoff"),
                }
            }
            anyhow::bail!("the {kind:?} watch ended")
        }
    });
}

/// A kind the index is built from.
trait Indexed: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static {
    const KIND: Kind;
    fn apply_to(&self, index: &Index);
}

impl Indexed for Service {
    const KIND: Kind = Kind::Service;
    fn apply_to(&self, index: &Index) {
        index.apply_service(self)
    }
}

impl Indexed for EndpointSlice {
    const KIND: Kind = Kind::EndpointSlice;
    fn apply_to(&self, index: &Index) {
        index.apply_endpoint_slice(self)
    }
}

impl Indexed for TrafficSplit {
    const KIND: Kind = Kind::TrafficSplit;
    fn apply_to(&self, index: &Index) {
        index.apply_split(self)
    }
}

impl Indexed for HTTPRouteGroup {
    const KIND: Kind = Kind::HTTPRouteGroup;
    fn apply_to(&self, index: &Index) {
        index.apply_route_group(self)
    }
}

fn delete(index: &Index, kind: Kind, key: &Key) {
    match kind {
        Kind::Service => index.delete_service(key),
        Kind::EndpointSlice => index.delete_endpoint_slice(key),
        Kind::TrafficSplit => index.delete_split(key),
        Kind::HTTPRouteGroup => index.delete_route_group(key),
        Kind::HTTPRoute => index.delete_gateway_route(&(key.0.clone(), RouteKind::Http, key.1.clone())),
        Kind::GRPCRoute => index.delete_gateway_route(&(key.0.clone(), RouteKind::Grpc, key.1.clone())),
    }
}
