//! Every authority the proxy routes, each holding its current routing table in a watch channel:
//! a new snapshot replaces the table in one step, and requests already in flight keep the table
//! they started with (they hold an `Arc` to it), so nothing in flight is dropped by a swap.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use shifter_proto::v1::{AppliedSnapshot, Snapshot};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, info_span};

use crate::config::watch::{Controller, watch_authority};
use crate::config::{Settings, authority_aliases, normalize_authority};
use crate::error::RouteError;
use crate::route::{Compiler, RouteTable};

pub(crate) struct Destination {
    /// What clients dial, normalised (the key the proxy watches).
    pub authority: String,
    table: watch::Sender<Option<Arc<RouteTable>>>,
    /// Whether the controller stream for this authority is up (always false for static ones).
    pub streaming: AtomicBool,
    /// When the current table was applied, milliseconds since the Unix epoch.
    applied_at_ms: AtomicI64,
}

impl Destination {
    fn new(authority: String) -> Self {
        Self {
            authority,
            table: watch::Sender::new(None),
            streaming: AtomicBool::new(false),
            applied_at_ms: AtomicI64::new(0),
        }
    }

    pub fn current(&self) -> Option<Arc<RouteTable>> {
        self.table.borrow().clone()
    }
}

/// Why a request could not be given a routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unrouted {
    UnknownAuthority,
    TooManyAuthorities,
    NoSnapshot,
}

impl Unrouted {
    /// The `authority` label to count this under: an authority the proxy does not track is
    /// client-controlled text, so it is never used as a label (that would let clients grow the
    /// metrics without bound).
    pub fn label(self, authority: &str) -> String {
        match self {
            Self::UnknownAuthority | Self::TooManyAuthorities => "unknown".into(),
            // A tracked destination (bounded by `max_authorities`), in its canonical form.
            Self::NoSnapshot => normalize_authority(authority),
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::UnknownAuthority => "unknown authority",
            Self::TooManyAuthorities => "too many authorities",
            Self::NoSnapshot => "no configuration yet",
        }
    }
}

pub(crate) struct Destinations {
    map: RwLock<HashMap<String, Arc<Destination>>>,
    compiler: Compiler,
    controller: Option<Controller>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Destinations {
    pub fn new(compiler: Compiler, controller: Option<Controller>) -> Self {
        Self { map: RwLock::default(), compiler, controller, tasks: Mutex::default() }
    }

    pub fn settings(&self) -> &Settings {
        &self.compiler.settings
    }

    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    /// Compiles `snapshot` and makes it `dest`'s table; on error the previous table stays.
    pub fn apply(&self, dest: &Destination, snapshot: Snapshot) -> Result<(), RouteError> {
        let table = RouteTable::compile(snapshot, &self.compiler)?;
        dest.table.send_replace(Some(Arc::new(table)));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        dest.applied_at_ms.store(i64::try_from(now).unwrap_or(i64::MAX), Relaxed);
        Ok(())
    }

    /// Applies a snapshot by its own authority (and that authority's short aliases), creating the
    /// destination when it is new. This is how static configuration and in-process callers
    /// program the proxy.
    pub fn apply_by_authority(&self, snapshot: Snapshot) -> Result<(), RouteError> {
        let aliases = authority_aliases(&snapshot.authority);
        let dest = {
            let mut map = self.map.write().expect("destinations lock");
            let existing = aliases.iter().find_map(|a| map.get(a).cloned());
            let dest = existing.unwrap_or_else(|| Arc::new(Destination::new(aliases[0].clone())));
            for alias in &aliases {
                map.entry(alias.clone()).or_insert_with(|| dest.clone());
            }
            dest
        };
        self.apply(&dest, snapshot)
    }

    /// The routing table for what a client dialled. With a controller, a new authority starts a
    /// watch and the request waits (bounded) for its first snapshot.
    pub async fn resolve(self: &Arc<Self>, authority: &str) -> Result<Arc<RouteTable>, Unrouted> {
        let key = normalize_authority(authority);
        let found = self.map.read().expect("destinations lock").get(&key).cloned();
        let dest = match found {
            Some(dest) => dest,
            None => self.watch(&key)?,
        };
        self.table_of(&dest).await
    }

    /// The destination registered for `authority`, if any.
    pub fn lookup(&self, authority: &str) -> Option<Arc<Destination>> {
        self.map.read().expect("destinations lock").get(&normalize_authority(authority)).cloned()
    }

    /// `dest`'s table, waiting (bounded) for its first snapshot.
    pub async fn table_of(&self, dest: &Destination) -> Result<Arc<RouteTable>, Unrouted> {
        if let Some(table) = dest.current() {
            return Ok(table);
        }
        let mut rx = dest.table.subscribe();
        let wait = rx.wait_for(Option::is_some);
        match tokio::time::timeout(self.compiler.settings.first_snapshot_timeout, wait).await {
            Ok(Ok(table)) => Ok(table.clone().ok_or(Unrouted::NoSnapshot)?),
            _ => Err(Unrouted::NoSnapshot),
        }
    }

    /// Starts watching `key` (already normalised); only with a controller.
    pub fn watch(self: &Arc<Self>, key: &str) -> Result<Arc<Destination>, Unrouted> {
        let controller = self.controller.clone().ok_or(Unrouted::UnknownAuthority)?;
        let mut map = self.map.write().expect("destinations lock");
        if let Some(dest) = map.get(key) {
            return Ok(dest.clone());
        }
        if map.len() >= self.compiler.settings.max_authorities {
            return Err(Unrouted::TooManyAuthorities);
        }
        let dest = Arc::new(Destination::new(key.to_string()));
        map.insert(key.to_string(), dest.clone());
        let span = info_span!("watch", authority = %key);
        let task = tokio::spawn(watch_authority(Arc::clone(self), dest.clone(), controller).instrument(span));
        self.tasks.lock().expect("tasks lock").push(task);
        Ok(dest)
    }

    /// True when every listed authority has a table.
    pub fn all_have_tables<'a>(&self, authorities: impl IntoIterator<Item = &'a String>) -> bool {
        let map = self.map.read().expect("destinations lock");
        authorities.into_iter().all(|a| map.get(&normalize_authority(a)).is_some_and(|d| d.current().is_some()))
    }

    /// Current snapshots and versions as JSON, for the admin config dump.
    pub fn dump(&self) -> Value {
        let map = self.map.read().expect("destinations lock");
        let mut by_dest: BTreeMap<String, (Vec<String>, Arc<Destination>)> = BTreeMap::new();
        for (key, dest) in map.iter() {
            let entry = by_dest.entry(dest.authority.clone()).or_insert_with(|| (Vec::new(), dest.clone()));
            entry.0.push(key.clone());
        }
        let controller = self.controller.is_some();
        let authorities: Vec<Value> = by_dest
            .into_iter()
            .map(|(authority, (mut keys, dest))| {
                keys.sort();
                let stream = match (controller, dest.streaming.load(Relaxed)) {
                    (false, _) => "static",
                    (true, true) => "up",
                    // Serving the last snapshot (fail-static) while reconnecting.
                    (true, false) => "down",
                };
                json!({
                    "authority": authority,
                    "dialled_as": keys,
                    "controller_stream": stream,
                    "applied_at_unix_ms": dest.applied_at_ms.load(Relaxed),
                    "snapshot": dest.current().map(|t| snapshot_json(&t.snapshot)),
                })
            })
            .collect();
        json!({ "source": if self.controller.is_some() { "controller" } else { "static" }, "authorities": authorities })
    }

    /// Which snapshot each destination runs now, for the controller's in-sync accounting.
    pub fn applied(&self) -> Vec<AppliedSnapshot> {
        let map = self.map.read().expect("destinations lock");
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<AppliedSnapshot> = map
            .values()
            .filter(|d| seen.insert(d.authority.clone()))
            .filter_map(|d| d.current())
            .map(|t| AppliedSnapshot {
                authority: t.snapshot.authority.clone(),
                version: t.snapshot.version,
                digest: t.snapshot.digest.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.authority.cmp(&b.authority));
        out
    }

    pub fn stop(&self) {
        for task in self.tasks.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
    }
}

fn snapshot_json(s: &Snapshot) -> Value {
    let routes: Vec<Value> = s
        .routes
        .iter()
        .map(|r| {
            let matches: Vec<Value> = r
                .matches
                .iter()
                .map(|m| {
                    let headers: BTreeMap<_, _> = m.headers.iter().map(|h| (&h.name, &h.value_regex)).collect();
                    json!({ "path_regex": m.path_regex, "methods": m.methods, "headers": headers })
                })
                .collect();
            let backends: Vec<Value> = r
                .backends
                .iter()
                .map(|b| {
                    let endpoints: Vec<String> = b
                        .endpoints
                        .iter()
                        .map(|e| {
                            let port = if e.port != 0 { e.port } else { b.port };
                            if e.address.contains(':') { format!("[{}]:{port}", e.address) } else { format!("{}:{port}", e.address) }
                        })
                        .collect();
                    json!({ "service": b.service, "namespace": b.namespace, "weight": b.weight, "endpoints": endpoints })
                })
                .collect();
            json!({ "name": r.name, "matches": matches, "backends": backends })
        })
        .collect();
    json!({
        "version": s.version,
        "authority": s.authority,
        "namespace": s.namespace,
        "service": s.service,
        "port": s.port,
        "exists": s.exists,
        "split": s.split,
        "digest": s.digest,
        "routes": routes,
    })
}
