//! The API's behaviour independent of HTTP: who is asking for what (a [`Scope`]), and the read
//! verbs (get, list with selectors and paging). Writes live in [`crate::write`].

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};

use crate::admission::AdmissionChain;
use crate::error::ApiError;
pub use crate::params::Query;
use crate::resources::{Registry, ResourceInfo};
use crate::selectors::Selector;
use crate::store::{Key, Store};

/// Everything the API serves from: resources, objects, admission rules.
pub struct App {
    pub registry: Registry,
    pub store: Store,
    pub admission: AdmissionChain,
}

/// One request's target: a resource at a version, in a namespace (for namespaced resources).
pub struct Scope<'a> {
    pub res: Arc<ResourceInfo>,
    pub version: String,
    pub namespace: Option<String>,
    pub query: &'a Query,
    /// The field manager for writes: `fieldManager`, else the client's name from its User-Agent.
    pub manager: String,
}

impl Scope<'_> {
    pub fn api_version(&self) -> String {
        self.res.api_version(&self.version)
    }

    pub fn key(&self, name: &str) -> Key {
        Key::new(self.res.store_key(), self.namespace.clone().unwrap_or_default(), name)
    }

    /// Converts a stored object to the version this request speaks.
    pub fn out(&self, stored: &Value) -> Result<Value, ApiError> {
        self.res.from_storage(stored.clone(), &self.version)
    }
}

impl App {
    pub fn get(&self, scope: &Scope<'_>, name: &str) -> Result<Value, ApiError> {
        require_version(scope.query, self.store.current_rv(), false)?;
        match self.store.get(&scope.key(name)) {
            Some(obj) => scope.out(&obj),
            None => Err(ApiError::not_found(&scope.res.group, &scope.res.plural, name)),
        }
    }

    /// A list, filtered by selectors and paged by `limit`/`continue`. Returns the objects (at the
    /// request version) and the list metadata.
    pub fn list(&self, scope: &Scope<'_>) -> Result<(Vec<Value>, Value), ApiError> {
        let selector = Selector::parse(scope.query.get("labelSelector"), scope.query.get("fieldSelector"))?;
        let (items, rv) = self.store.list(&scope.res.store_key(), scope.namespace.as_deref());
        require_version(scope.query, rv, true)?;
        let (list_rv, after) = match scope.query.get("continue") {
            Some(token) => decode_continue(token)?,
            None => (rv, None),
        };
        let position = |o: &Value| {
            let m = |k: &str| o.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or("").to_string();
            (m("namespace"), m("name"))
        };
        let mut matching =
            items.iter().filter(|o| after.as_ref().is_none_or(|a| position(o) > *a)).filter(|o| selector.matches(o));
        let limit = scope.query.count("limit")?.filter(|l| *l > 0).map(|l| usize::try_from(l).unwrap_or(usize::MAX));
        let mut out = Vec::new();
        for o in matching.by_ref() {
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            out.push(scope.out(o)?);
        }
        let mut meta = json!({"resourceVersion": list_rv.to_string()});
        if limit.is_some_and(|l| out.len() >= l) {
            let remaining = items
                .iter()
                .filter(|o| after.as_ref().is_none_or(|a| position(o) > *a))
                .filter(|o| selector.matches(o))
                .count()
                - out.len();
            if remaining > 0 {
                let last = out.last().map(position).unwrap_or_default();
                meta["continue"] = json!(encode_continue(list_rv, &last));
                meta["remainingItemCount"] = json!(remaining);
            }
        }
        Ok((out, meta))
    }

    /// A `{Kind}List` document.
    pub fn list_doc(scope: &Scope<'_>, items: Vec<Value>, meta: Value) -> Value {
        json!({"kind": format!("{}List", scope.res.kind), "apiVersion": scope.api_version(), "metadata": meta, "items": items})
    }
}

/// Kubernetes' `resourceVersion` rules for a read served from the current state: none or `0`
/// means any state; `N` means a state not older than N, which this server has not reached if N is
/// ahead of it (504, as a real API server answers after waiting); with
/// `resourceVersionMatch=Exact` (lists), exactly N, which is gone once N is in the past because
/// only the current state is kept (410: list again without it).
fn require_version(query: &Query, current: u64, list: bool) -> Result<(), ApiError> {
    let Some(want) = query.resource_version()?.filter(|v| *v != 0) else { return Ok(()) };
    if want > current {
        return Err(ApiError::Timeout(format!("Too large resource version: {want}, current: {current}")));
    }
    if list && want != current && query.get("resourceVersionMatch") == Some("Exact") {
        return Err(ApiError::Gone(format!(
            "resourceVersion {want} is too old for resourceVersionMatch=Exact: lists are served at the current resourceVersion {current} only; list without resourceVersionMatch=Exact"
        )));
    }
    Ok(())
}

fn encode_continue(rv: u64, after: &(String, String)) -> String {
    let raw = json!({"rv": rv, "ns": after.0, "name": after.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<(u64, Option<(String, String)>), ApiError> {
    let bad = || ApiError::BadRequest("continue key is not valid: request a fresh list without continue".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(bad);
    Ok((v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?, Some((s("ns")?, s("name")?))))
}
