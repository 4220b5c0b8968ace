//! The durable object store: every object at its storage version in an embedded redb database,
//! mirrored in memory for reads, with a global `resourceVersion` counter and a bounded history of
//! change events for watches (kept durably too, in [`crate::changelog`]).
//!
//! A write runs under one lock: the caller's closure reads and stages changes, the changes commit
//! to redb with immediate durability (fsync), and only then is memory updated, the events
//! published and the write acknowledged. A failed closure or commit leaves nothing behind.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::changelog;
use crate::error::ApiError;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RV_KEY: &str = "resourceVersion";
/// How many past events a watch can resume from, by default.
pub const HISTORY: usize = 10_000;
/// How far a watcher may fall behind before its watch is closed (it then resumes from its last
/// resourceVersion, as every Kubernetes client does).
const FANOUT_BUFFER: usize = 8_192;

/// Where an object lives: its resource (`group/plural`), namespace (empty if cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(resource: impl Into<String>, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Key { resource: resource.into(), namespace: namespace.into(), name: name.into() }
    }

    fn encode(&self) -> String {
        format!("{}\n{}\n{}", self.resource, self.namespace, self.name)
    }

    fn decode(raw: &str) -> Option<Key> {
        let mut parts = raw.splitn(3, '\n');
        Some(Key::new(parts.next()?, parts.next()?, parts.next()?))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change. For deletions `object` is the last state, stamped with the delete's
/// resourceVersion.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub key: Key,
    pub object: Arc<Value>,
    /// The object before this change (None for creations), so a watch with a selector can tell
    /// an object entering or leaving its selection.
    pub prev: Option<Arc<Value>>,
    /// `object` serialised once, shared by every watcher that sends it unchanged.
    pub encoded: Arc<OnceLock<String>>,
}

impl Event {
    pub fn encoded(&self) -> &str {
        self.encoded.get_or_init(|| self.object.to_string())
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the database at {path}: {source}")]
    Open { path: String, source: redb::DatabaseError },
    #[error("reading the database: {0}")]
    Read(String),
}

/// A change that is decided but not yet durable.
struct Pending {
    rv: u64,
    object: Option<Arc<Value>>,
}

struct State {
    db: Arc<Database>,
    /// Durable objects: what reads and watches see.
    objects: BTreeMap<Key, Arc<Value>>,
    /// Decided changes waiting for the next commit: what later writes build on.
    pending: BTreeMap<Key, Pending>,
    /// Last durable resourceVersion.
    rv: u64,
    /// Last assigned resourceVersion (durable or pending).
    assigned: u64,
    /// Events of the pending changes, in resourceVersion order.
    batch: Vec<Event>,
    /// A writer is committing a batch right now.
    committing: bool,
    /// A commit failed: memory may be ahead of disk, so no further writes are accepted.
    failed: Option<String>,
    history: VecDeque<Arc<Event>>,
    /// Watches must start at or after this resourceVersion; older ones get 410 Gone.
    floor: u64,
    /// How many events `history` (and the durable change log) keep.
    keep: usize,
}

impl State {
    /// The latest decided state of `key`, pending or durable.
    fn current(&self, key: &Key) -> Option<Arc<Value>> {
        match self.pending.get(key) {
            Some(p) => p.object.clone(),
            None => self.objects.get(key).cloned(),
        }
    }
}

/// A watch's start: the backlog to send first, the live feed, and the resourceVersion the backlog
/// brings the watcher up to.
pub type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>, u64);

pub struct Store {
    state: Mutex<State>,
    durable: Condvar,
    fanout: broadcast::Sender<Arc<Event>>,
}

/// A write in progress: reads see every decided change (durable or about to be) and the changes
/// staged so far.
pub struct Txn<'a> {
    state: &'a State,
    staged: Vec<(Key, Option<Value>)>,
}

impl Txn<'_> {
    pub fn get(&self, key: &Key) -> Option<Value> {
        if let Some((_, v)) = self.staged.iter().rev().find(|(k, _)| k == key) {
            return v.clone();
        }
        self.state.current(key).map(|v| (*v).clone())
    }

    /// Every object of `resource` (in `namespace` when given), before this write's own changes.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<(Key, Arc<Value>)> {
        self.find_arc(|k, _| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns))
    }

    /// Objects satisfying `pred`, across every resource, before this write's own changes.
    pub fn find(&self, pred: impl Fn(&Key, &Value) -> bool) -> Vec<(Key, Value)> {
        self.find_arc(pred).into_iter().map(|(k, v)| (k, (*v).clone())).collect()
    }

    fn find_arc(&self, pred: impl Fn(&Key, &Value) -> bool) -> Vec<(Key, Arc<Value>)> {
        let mut found: BTreeMap<Key, Arc<Value>> = BTreeMap::new();
        for (k, v) in &self.state.objects {
            if !self.state.pending.contains_key(k) && pred(k, v) {
                found.insert(k.clone(), v.clone());
            }
        }
        for (k, p) in &self.state.pending {
            if let Some(v) = p.object.as_ref().filter(|v| pred(k, v)) {
                found.insert(k.clone(), v.clone());
            }
        }
        found.into_iter().collect()
    }

    pub fn put(&mut self, key: Key, object: Value) {
        self.staged.push((key, Some(object)));
    }

    pub fn delete(&mut self, key: Key) {
        self.staged.push((key, None));
    }
}

fn range<'a>(
    objects: &'a BTreeMap<Key, Arc<Value>>,
    resource: &'a str,
    namespace: Option<&'a str>,
) -> impl Iterator<Item = (&'a Key, &'a Arc<Value>)> + 'a {
    let start = Key::new(resource, namespace.unwrap_or(""), "");
    objects
        .range(start..)
        .take_while(move |(k, _)| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns))
}

impl Store {
    /// Opens (or creates) the database file and loads every object and the newest `history`
    /// events (how far back watches can resume).
    pub fn open(path: &Path, history: usize) -> Result<Store, StoreError> {
        let db =
            Database::create(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        let read = |e: &dyn std::fmt::Display| StoreError::Read(e.to_string());
        let mut objects = BTreeMap::new();
        let mut rv = 0;
        {
            let w = db.begin_write().map_err(|e| read(&e))?;
            w.open_table(OBJECTS).map_err(|e| read(&e))?;
            w.open_table(META).map_err(|e| read(&e))?;
            changelog::create(&w).map_err(|e| read(&e))?;
            w.commit().map_err(|e| read(&e))?;
        }
        let r = db.begin_read().map_err(|e| read(&e))?;
        let table = r.open_table(OBJECTS).map_err(|e| read(&e))?;
        for entry in table.iter().map_err(|e| read(&e))? {
            let (k, v) = entry.map_err(|e| read(&e))?;
            let key = Key::decode(k.value()).ok_or_else(|| StoreError::Read(format!("bad key {:?}", k.value())))?;
            let value: Value = serde_json::from_slice(v.value()).map_err(|e| read(&e))?;
            objects.insert(key, Arc::new(value));
        }
        if let Some(v) = r.open_table(META).map_err(|e| read(&e))?.get(RV_KEY).map_err(|e| read(&e))? {
            rv = v.value();
        }
        let mut log: VecDeque<Arc<Event>> =
            changelog::load(&r).map_err(|e| read(&e))?.into_iter().map(Arc::new).collect();
        drop(r);
        while log.len() > history {
            log.pop_front();
        }
        // The log and the objects are written in one transaction, so the log ends at the stored
        // resourceVersion; a database from before the log existed has none.
        let floor = match (log.front(), log.back()) {
            (Some(first), Some(last)) if last.rv == rv => first.rv - 1,
            _ => {
                log.clear();
                rv
            }
        };
        let (fanout, _) = broadcast::channel(FANOUT_BUFFER);
        let state = State {
            db: Arc::new(db),
            objects,
            pending: BTreeMap::new(),
            rv,
            assigned: rv,
            batch: Vec::new(),
            committing: false,
            failed: None,
            history: log,
            floor,
            keep: history.max(1),
        };
        Ok(Store { state: Mutex::new(state), durable: Condvar::new(), fanout })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// A consistent snapshot of `resource` (in `namespace` when given) and the resourceVersion it is at.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let state = self.lock();
        (range(&state.objects, resource, namespace).map(|(_, v)| v.clone()).collect(), state.rv)
    }

    /// Runs `f` against the current state and durably commits what it staged (unless `dry_run`).
    /// Returns `f`'s result and the committed events, in staging order.
    ///
    /// Concurrent writes share commits (group commit): each write decides its changes under the
    /// lock, then the first writer to find no commit in progress writes every decided change in
    /// one transaction while the others wait for it. A write returns only once its changes are
    /// durable; reads and watches never see a change before that.
    pub fn write<R>(
        &self,
        dry_run: bool,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R, ApiError>,
    ) -> Result<(R, Vec<Event>), ApiError> {
        let mut state = self.lock();
        if let Some(why) = &state.failed {
            return Err(ApiError::Internal(format!("storage failed earlier ({why}); restart the server")));
        }
        let mut txn = Txn { state: &state, staged: Vec::new() };
        let out = f(&mut txn)?;
        let staged = txn.staged;
        let mut events: Vec<Event> = Vec::new();
        let mut rv = state.assigned;
        for (key, object) in staged {
            let prev = match events.iter().rev().find(|e| e.key == key) {
                Some(e) if e.kind == EventType::Deleted => None,
                Some(e) => Some(e.object.clone()),
                None => state.current(&key),
            };
            let (kind, mut obj) = match (object, &prev) {
                (Some(obj), Some(_)) => (EventType::Modified, obj),
                (Some(obj), None) => (EventType::Added, obj),
                (None, Some(last)) => (EventType::Deleted, (**last).clone()),
                (None, None) => continue,
            };
            if !dry_run {
                rv += 1;
                if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("resourceVersion".into(), json!(rv.to_string()));
                }
            }
            events.push(Event { rv, kind, key, object: Arc::new(obj), prev, encoded: Arc::default() });
        }
        if dry_run || events.is_empty() {
            return Ok((out, events));
        }
        state.assigned = rv;
        for e in &events {
            let object = (e.kind != EventType::Deleted).then(|| e.object.clone());
            state.pending.insert(e.key.clone(), Pending { rv: e.rv, object });
        }
        state.batch.extend(events.iter().cloned());
        loop {
            if state.rv >= rv {
                return Ok((out, events));
            }
            if let Some(why) = &state.failed {
                return Err(ApiError::Internal(format!("storage commit failed: {why}")));
            }
            if state.committing {
                state = self.durable.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.committing = true;
            let batch = std::mem::take(&mut state.batch);
            let last = batch.last().map(|e| e.rv).unwrap_or(state.rv);
            let (db, keep) = (state.db.clone(), state.keep);
            drop(state);
            // A panic inside the database must not leave `committing` set and every writer waiting.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(&db, &batch, last, keep)))
                .unwrap_or_else(|_| Err("the storage engine panicked".to_string()));
            state = self.lock();
            state.committing = false;
            match result {
                Ok(()) => self.publish(&mut state, batch, last),
                Err(e) => state.failed = Some(e),
            }
            self.durable.notify_all();
        }
    }

    /// Makes a committed batch visible: to reads, to the watch history and to live watches.
    fn publish(&self, state: &mut State, batch: Vec<Event>, last: u64) {
        state.rv = last;
        for event in batch {
            if state.pending.get(&event.key).is_some_and(|p| p.rv == event.rv) {
                state.pending.remove(&event.key);
            }
            match event.kind {
                EventType::Deleted => state.objects.remove(&event.key),
                _ => state.objects.insert(event.key.clone(), event.object.clone()),
            };
            let event = Arc::new(event);
            state.history.push_back(event.clone());
            // No receivers is fine: nobody is watching.
            let _ = self.fanout.send(event);
        }
        while state.history.len() > state.keep {
            if let Some(old) = state.history.pop_front() {
                state.floor = old.rv;
            }
        }
    }

    /// Starts a watch. With `from = Some(rv)` the backlog is every event after `rv` (or 410 Gone if
    /// that history is no longer kept); with `None` it is a synthetic ADDED for every current object
    /// of `resource`. Events published after the returned backlog arrive on the receiver.
    pub fn subscribe(&self, resource: &str, from: Option<u64>) -> Result<Subscription, ApiError> {
        let state = self.lock();
        let rx = self.fanout.subscribe();
        let backlog = match from {
            Some(rv) if rv < state.floor => {
                return Err(ApiError::Gone(format!("too old resource version: {rv} ({})", state.floor + 1)));
            }
            Some(rv) => state.history.iter().filter(|e| e.rv > rv && e.key.resource == resource).cloned().collect(),
            None => range(&state.objects, resource, None)
                .map(|(k, v)| {
                    let rv =
                        v.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok());
                    Arc::new(Event {
                        rv: rv.unwrap_or(state.rv),
                        kind: EventType::Added,
                        key: k.clone(),
                        object: v.clone(),
                        prev: None,
                        encoded: Arc::default(),
                    })
                })
                .collect(),
        };
        Ok((backlog, rx, state.rv))
    }
}

fn commit(db: &Database, events: &[Event], rv: u64, keep: usize) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut objects = txn.open_table(OBJECTS).map_err(|e| e.to_string())?;
        for event in events {
            let key = event.key.encode();
            match event.kind {
                EventType::Deleted => {
                    objects.remove(key.as_str()).map_err(|e| e.to_string())?;
                }
                _ => {
                    let bytes = serde_json::to_vec(&*event.object).map_err(|e| e.to_string())?;
                    objects.insert(key.as_str(), bytes.as_slice()).map_err(|e| e.to_string())?;
                }
            }
        }
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        meta.insert(RV_KEY, rv).map_err(|e| e.to_string())?;
        changelog::append(&txn, events, keep)?;
    }
    txn.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &Store, key: Key, value: Value) {
        store
            .write(false, |t| {
                t.put(key, value);
                Ok(())
            })
            .unwrap();
    }

    fn obj(name: &str) -> Value {
        json!({"metadata": {"name": name}})
    }

    #[test]
    fn writes_survive_reopen_with_their_resource_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open(&path, HISTORY).unwrap();
            put(&store, Key::new("/configmaps", "default", "a"), obj("a"));
            put(&store, Key::new("/configmaps", "default", "b"), obj("b"));
            store
                .write(false, |t| {
                    t.delete(Key::new("/configmaps", "default", "a"));
                    Ok(())
                })
                .unwrap();
        }
        let store = Store::open(&path, HISTORY).unwrap();
        assert_eq!(store.current_rv(), 3);
        let (items, rv) = store.list("/configmaps", Some("default"));
        assert_eq!(rv, 3);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"]["resourceVersion"], "2");
        // Watches resume across the restart from the durable change log.
        let (backlog, _, _) = store.subscribe("/configmaps", Some(1)).unwrap();
        assert_eq!(
            backlog.iter().map(|e| (e.rv, e.kind)).collect::<Vec<_>>(),
            [(2, EventType::Added), (3, EventType::Deleted)]
        );
        assert_eq!(backlog[1].prev.as_ref().unwrap()["metadata"]["name"], "a");
        drop(store);
        // With a shorter history only the newest events are kept; older versions get 410.
        let store = Store::open(&path, 1).unwrap();
        assert!(matches!(store.subscribe("/configmaps", Some(1)), Err(ApiError::Gone(_))));
        assert_eq!(store.subscribe("/configmaps", Some(2)).unwrap().0.len(), 1);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), HISTORY).unwrap();
        let r: Result<((), _), _> = store.write(false, |t| {
            t.put(Key::new("/configmaps", "default", "a"), obj("a"));
            Err(ApiError::BadRequest("no".into()))
        });
        assert!(r.is_err());
        assert_eq!(store.list("/configmaps", None).0.len(), 0);
        assert_eq!(store.current_rv(), 0);
    }

    #[test]
    fn watch_backlog_holds_only_later_events_of_the_resource() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), HISTORY).unwrap();
        for n in ["a", "b"] {
            put(&store, Key::new("/configmaps", "x", n), obj(n));
            put(&store, Key::new("/secrets", "x", n), obj(n));
        }
        let (backlog, _rx, rv) = store.subscribe("/configmaps", Some(1)).unwrap();
        assert_eq!(rv, 4);
        assert_eq!(backlog.iter().map(|e| e.rv).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn concurrent_writers_share_commits_and_keep_versions_dense() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Arc::new(Store::open(&path, HISTORY).unwrap());
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        for i in 0..50 {
                            let name = format!("t{t}-{i}");
                            put(&store, Key::new("/configmaps", "x", &name), obj(&name));
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(store.current_rv(), 400);
        }
        let store = Store::open(&path, HISTORY).unwrap();
        let (items, rv) = store.list("/configmaps", None);
        assert_eq!((items.len(), rv), (400, 400));
        let mut rvs: Vec<u64> =
            items.iter().map(|o| o["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()).collect();
        rvs.sort();
        assert_eq!(rvs, (1..=400).collect::<Vec<_>>());
    }
}
