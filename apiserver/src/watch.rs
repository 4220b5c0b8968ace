//! Watch streams: newline-delimited `{"type": …, "object": …}` events from a resourceVersion (or
//! from the current state), filtered by namespace and selectors, with periodic BOOKMARKs, an
//! ERROR event carrying 410 Expired when the requested history is gone, and a timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tracing::Instrument;

use crate::app::App;
use crate::error::ApiError;
use crate::resources::{Conversion, ResourceInfo};
use crate::selectors::Selector;
use crate::store::{Event, EventType};
use crate::table::{self, Include};

/// What one watch asks for.
pub struct WatchRequest {
    pub res: Arc<ResourceInfo>,
    pub version: String,
    pub namespace: Option<String>,
    pub selector: Selector,
    /// `None`: start with the current objects as ADDED events.
    pub from: Option<u64>,
    pub bookmarks: bool,
    /// With `sendInitialEvents=true`, a bookmark marks the end of the initial ADDED events.
    pub initial_events_end: bool,
    pub timeout: Duration,
    /// Send each object as a one-row Table (what `kubectl get -w` asks for).
    pub table: Option<Include>,
    pub bookmark_every: Duration,
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Starts the watch; the returned receiver yields the encoded lines until the watch ends.
pub fn start(app: Arc<App>, req: WatchRequest) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(256);
    let span = tracing::debug_span!("watch", resource = %req.res.qualified(), namespace = ?req.namespace);
    tokio::spawn(
        async move {
            if let Err(error) = run(app, req, &tx).await {
                let _ = tx.send(line("ERROR", error.to_status())).await;
            }
        }
        .instrument(span),
    );
    rx
}

struct Watcher<'a> {
    req: &'a WatchRequest,
    tx: &'a mpsc::Sender<Bytes>,
    last_rv: u64,
}

impl Watcher<'_> {
    fn relevant(&self, e: &Event) -> bool {
        e.key.resource == self.req.res.store_key()
            && self.req.namespace.as_ref().is_none_or(|ns| &e.key.namespace == ns)
    }

    fn encode(&self, object: &Value) -> Result<Value, ApiError> {
        let obj = self.req.res.from_storage(object.clone(), &self.req.version)?;
        Ok(match self.req.table {
            Some(include) => {
                let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
                table::table(&self.req.res, &self.req.version, &[obj], include, json!({"resourceVersion": rv}))
            }
            None => obj,
        })
    }

    /// Sends one event; returns false once the client has gone.
    async fn send(&mut self, e: &Event) -> Result<bool, ApiError> {
        if !self.relevant(e) {
            return Ok(true);
        }
        self.last_rv = self.last_rv.max(e.rv);
        let selector = &self.req.selector;
        let kind = if selector.is_empty() {
            e.kind
        } else {
            let now = selector.matches(&e.object);
            let before = e.prev.as_ref().is_some_and(|p| selector.matches(p));
            match (e.kind, before, now) {
                (EventType::Deleted, b, n) if b || n => EventType::Deleted,
                (EventType::Added, _, true) => EventType::Added,
                (EventType::Modified, true, true) => EventType::Modified,
                (EventType::Modified, false, true) => EventType::Added,
                // No longer selected: to this watcher it is gone.
                (EventType::Modified, true, false) => EventType::Deleted,
                _ => return Ok(true),
            }
        };
        let same_version = self.req.res.conversion != Conversion::EventsV1
            && e.object.get("apiVersion").and_then(Value::as_str)
                == Some(self.req.res.api_version(&self.req.version).as_str());
        let line = if same_version && self.req.table.is_none() {
            // The common case: every watcher shares one serialisation of the object.
            Bytes::from(format!("{{\"type\":\"{}\",\"object\":{}}}\n", kind.as_str(), e.encoded()))
        } else {
            line(kind.as_str(), self.encode(&e.object)?)
        };
        Ok(self.tx.send(line).await.is_ok())
    }

    async fn bookmark(&self, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": self.last_rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.req.res.kind, "apiVersion": self.req.res.api_version(&self.req.version), "metadata": meta});
        self.tx.send(line("BOOKMARK", obj)).await.is_ok()
    }
}

async fn run(app: Arc<App>, req: WatchRequest, tx: &mpsc::Sender<Bytes>) -> Result<(), ApiError> {
    let (backlog, mut rx, current) = app.store.subscribe(&req.res.store_key(), req.from)?;
    drop(app);
    let mut w = Watcher { req: &req, tx, last_rv: req.from.unwrap_or(current) };
    for e in &backlog {
        if !w.send(e).await? {
            return Ok(());
        }
    }
    w.last_rv = w.last_rv.max(current);
    if req.initial_events_end && !w.bookmark(true).await {
        return Ok(());
    }
    let deadline = tokio::time::sleep(req.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(req.bookmark_every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => return Ok(()),
            _ = tx.closed() => return Ok(()),
            _ = ticker.tick(), if req.bookmarks => {
                if !w.bookmark(false).await {
                    return Ok(());
                }
            }
            got = rx.recv() => match got {
                Ok(e) => {
                    if !w.send(&e).await? {
                        return Ok(());
                    }
                }
                // Fell too far behind: end the watch; the client resumes from its last version.
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}
