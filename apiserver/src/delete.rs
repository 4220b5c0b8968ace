//! Deletion: finalizers hold an object (with `deletionTimestamp` set) until they are removed;
//! otherwise the object goes, and with it what it owns (ownerReferences), what is in it (a
//! Namespace, which stays Terminating while finalized objects remain) or every object of it (a
//! CRD). All of it happens in one store transaction.

use serde_json::{Value, json};

use crate::app::{App, Scope};
use crate::error::ApiError;
use crate::params::DeleteOptions;
use crate::resources;
use crate::store::{Key, Txn};
use crate::write::{meta_str, now};

impl App {
    pub fn delete(&self, scope: &Scope<'_>, name: &str, options: &DeleteOptions) -> Result<Value, ApiError> {
        let (last, events) = self.store.write(options.dry_run, |txn| {
            let key = scope.key(name);
            let old = txn.get(&key).ok_or_else(|| ApiError::not_found(&scope.res.group, &scope.res.plural, name))?;
            for (field, want) in [("uid", &options.uid), ("resourceVersion", &options.resource_version)] {
                if let Some(want) = want
                    && Some(want.as_str()) != meta_str(&old, field)
                {
                    return Err(ApiError::Conflict {
                        subject: crate::error::Subject {
                            group: scope.res.group.clone(),
                            kind: scope.res.plural.clone(),
                            name: name.into(),
                        },
                        message: format!(
                            "Precondition failed: {field}: {want}, object has {field} {}",
                            meta_str(&old, field).unwrap_or("")
                        ),
                        causes: Vec::new(),
                    });
                }
            }
            Ok(delete_object(txn, key, old, options.orphan))
        })?;
        if !options.dry_run {
            self.after_commit(scope, &events);
        }
        let first = events.iter().find(|e| e.key == scope.key(name)).map(|e| (*e.object).clone());
        scope.out(&first.unwrap_or(last))
    }

    pub fn delete_collection(&self, scope: &Scope<'_>, options: &DeleteOptions) -> Result<Value, ApiError> {
        let (items, _) = self.list(scope)?;
        let (deleted, events) = self.store.write(options.dry_run, |txn| {
            let mut deleted = Vec::new();
            for item in &items {
                let name = meta_str(item, "name").unwrap_or_default();
                let key = scope.key(name);
                if let Some(old) = txn.get(&key) {
                    deleted.push(delete_object(txn, key, old, options.orphan));
                }
            }
            Ok(deleted)
        })?;
        if !options.dry_run {
            self.after_commit(scope, &events);
        }
        let items = deleted.iter().map(|o| scope.out(o)).collect::<Result<Vec<_>, _>>()?;
        Ok(App::list_doc(scope, items, json!({"resourceVersion": self.store.current_rv().to_string()})))
    }
}

/// Deletes one object: marks it if finalizers remain, otherwise removes it and everything it owns
/// (by ownerReferences), everything in it (a Namespace) or every object of it (a CRD).
pub(crate) fn delete_object(txn: &mut Txn<'_>, key: Key, mut obj: Value, orphan: bool) -> Value {
    let has_finalizers = obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            obj["metadata"]["deletionTimestamp"] = json!(now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if let Some(g) = obj.pointer("/metadata/generation").and_then(Value::as_i64) {
                obj["metadata"]["generation"] = json!(g + 1);
            }
            txn.put(key, obj.clone());
        }
        return obj;
    }
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let crd_resource = (key.resource == "apiextensions.k8s.io/customresourcedefinitions")
        .then(|| resources::from_crd(&obj).ok().map(|i| i.store_key()))
        .flatten();
    let namespace = (key.resource == "/namespaces").then(|| key.name.clone());
    let dependents = txn.find(|k, v| {
        if crd_resource.as_deref() == Some(k.resource.as_str()) || namespace.as_deref() == Some(k.namespace.as_str()) {
            return true;
        }
        !orphan
            && !uid.is_empty()
            && v.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r.get("uid").and_then(Value::as_str) == Some(uid.as_str())))
    });
    for (k, v) in dependents {
        if txn.get(&k).is_some() {
            delete_object(txn, k, v, orphan);
        }
    }
    if let Some(ns) = &namespace
        && !namespace_empty(txn, ns)
    {
        // Objects still waiting for their finalizers keep the namespace, Terminating, until the
        // last of them goes (see `finish_namespace`).
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            obj["metadata"]["deletionTimestamp"] = json!(now());
        }
        obj["status"] = json!({"phase": "Terminating"});
        txn.put(key, obj.clone());
        return obj;
    }
    txn.delete(key.clone());
    finish_namespace(txn, &key.namespace);
    obj
}

fn namespace_empty(txn: &Txn<'_>, ns: &str) -> bool {
    txn.find(|k, _| k.namespace == ns).iter().all(|(k, _)| txn.get(k).is_none())
}

/// Removes a Terminating namespace once nothing is left in it.
pub(crate) fn finish_namespace(txn: &mut Txn<'_>, ns: &str) {
    let key = Key::new("/namespaces", "", ns);
    if ns.is_empty() || txn.get(&key).is_none_or(|n| n.pointer("/metadata/deletionTimestamp").is_none()) {
        return;
    }
    if namespace_empty(txn, ns) {
        txn.delete(key);
    }
}
