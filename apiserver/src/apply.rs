//! `metadata.managedFields`: which manager set which field, kept up to date on every write, and
//! server-side apply on top of it (a manager's apply removes what it applied before and now omits;
//! touching another manager's field with a different value conflicts unless forced).

use serde_json::{Map, Value, json};

use crate::error::FieldError;
use crate::fields::{self, FieldSet, ListKind, ListKinds};

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub set: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

/// Who is writing, and through which endpoint.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    /// `status` for writes to the status subresource, empty otherwise.
    pub subresource: &'a str,
    pub now: &'a str,
}

pub fn read(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Entry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: s("subresource"),
                set: fields::from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)),
            }
        })
        .collect()
}

pub fn write(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": fields::to_fields_v1(&e.set),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Records a create, update or non-apply patch: the writer now owns every field it changed, and
/// nobody owns a field that is gone.
pub fn record_update(old: Option<&Value>, new: &mut Value, writer: &Writer<'_>, lists: &ListKinds<'_>) {
    let mut entries = old.map(read).unwrap_or_default();
    let new_set = fields::field_set(new, lists);
    let old_set = old.map(|o| fields::field_set(o, lists)).unwrap_or_default();
    let changed: FieldSet =
        new_set.iter().filter(|p| old.is_none_or(|o| fields::get(o, p) != fields::get(new, p))).cloned().collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    for e in entries.iter_mut() {
        e.set.retain(|p| !removed.contains(p));
        if !e.is(writer.manager, "Update", writer.subresource) {
            e.set.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.is(writer.manager, "Update", writer.subresource)) {
            Some(e) => {
                e.set.extend(changed);
                e.time = writer.now.to_string();
                e.api_version = writer.api_version.to_string();
            }
            None => entries.push(Entry {
                manager: writer.manager.to_string(),
                operation: "Update".into(),
                api_version: writer.api_version.to_string(),
                time: writer.now.to_string(),
                subresource: writer.subresource.to_string(),
                set: changed,
            }),
        }
    }
    write(new, &entries);
}

/// Fields another manager owns with a different value than the apply sets.
#[derive(Debug, Clone)]
pub struct Conflicts(pub Vec<(String, String)>);

impl Conflicts {
    pub fn message(&self, api_version: &str) -> String {
        let n = self.0.len();
        let plural = if n == 1 { "conflict" } else { "conflicts" };
        if n == 1 {
            let (m, f) = &self.0[0];
            return format!("Apply failed with 1 conflict: conflict with \"{m}\" using {api_version}: {f}");
        }
        let lines: Vec<String> = self.0.iter().map(|(m, f)| format!("- conflict with \"{m}\": {f}")).collect();
        format!("Apply failed with {n} {plural}:\n{}", lines.join("\n"))
    }

    pub fn causes(&self) -> Vec<FieldError> {
        self.0
            .iter()
            .map(|(m, f)| FieldError {
                reason: "FieldManagerConflict",
                field: f.clone(),
                detail: format!("conflict with \"{m}\""),
            })
            .collect()
    }
}

/// Server-side apply of `applied` by `writer` onto `live` (None when creating). Returns the merged
/// object with updated managedFields.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    writer: &Writer<'_>,
    force: bool,
    lists: &ListKinds<'_>,
) -> Result<Value, Conflicts> {
    let mut entries = live.map(read).unwrap_or_default();
    let new_set = fields::field_set(applied, lists);
    let mut conflicts = Vec::new();
    if let Some(live) = live {
        for e in entries.iter_mut().filter(|e| !e.is(writer.manager, "Apply", writer.subresource)) {
            let clashing: Vec<_> = e
                .set
                .intersection(&new_set)
                .filter(|p| !p.last().is_some_and(|t| t.starts_with("k:") || t.starts_with("v:")))
                .filter(|p| fields::get(live, p) != fields::get(applied, p))
                .cloned()
                .collect();
            if force {
                e.set.retain(|p| !clashing.contains(p));
            } else {
                conflicts.extend(clashing.iter().map(|p| (e.manager.clone(), fields::display(p))));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(Conflicts(conflicts));
    }
    let mut merged = live.cloned().unwrap_or_else(|| json!({}));
    let previous = entries
        .iter()
        .find(|e| e.is(writer.manager, "Apply", writer.subresource))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let mut dropped: Vec<_> = previous
        .difference(&new_set)
        .filter(|p| !entries.iter().any(|e| !e.is(writer.manager, "Apply", writer.subresource) && e.set.contains(*p)))
        .cloned()
        .collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in &dropped {
        fields::remove(&mut merged, p);
    }
    merge(&mut merged, applied, &mut Vec::new(), lists);
    // Re-applying the same configuration changes nothing, not even the entry's timestamp, so the
    // write is a no-op and watchers see no event (reconcilers apply the same status every loop).
    let unchanged = live.is_some_and(|l| without_managed_fields(l) == without_managed_fields(&merged));
    let time = entries
        .iter()
        .find(|e| e.is(writer.manager, "Apply", writer.subresource) && e.set == new_set && unchanged)
        .map(|e| e.time.clone())
        .unwrap_or_else(|| writer.now.to_string());
    entries.retain(|e| !e.is(writer.manager, "Apply", writer.subresource));
    entries.push(Entry {
        manager: writer.manager.to_string(),
        operation: "Apply".into(),
        api_version: writer.api_version.to_string(),
        time,
        subresource: writer.subresource.to_string(),
        set: new_set,
    });
    write(&mut merged, &entries);
    Ok(merged)
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    o
}

/// Deep-merges an applied configuration: maps field by field, associative lists element by
/// element, everything else replaced.
fn merge<'v>(target: &mut Value, src: &'v Value, names: &mut Vec<&'v str>, lists: &ListKinds<'_>) {
    match (target, src) {
        (Value::Object(t), Value::Object(s)) => merge_maps(t, s, names, lists),
        (Value::Array(t), Value::Array(s)) => match lists.at(names) {
            ListKind::Atomic => *t = s.clone(),
            ListKind::Set => {
                for item in s {
                    if !t.contains(item) {
                        t.push(item.clone());
                    }
                }
            }
            ListKind::Map(keys) => {
                for item in s {
                    let same = |e: &Value| keys.iter().all(|k| e.get(k) == item.get(k));
                    match t.iter_mut().find(|e| same(e)) {
                        Some(existing) => merge(existing, item, names, lists),
                        None => t.push(item.clone()),
                    }
                }
            }
        },
        (t, s) => *t = s.clone(),
    }
}

fn merge_maps<'v>(
    t: &mut Map<String, Value>,
    s: &'v Map<String, Value>,
    names: &mut Vec<&'v str>,
    lists: &ListKinds<'_>,
) {
    for (k, v) in s {
        if v.is_null() {
            t.remove(k);
            continue;
        }
        names.push(k);
        match t.get_mut(k) {
            Some(existing) => merge(existing, v, names, lists),
            None => {
                t.insert(k.clone(), v.clone());
            }
        }
        names.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTS: ListKinds<'static> = ListKinds { kind: "ConfigMap", schema: None };

    fn writer(manager: &str) -> Writer<'_> {
        Writer { manager, api_version: "v1", subresource: "", now: "2026-01-01T00:00:00Z" }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
    }

    #[test]
    fn apply_removes_fields_the_manager_no_longer_applies() {
        let first = apply(None, &cm(json!({"a": "1", "b": "2"})), &writer("alice"), false, &LISTS).unwrap();
        let second = apply(Some(&first), &cm(json!({"a": "1"})), &writer("alice"), false, &LISTS).unwrap();
        assert_eq!(second["data"], json!({"a": "1"}));
    }

    #[test]
    fn another_managers_field_conflicts_unless_forced_then_changes_hands() {
        let alice = apply(None, &cm(json!({"a": "1"})), &writer("alice"), false, &LISTS).unwrap();
        let err = apply(Some(&alice), &cm(json!({"a": "2"})), &writer("bob"), false, &LISTS).unwrap_err();
        assert_eq!(err.0, vec![("alice".to_string(), ".data.a".to_string())]);
        // Same value: shared ownership, no conflict.
        assert!(apply(Some(&alice), &cm(json!({"a": "1"})), &writer("bob"), false, &LISTS).is_ok());
        let forced = apply(Some(&alice), &cm(json!({"a": "2"})), &writer("bob"), true, &LISTS).unwrap();
        assert_eq!(forced["data"]["a"], "2");
        let owners: Vec<String> = read(&forced).into_iter().map(|e| e.manager).collect();
        assert_eq!(owners, ["bob"]);
    }

    #[test]
    fn reapplying_the_same_configuration_changes_nothing() {
        let first = apply(None, &cm(json!({"a": "1"})), &writer("alice"), false, &LISTS).unwrap();
        let later = Writer { now: "2030-01-01T00:00:00Z", ..writer("alice") };
        assert_eq!(apply(Some(&first), &cm(json!({"a": "1"})), &later, false, &LISTS).unwrap(), first);
        let changed = apply(Some(&first), &cm(json!({"a": "2"})), &later, false, &LISTS).unwrap();
        assert_eq!(read(&changed)[0].time, "2030-01-01T00:00:00Z");
    }

    #[test]
    fn updates_take_ownership_of_changed_fields() {
        let alice = apply(None, &cm(json!({"a": "1", "b": "1"})), &writer("alice"), false, &LISTS).unwrap();
        let mut edited = alice.clone();
        edited["data"]["a"] = json!("9");
        record_update(Some(&alice), &mut edited, &writer("kubectl-edit"), &LISTS);
        let entries = read(&edited);
        let edit = entries.iter().find(|e| e.manager == "kubectl-edit").unwrap();
        assert_eq!(edit.operation, "Update");
        assert!(edit.set.contains(&vec!["f:data".to_string(), "f:a".to_string()]));
        let alice_set = &entries.iter().find(|e| e.manager == "alice").unwrap().set;
        assert!(!alice_set.contains(&vec!["f:data".to_string(), "f:a".to_string()]));
        // alice re-applying her old value now conflicts with the editor.
        assert!(apply(Some(&edited), &cm(json!({"a": "1", "b": "1"})), &writer("alice"), false, &LISTS).is_err());
    }
}
