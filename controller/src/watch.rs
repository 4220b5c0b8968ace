//! Feeds the index from the Kubernetes API with kube-runtime watchers: TrafficSplit,
//! HTTPRouteGroup, Service and EndpointSlice (those naming a Service).

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use shifter_crds::TrafficSplit;
use shifter_crds::route_group::HTTPRouteGroup;
use tokio::sync::watch;
use tracing::{Instrument, info, warn};

use crate::index::state::{Key, SERVICE_NAME_LABEL, key_of};
use crate::index::{Index, Kind};

/// Tells when every watcher has completed its first list.
#[derive(Clone)]
pub struct Synced(watch::Receiver<usize>);

impl Synced {
    /// True once all four kinds were listed.
    pub fn is_synced(&self) -> bool {
        *self.0.borrow() >= 4
    }

    /// Waits until all kinds were listed.
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|n| *n >= 4).await;
    }
}

/// Starts one watcher task per kind; they run until the process ends, retrying with backoff.
pub fn spawn_watchers(client: Client, index: Arc<Index>) -> Synced {
    let (tx, rx) = watch::channel(0usize);
    let tx = Arc::new(tx);
    spawn_kind::<Service>(Api::all(client.clone()), watcher::Config::default(), index.clone(), tx.clone());
    spawn_kind::<EndpointSlice>(
        Api::all(client.clone()),
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
        index.clone(),
        tx.clone(),
    );
    spawn_kind::<TrafficSplit>(Api::all(client.clone()), watcher::Config::default(), index.clone(), tx.clone());
    spawn_kind::<HTTPRouteGroup>(Api::all(client), watcher::Config::default(), index, tx);
    Synced(rx)
}

fn spawn_kind<K>(api: Api<K>, config: watcher::Config, index: Arc<Index>, synced: Arc<watch::Sender<usize>>)
where
    K: Indexed,
    K::DynamicType: Default,
{
    let kind = K::KIND;
    let span = tracing::info_span!("watch", kind = ?kind);
    tokio::spawn(
        async move {
            let mut stream = watcher::watcher(api, config).default_backoff().boxed();
            let mut listing: Option<Vec<Key>> = None;
            let mut first_list = true;
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
                        if std::mem::take(&mut first_list) {
                            synced.send_modify(|n| *n += 1);
                        }
                    }
                    Err(error) => warn!(%error, "watch failed; retrying with backoff"),
                }
            }
        }
        .instrument(span),
    );
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
    }
}
