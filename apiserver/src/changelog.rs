//! The durable change log: every committed event, kept in the same redb transaction as the
//! objects it changed, trimmed to the newest N. After a restart, watches resume from any
//! resourceVersion still in the log instead of every client relisting.

use std::sync::Arc;

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde_json::{Value, json};

use crate::store::{Event, EventType, Key};

const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");

fn encode(e: &Event) -> Result<Vec<u8>, String> {
    let doc = json!({
        "type": e.kind.as_str(),
        "resource": e.key.resource, "namespace": e.key.namespace, "name": e.key.name,
        "object": &*e.object,
        "prev": e.prev.as_deref(),
    });
    serde_json::to_vec(&doc).map_err(|err| err.to_string())
}

fn decode(rv: u64, bytes: &[u8]) -> Result<Event, String> {
    let mut doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("change {rv}: {e}"))?;
    let s = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let kind = match s("type").as_str() {
        "ADDED" => EventType::Added,
        "MODIFIED" => EventType::Modified,
        "DELETED" => EventType::Deleted,
        other => return Err(format!("change {rv}: unknown type {other:?}")),
    };
    let key = Key::new(s("resource"), s("namespace"), s("name"));
    let object = Arc::new(doc.get_mut("object").map(Value::take).unwrap_or_default());
    let prev = doc.get_mut("prev").map(Value::take).filter(|p| !p.is_null()).map(Arc::new);
    Ok(Event { rv, kind, key, object, prev, encoded: Arc::default() })
}

pub fn create(txn: &WriteTransaction) -> Result<(), String> {
    txn.open_table(CHANGES).map(|_| ()).map_err(|e| e.to_string())
}

/// Appends `events` and drops all but the newest `keep`.
pub fn append(txn: &WriteTransaction, events: &[Event], keep: usize) -> Result<(), String> {
    let mut table = txn.open_table(CHANGES).map_err(|e| e.to_string())?;
    for e in events {
        table.insert(e.rv, encode(e)?.as_slice()).map_err(|e| e.to_string())?;
    }
    if let Some(last) = events.last().map(|e| e.rv)
        && last > keep as u64
    {
        table.retain_in(..=last - keep as u64, |_, _| false).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Every logged event, oldest first.
pub fn load(txn: &ReadTransaction) -> Result<Vec<Event>, String> {
    let table = txn.open_table(CHANGES).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| e.to_string())? {
        let (rv, bytes) = entry.map_err(|e| e.to_string())?;
        out.push(decode(rv.value(), bytes.value())?);
    }
    Ok(out)
}
