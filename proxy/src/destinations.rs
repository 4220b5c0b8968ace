//! Every authority the proxy routes, each holding its current routing table in a watch channel:
//! a new snapshot replaces the table in one step, and requests already in flight keep the table
//! they started with (they hold an `Arc` to it), so nothing in flight is dropped by a swap or by
//! the destination itself being dropped.
//!
//! Gateway and static destinations are pinned. Those the outbound listener learns from requests
//! are kept bounded by the rules in [`crate::authorities`]: idle ones expire, a full table makes
//! room by dropping the least useful one, and authorities the controller says do not exist are
//! remembered without a watch.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::{Value, json};
use shifter_proto::v1::{AppliedSnapshot, Snapshot};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{Instrument, debug, info_span};

use crate::authorities::{Eviction, NegativeCache, Usage, victim};
use crate::config::watch::{Controller, watch_authority};
use crate::config::{Settings, authority_aliases, is_valid_authority, normalize_authority};
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
    /// A gateway or static destination: never dropped.
    pinned: bool,
    /// When a request last used it, on [`Destinations`]' clock.
    last_used: AtomicU64,
    /// Set once the destination left the table: requests waiting for its first snapshot stop.
    dropped: AtomicBool,
    /// Whether any snapshot said the authority exists.
    ever_existed: AtomicBool,
    /// Its controller watch, stopped when it leaves the table.
    watch: Mutex<Option<AbortHandle>>,
}

impl Destination {
    fn new(authority: String, pinned: bool, now: u64) -> Self {
        Self {
            authority,
            table: watch::Sender::new(None),
            streaming: AtomicBool::new(false),
            applied_at_ms: AtomicI64::new(0),
            pinned,
            last_used: AtomicU64::new(now),
            dropped: AtomicBool::new(false),
            ever_existed: AtomicBool::new(false),
            watch: Mutex::default(),
        }
    }

    pub fn current(&self) -> Option<Arc<RouteTable>> {
        self.table.borrow().clone()
    }

    fn usage(&self) -> Usage {
        Usage { pinned: self.pinned, resolved: self.table.borrow().is_some(), last_used: self.last_used.load(Relaxed) }
    }

    /// Stops the watch and wakes requests waiting for a first snapshot.
    fn drop_from_table(&self) {
        self.dropped.store(true, Relaxed);
        if let Some(watch) = self.watch.lock().expect("watch lock").take() {
            watch.abort();
        }
        self.table.send_modify(|_| {});
    }
}

/// Why a request could not be given a routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unrouted {
    UnknownAuthority,
    InvalidAuthority,
    ServiceNotFound,
    TooManyAuthorities,
    NoSnapshot,
}

impl Unrouted {
    pub fn reason(self) -> &'static str {
        match self {
            Self::UnknownAuthority => "unknown authority",
            Self::InvalidAuthority => "invalid authority",
            Self::ServiceNotFound => "service not found",
            Self::TooManyAuthorities => "too many authorities",
            Self::NoSnapshot => "no configuration yet",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidAuthority => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

struct Table {
    map: HashMap<String, Arc<Destination>>,
    /// Entries of `map` that are not pinned (only pinned destinations have aliases).
    watched: usize,
    unknown: NegativeCache,
}

pub(crate) struct Destinations {
    table: RwLock<Table>,
    compiler: Compiler,
    controller: Option<Controller>,
    /// The origin of the clock (in microseconds) the eviction rules run on.
    epoch: Instant,
}

impl Destinations {
    pub fn new(compiler: Compiler, controller: Option<Controller>) -> Self {
        let s = &compiler.settings;
        let unknown = NegativeCache::new(micros(s.unknown_authority_ttl), s.max_unknown_authorities);
        let table = RwLock::new(Table { map: HashMap::new(), watched: 0, unknown });
        Self { table, compiler, controller, epoch: Instant::now() }
    }

    pub fn settings(&self) -> &Settings {
        &self.compiler.settings
    }

    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    fn now(&self) -> u64 {
        micros(self.epoch.elapsed())
    }

    /// Compiles `snapshot` and makes it `dest`'s table; on error the previous table stays.
    pub fn apply(&self, dest: &Destination, snapshot: Snapshot) -> Result<(), RouteError> {
        let table = RouteTable::compile(snapshot, &self.compiler)?;
        if table.exists() {
            dest.ever_existed.store(true, Relaxed);
        }
        dest.table.send_replace(Some(Arc::new(table)));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        dest.applied_at_ms.store(i64::try_from(now).unwrap_or(i64::MAX), Relaxed);
        Ok(())
    }

    /// Applies a snapshot by its own authority (and that authority's short aliases), creating a
    /// pinned destination when it is new. This is how static configuration and in-process callers
    /// program the proxy.
    pub fn apply_by_authority(&self, snapshot: Snapshot) -> Result<(), RouteError> {
        let aliases = authority_aliases(&snapshot.authority);
        let dest = {
            let mut table = self.table.write().expect("destinations lock");
            let existing = aliases.iter().find_map(|a| table.map.get(a).cloned());
            let now = self.now();
            let dest = existing.unwrap_or_else(|| Arc::new(Destination::new(aliases[0].clone(), true, now)));
            for alias in &aliases {
                table.map.entry(alias.clone()).or_insert_with(|| dest.clone());
            }
            dest
        };
        self.apply(&dest, snapshot)
    }

    /// The routing table for what a client dialled. With a controller, a new authority starts a
    /// watch and the request waits (bounded) for its first snapshot.
    pub async fn resolve(self: &Arc<Self>, authority: &str) -> Result<Arc<RouteTable>, Unrouted> {
        let key = normalize_authority(authority);
        let now = self.now();
        let found = {
            let table = self.table.read().expect("destinations lock");
            match table.map.get(&key) {
                Some(dest) => Some(dest.clone()),
                None if table.unknown.contains(&key, now) => return Err(Unrouted::ServiceNotFound),
                None => None,
            }
        };
        let dest = match found {
            Some(dest) => dest,
            None if !is_valid_authority(&key) => return Err(Unrouted::InvalidAuthority),
            None => self.watch(&key)?,
        };
        dest.last_used.store(now, Relaxed);
        self.table_of(&dest).await
    }

    /// The destination registered for `authority`, if any.
    pub fn lookup(&self, authority: &str) -> Option<Arc<Destination>> {
        self.table.read().expect("destinations lock").map.get(&normalize_authority(authority)).cloned()
    }

    /// The `authority` label to count an unrouted request under. What a client dialled is its own
    /// text, so it is a label only for the gateway and static authorities the proxy is configured
    /// with; anything else counts as "unknown" (the metrics would otherwise grow with every name a
    /// client makes up).
    pub fn unrouted_label(&self, authority: &str) -> String {
        let key = normalize_authority(authority);
        let pinned = self.table.read().expect("destinations lock").map.get(&key).is_some_and(|d| d.pinned);
        if pinned { key } else { "unknown".into() }
    }

    /// `dest`'s table, waiting (bounded) for its first snapshot.
    pub async fn table_of(&self, dest: &Destination) -> Result<Arc<RouteTable>, Unrouted> {
        if let Some(table) = dest.current() {
            return Ok(table);
        }
        let mut rx = dest.table.subscribe();
        let wait = rx.wait_for(|t| t.is_some() || dest.dropped.load(Relaxed));
        match tokio::time::timeout(self.compiler.settings.first_snapshot_timeout, wait).await {
            Ok(Ok(table)) => table.clone().ok_or(Unrouted::TooManyAuthorities),
            _ => Err(Unrouted::NoSnapshot),
        }
    }

    /// Starts watching `key` (already normalised) for the outbound listener, making room in a
    /// full table; only with a controller.
    pub fn watch(self: &Arc<Self>, key: &str) -> Result<Arc<Destination>, Unrouted> {
        self.start_watch(key, false)
    }

    /// Starts watching a gateway's authority: pinned, never dropped.
    pub fn watch_pinned(self: &Arc<Self>, key: &str) -> Result<Arc<Destination>, Unrouted> {
        self.start_watch(key, true)
    }

    fn start_watch(self: &Arc<Self>, key: &str, pinned: bool) -> Result<Arc<Destination>, Unrouted> {
        let controller = self.controller.clone().ok_or(Unrouted::UnknownAuthority)?;
        let now = self.now();
        let mut table = self.table.write().expect("destinations lock");
        if let Some(dest) = table.map.get(key) {
            return Ok(dest.clone());
        }
        if !pinned {
            if table.unknown.contains(key, now) {
                return Err(Unrouted::ServiceNotFound);
            }
            if table.watched >= self.settings().max_authorities {
                let idle = micros(self.settings().authority_idle_timeout);
                let entries = table.map.iter().map(|(k, d)| (k, d.usage()));
                let Some(out) = victim(entries, now, idle).cloned() else { return Err(Unrouted::TooManyAuthorities) };
                self.remove(&mut table, &out, Eviction::Capacity);
            }
            table.watched += 1;
        }
        let dest = Arc::new(Destination::new(key.to_string(), pinned, now));
        table.map.insert(key.to_string(), dest.clone());
        self.publish_sizes(&table);
        drop(table);
        let span = info_span!("watch", authority = %key);
        let task = tokio::spawn(watch_authority(Arc::clone(self), dest.clone(), controller).instrument(span));
        *dest.watch.lock().expect("watch lock") = Some(task.abort_handle());
        // Dropped from the table before its watch was recorded: stop the watch now.
        if dest.dropped.load(Relaxed) {
            task.abort();
        }
        Ok(dest)
    }

    /// Takes `key` out of the table (under its lock) and stops its watch.
    fn remove(&self, table: &mut Table, key: &str, why: Eviction) {
        if let Some(dest) = table.map.remove(key) {
            if !dest.pinned {
                table.watched -= 1;
            }
            dest.drop_from_table();
            self.compiler.metrics.record_authority_eviction(why);
            debug!(authority = %key, ?why, "dropped an outbound authority");
        }
    }

    /// Called by `dest`'s watch after a snapshot or a refusal: when the controller says an
    /// outbound authority does not exist (and never said it did), the destination leaves the
    /// table, the authority is remembered as unknown and the watch should end (returns true).
    /// Requests already waiting got the "does not exist" table.
    pub fn settle_unknown(&self, dest: &Destination) -> bool {
        if dest.pinned || dest.ever_existed.load(Relaxed) || dest.current().is_none_or(|t| t.exists()) {
            return false;
        }
        let mut table = self.table.write().expect("destinations lock");
        if table.map.get(&dest.authority).is_some_and(|d| std::ptr::eq(Arc::as_ptr(d), dest)) {
            table.map.remove(&dest.authority);
            table.watched -= 1;
        }
        dest.dropped.store(true, Relaxed);
        let now = self.now();
        table.unknown.insert(&dest.authority, now);
        self.publish_sizes(&table);
        true
    }

    /// Called by `dest`'s watch when the controller refuses the authority outright (it cannot
    /// name a Service): for an outbound authority, the same as a snapshot saying it does not
    /// exist, so waiting requests get `service not found` at once and the watch ends (returns
    /// true). A pinned authority keeps being asked for.
    pub fn settle_refused(&self, dest: &Destination) -> bool {
        if dest.pinned || dest.ever_existed.load(Relaxed) {
            return false;
        }
        let missing = Snapshot { authority: dest.authority.clone(), exists: false, ..Default::default() };
        self.apply(dest, missing).is_ok() && self.settle_unknown(dest)
    }

    /// Drops destinations unused for `authority_idle_timeout` and forgets expired unknown
    /// authorities.
    pub fn expire_idle(&self) {
        let now = self.now();
        let idle = micros(self.settings().authority_idle_timeout);
        let stale = |table: &Table| -> Vec<String> {
            table.map.iter().filter(|(_, d)| d.usage().is_idle(now, idle)).map(|(k, _)| k.clone()).collect()
        };
        {
            let table = self.table.read().expect("destinations lock");
            if stale(&table).is_empty() && !table.unknown.has_expired(now) {
                return;
            }
        }
        let mut table = self.table.write().expect("destinations lock");
        for key in stale(&table) {
            self.remove(&mut table, &key, Eviction::Idle);
        }
        table.unknown.expire(now);
        self.publish_sizes(&table);
    }

    /// Runs [`Destinations::expire_idle`] a few times per idle timeout until the proxy stops.
    pub fn spawn_expiry(self: &Arc<Self>) -> JoinHandle<()> {
        let period =
            (self.settings().authority_idle_timeout / 4).clamp(Duration::from_micros(10), Duration::from_secs(5));
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(dests) = weak.upgrade() else { return };
                    dests.expire_idle();
                }
            }
            .instrument(info_span!("authority_expiry")),
        )
    }

    fn publish_sizes(&self, table: &Table) {
        self.compiler.metrics.set_authority_counts(table.watched, table.unknown.len());
    }

    /// True when every listed authority has a table.
    pub fn all_have_tables<'a>(&self, authorities: impl IntoIterator<Item = &'a String>) -> bool {
        let table = self.table.read().expect("destinations lock");
        authorities.into_iter().all(|a| table.map.get(&normalize_authority(a)).is_some_and(|d| d.current().is_some()))
    }

    /// Current snapshots and versions as JSON, for the admin config dump.
    pub fn dump(&self) -> Value {
        let table = self.table.read().expect("destinations lock");
        let mut by_dest: BTreeMap<String, (Vec<String>, Arc<Destination>)> = BTreeMap::new();
        for (key, dest) in table.map.iter() {
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
                    "pinned": dest.pinned,
                    "controller_stream": stream,
                    "applied_at_unix_ms": dest.applied_at_ms.load(Relaxed),
                    "snapshot": dest.current().map(|t| snapshot_json(&t.snapshot)),
                })
            })
            .collect();
        json!({
            "source": if self.controller.is_some() { "controller" } else { "static" },
            "authorities": authorities,
            "outbound": {
                "watched": table.watched,
                "max_authorities": self.settings().max_authorities,
                "unknown": table.unknown.len(),
                "max_unknown": self.settings().max_unknown_authorities,
            },
        })
    }

    /// Which snapshot each destination runs now, for the controller's in-sync accounting.
    pub fn applied(&self) -> Vec<AppliedSnapshot> {
        let table = self.table.read().expect("destinations lock");
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<AppliedSnapshot> = table
            .map
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

    /// Stops every watch.
    pub fn stop(&self) {
        for dest in self.table.read().expect("destinations lock").map.values() {
            if let Some(watch) = dest.watch.lock().expect("watch lock").take() {
                watch.abort();
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
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
