//! Watches Canaries and keeps one [`worker`] per Canary: a new Canary gets a task, a changed one
//! is handed to its task, a deleted one has its task stopped. Workers run side by side, so a slow
//! webhook, a slow Prometheus or a failing object of one team never holds up another team's
//! rollout.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_fn};
use kube::{Client, ResourceExt};
use shifter_crds::canary::Canary;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, info_span, warn};

use super::reconcile::CanaryContext;
use super::worker;
use crate::events::EventRecorder;
use crate::lease::Election;
use crate::metrics::ControllerMetrics;
use crate::supervise::Supervisor;
use crate::telemetry::TelemetryStore;

type Key = (String, String);

/// The leader-only Canary automation.
#[derive(Clone)]
pub struct CanaryController {
    pub client: Client,
    pub telemetry: Arc<TelemetryStore>,
    pub metrics: Arc<ControllerMetrics>,
    pub election: Election,
    pub identity: String,
}

/// A running worker; dropping it stops the task.
struct Worker {
    canary: watch::Sender<Arc<Canary>>,
    task: JoinHandle<()>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CanaryController {
    /// Runs the dispatcher under `supervisor` (task `canaries`).
    pub fn spawn(self, supervisor: &Supervisor) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().user_agent("shifter-canary").build()?;
        let ctx = Arc::new(CanaryContext {
            client: self.client.clone(),
            telemetry: self.telemetry.clone(),
            metrics: self.metrics.clone(),
            fence: self.election.fence.clone(),
            recorder: EventRecorder::new(self.client.clone(), "shifter-controller", self.identity.clone()),
            http,
        });
        supervisor.spawn("canaries", info_span!("canaries"), move || self.clone().dispatch(ctx.clone()));
        Ok(())
    }

    async fn dispatch(self, ctx: Arc<CanaryContext>) -> anyhow::Result<()> {
        let api: Api<Canary> = Api::all(self.client.clone());
        let mut events = watch_fn(api, watcher::Config::default()).default_backoff().boxed();
        let mut workers: HashMap<Key, Worker> = HashMap::new();
        let mut listing: Option<Vec<Key>> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Apply(canary)) => self.upsert(&ctx, &mut workers, canary),
                Ok(Event::InitApply(canary)) => {
                    if let Some(keys) = listing.as_mut() {
                        keys.push(key_of(&canary));
                    }
                    self.upsert(&ctx, &mut workers, canary);
                }
                Ok(Event::Delete(canary)) => {
                    workers.remove(&key_of(&canary));
                    self.forget_gone(&workers);
                }
                Ok(Event::Init) => listing = Some(Vec::new()),
                Ok(Event::InitDone) => {
                    if let Some(keys) = listing.take() {
                        workers.retain(|k, _| keys.contains(k));
                        self.forget_gone(&workers);
                    }
                }
                Err(error) => warn!(%error, "Canary watch failed; retrying with backoff"),
            }
        }
        anyhow::bail!("the Canary watch ended")
    }

    /// Hands `canary` to its worker, starting one when it has none (or its task ended).
    fn upsert(&self, ctx: &Arc<CanaryContext>, workers: &mut HashMap<Key, Worker>, canary: Canary) {
        let key = key_of(&canary);
        let canary = Arc::new(canary);
        if let Some(worker) = workers.get(&key)
            && !worker.task.is_finished()
        {
            worker.canary.send_replace(canary);
            return;
        }
        let (tx, rx) = watch::channel(canary);
        let span = info_span!("canary", namespace = %key.0, name = %key.1);
        let task = tokio::spawn(worker::run(ctx.clone(), rx, self.election.leadership.clone()).instrument(span));
        workers.insert(key, Worker { canary: tx, task });
    }

    fn forget_gone(&self, workers: &HashMap<Key, Worker>) {
        let live: Vec<Key> = workers.keys().cloned().collect();
        self.metrics.retain_canaries(&live);
    }
}

fn key_of(canary: &Canary) -> Key {
    (canary.namespace().unwrap_or_default(), canary.name_any())
}
