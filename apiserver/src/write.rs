//! The write verbs but deletion ([`crate::delete`]): create, update (object or status) and the
//! four patch types, all through one pipeline (`finalize`) that applies the server's metadata
//! rules, schema, admission, generation and managedFields. Each runs as one store transaction,
//! so a rejected write changes nothing.

use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde_json::{Value, json};

use crate::app::{App, Scope};
use crate::apply::{self, Writer};
use crate::builtin;
use crate::crd_schema;
use crate::error::{ApiError, FieldError};
use crate::fields::ListKinds;
use crate::patch::{self, PatchType};
use crate::resources::{self, ResourceInfo};
use crate::schema;
use crate::store::{EventType, Key, Txn};

/// A write's outcome, at the request's version.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Update,
    Status,
}

/// Whether managedFields still need recording, or an apply already did it.
enum Managed<'a> {
    Update(&'a str),
    Applied,
}

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn is_crd(res: &ResourceInfo) -> bool {
    res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions"
}

fn tracks_generation(res: &ResourceInfo) -> bool {
    res.custom || is_crd(res)
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn without_meta_and_status(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

impl App {
    fn lists<'r>(res: &'r ResourceInfo, version: &str) -> ListKinds<'r> {
        ListKinds { kind: &res.kind, schema: res.version(version).and_then(|v| v.schema.as_ref()) }
    }

    /// Checks the request body's identity against the URL and fills in what it omits.
    fn identify(scope: &Scope<'_>, obj: &mut Value) -> Result<(), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::BadRequest("the request body must be a JSON or YAML object".into()));
        }
        let expected = scope.api_version();
        match obj.get("apiVersion").and_then(Value::as_str) {
            Some(av) if av != expected => {
                return Err(ApiError::BadRequest(format!(
                    "the API version in the data ({av}) does not match the expected API version ({expected})"
                )));
            }
            _ => obj["apiVersion"] = json!(expected),
        }
        match obj.get("kind").and_then(Value::as_str) {
            Some(k) if k != scope.res.kind => {
                return Err(ApiError::BadRequest(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    scope.res.kind
                )));
            }
            _ => obj["kind"] = json!(scope.res.kind),
        }
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        match (scope.res.namespaced, scope.namespace.as_deref(), meta_str(obj, "namespace")) {
            (true, Some(ns), Some(body)) if body != ns => Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            )),
            (true, Some(ns), _) => {
                obj["metadata"]["namespace"] = json!(ns);
                Ok(())
            }
            (true, None, _) => Err(ApiError::MethodNotAllowed(format!(
                "{} is namespaced: write it under /namespaces/{{namespace}}/",
                scope.res.qualified()
            ))),
            (false, _, _) => {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove("namespace");
                }
                Ok(())
            }
        }
    }

    /// Turns a requested object into the one to store: server-owned metadata, status rules,
    /// schema and defaulting, admission, generation, managedFields, storage version.
    fn finalize(
        &self,
        scope: &Scope<'_>,
        txn: &Txn<'_>,
        old: Option<&Value>,
        mut new: Value,
        mode: Mode,
        managed: Managed<'_>,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let res = &scope.res;
        Self::identify(scope, &mut new)?;
        let old_req = old.map(|o| scope.out(o)).transpose()?;
        let stamp = now();
        match (mode, &old_req) {
            (Mode::Create, _) => {
                let meta = new["metadata"].as_object_mut().expect("identify made metadata an object");
                if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
                    let Some(prefix) = meta.get("generateName").and_then(Value::as_str).map(str::to_string) else {
                        return Err(ApiError::invalid(
                            &res.group,
                            &res.kind,
                            "",
                            vec![FieldError::required("metadata.name")],
                        ));
                    };
                    let name = (0..16)
                        .map(|_| format!("{prefix}{}", random_suffix()))
                        .find(|n| txn.get(&scope.key(n)).is_none())
                        .ok_or_else(|| ApiError::Internal("could not generate a unique name; retry".into()))?;
                    meta.insert("name".into(), json!(name));
                }
                meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                meta.insert("creationTimestamp".into(), json!(stamp));
                for k in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
                    meta.remove(k);
                }
                if tracks_generation(res) {
                    meta.insert("generation".into(), json!(1));
                } else {
                    meta.remove("generation");
                }
                if res.status_subresource && !is_namespace(res) {
                    new.as_object_mut().expect("object").remove("status");
                }
            }
            (_, None) => return Err(ApiError::Internal("update without a current object".into())),
            (Mode::Update | Mode::Status, Some(old)) => {
                if mode == Mode::Status {
                    let status = new.get("status").cloned();
                    let meta = new["metadata"].clone();
                    new = old.clone();
                    match status {
                        Some(s) => new["status"] = s,
                        None => {
                            new.as_object_mut().expect("object").remove("status");
                        }
                    }
                    if let Some(mf) = meta.get("managedFields") {
                        new["metadata"]["managedFields"] = mf.clone();
                    }
                } else if res.status_subresource {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            new.as_object_mut().expect("object").remove("status");
                        }
                    }
                }
                for k in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "resourceVersion",
                ] {
                    match old["metadata"].get(k) {
                        Some(v) => new["metadata"][k] = v.clone(),
                        None => {
                            new["metadata"].as_object_mut().expect("object").remove(k);
                        }
                    }
                }
            }
        }
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let name = meta_str(&new, "name").unwrap_or("").to_string();
        if mode == Mode::Create {
            errors.extend(builtin::validate_name(res, &name));
        }
        errors.extend(builtin::validate_metadata(&new));
        if let Some(schema) = res.version(&scope.version).and_then(|v| v.schema.as_ref()) {
            let found = schema::enforce(schema, &mut new);
            match &old_req {
                Some(old) if mode != Mode::Create => errors.extend(schema::ratchet(found.errors, old, &new)),
                _ => errors.extend(found.errors),
            }
            Self::unknown_fields(scope, &found.unknown, &mut warnings)?;
        }
        if is_crd(res) {
            let checked = crd_schema::check_crd(&mut new);
            errors.extend(checked.findings.errors);
            Self::unknown_fields(scope, &checked.findings.unknown, &mut warnings)?;
            warnings.extend(checked.warnings);
        }
        if !res.custom {
            errors.extend(builtin::prepare(res, &mut new, old_req.as_ref(), txn));
        }
        if is_crd(res) {
            match resources::from_crd(&new) {
                Ok(info) if mode != Mode::Status => new["status"] = crd_status(&new, &info, old_req.as_ref(), &stamp),
                Ok(_) => {}
                Err(errs) => errors.extend(errs),
            }
        }
        if errors.is_empty() && mode != Mode::Status {
            errors.extend(self.admission.validate(&res.group, &res.kind, &new));
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(&res.group, &res.kind, &name, errors));
        }
        if let (Some(old), Mode::Update) = (&old_req, mode)
            && tracks_generation(res)
            && without_meta_and_status(old) != without_meta_and_status(&new)
        {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if let Managed::Update(manager) = managed {
            let writer =
                Writer { manager, api_version: &scope.api_version(), subresource: subresource(mode), now: &stamp };
            apply::record_update(old_req.as_ref(), &mut new, &writer, &Self::lists(res, &scope.version));
        }
        let stored = res.to_storage(new)?;
        Ok((stored, warnings))
    }

    /// Fields the schema does not know (already pruned): refused under `fieldValidation=Strict`,
    /// dropped quietly under `Ignore`, and a warning otherwise, as Kubernetes does.
    fn unknown_fields(scope: &Scope<'_>, unknown: &[String], warnings: &mut Vec<String>) -> Result<(), ApiError> {
        let unknown: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        match scope.query.get("fieldValidation") {
            Some("Strict") if !unknown.is_empty() => {
                let (kind, version) = (&scope.res.kind, &scope.version);
                Err(ApiError::BadRequest(format!(
                    "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                    unknown.join(", ")
                )))
            }
            Some("Ignore") => Ok(()),
            _ => {
                warnings.extend(unknown);
                Ok(())
            }
        }
    }

    /// The written object as the client should see it: the committed state of the object the
    /// request named (a write may also touch others, e.g. finish a Terminating namespace).
    fn writer_out(scope: &Scope<'_>, events: &[crate::store::Event], stored: Value) -> Result<Value, ApiError> {
        let name = meta_str(&stored, "name").unwrap_or_default();
        let key = scope.key(name);
        match events.iter().rev().find(|e| e.key == key) {
            Some(e) => scope.out(&e.object),
            None => scope.out(&stored),
        }
    }

    fn require_namespace(scope: &Scope<'_>, txn: &Txn<'_>) -> Result<(), ApiError> {
        let Some(ns) = scope.namespace.as_deref().filter(|_| scope.res.namespaced) else { return Ok(()) };
        match txn.get(&Key::new("/namespaces", "", ns)) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Err(ApiError::Forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ))),
            Some(_) => Ok(()),
        }
    }

    pub fn create(&self, scope: &Scope<'_>, body: Value) -> Result<Written, ApiError> {
        let ((stored, warnings), events) = self.store.write(scope.query.dry_run(), |txn| {
            Self::require_namespace(scope, txn)?;
            let (stored, warnings) =
                self.finalize(scope, txn, None, body, Mode::Create, Managed::Update(&scope.manager))?;
            let name = meta_str(&stored, "name").unwrap_or_default().to_string();
            if txn.get(&scope.key(&name)).is_some() {
                return Err(ApiError::already_exists(&scope.res.group, &scope.res.plural, &name));
            }
            txn.put(scope.key(&name), stored.clone());
            Ok((stored, warnings))
        })?;
        self.after_commit(scope, &events);
        Ok(Written { object: Self::writer_out(scope, &events, stored)?, created: true, warnings })
    }

    /// PUT of an object or its status.
    pub fn update(&self, scope: &Scope<'_>, name: &str, status: bool, body: Value) -> Result<Written, ApiError> {
        let ((stored, warnings), events) = self.store.write(scope.query.dry_run(), |txn| {
            let old = txn
                .get(&scope.key(name))
                .ok_or_else(|| ApiError::not_found(&scope.res.group, &scope.res.plural, name))?;
            if let Some(body_name) = meta_str(&body, "name").filter(|n| *n != name) {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            if let Some(rv) =
                meta_str(&body, "resourceVersion").filter(|rv| Some(*rv) != meta_str(&old, "resourceVersion"))
            {
                let _ = rv;
                return Err(ApiError::modified(&scope.res.group, &scope.res.plural, name));
            }
            let mode = if status { Mode::Status } else { Mode::Update };
            let (stored, warnings) =
                self.finalize(scope, txn, Some(&old), body, mode, Managed::Update(&scope.manager))?;
            Ok((Self::put_or_finish(txn, scope.key(name), old, stored), warnings))
        })?;
        self.after_commit(scope, &events);
        Ok(Written { object: Self::writer_out(scope, &events, stored)?, created: false, warnings })
    }

    /// Stores `new` unless nothing changed; removes the object instead if it was waiting only for
    /// its last finalizer. Returns the resulting object.
    fn put_or_finish(txn: &mut Txn<'_>, key: Key, old: Value, new: Value) -> Value {
        if new == old {
            return old;
        }
        let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
        let finalizers = new.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
        if deleting && !finalizers {
            txn.delete(key.clone());
            crate::delete::finish_namespace(txn, &key.namespace);
        } else {
            txn.put(key, new.clone());
        }
        new
    }

    pub fn patch(
        &self,
        scope: &Scope<'_>,
        name: &str,
        status: bool,
        kind: PatchType,
        body: Value,
    ) -> Result<Written, ApiError> {
        let res = &scope.res;
        if kind == PatchType::Strategic && res.custom {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch is not supported for custom resource {})",
                res.qualified()
            )));
        }
        let mode = if status { Mode::Status } else { Mode::Update };
        let mut created = false;
        let ((stored, warnings), events) = self.store.write(scope.query.dry_run(), |txn| {
            let old = txn.get(&scope.key(name));
            let stamp = now();
            if kind == PatchType::Apply {
                if meta_str(&body, "name").is_some_and(|n| n != name) {
                    return Err(ApiError::BadRequest(format!(
                        "the name of the object does not match the name on the URL ({name})"
                    )));
                }
                let mut applied = body.clone();
                Self::identify(scope, &mut applied)?;
                applied["metadata"]["name"] = json!(name);
                let live = old.as_ref().map(|o| scope.out(o)).transpose()?;
                let force = scope.query.flag("force");
                let writer = Writer {
                    manager: &scope.manager,
                    api_version: &scope.api_version(),
                    subresource: subresource(mode),
                    now: &stamp,
                };
                let merged = apply::apply(live.as_ref(), &applied, &writer, force, &Self::lists(res, &scope.version))
                    .map_err(|c| ApiError::Conflict {
                    subject: crate::error::Subject {
                        group: res.group.clone(),
                        kind: res.plural.clone(),
                        name: name.into(),
                    },
                    message: c.message(&scope.api_version()),
                    causes: c.causes(),
                })?;
                return match old {
                    None => {
                        Self::require_namespace(scope, txn)?;
                        created = true;
                        let (stored, w) = self.finalize(scope, txn, None, merged, Mode::Create, Managed::Applied)?;
                        txn.put(scope.key(name), stored.clone());
                        Ok((stored, w))
                    }
                    Some(old) => {
                        let (stored, w) = self.finalize(scope, txn, Some(&old), merged, mode, Managed::Applied)?;
                        Ok((Self::put_or_finish(txn, scope.key(name), old, stored), w))
                    }
                };
            }
            let old = old.ok_or_else(|| ApiError::not_found(&res.group, &res.plural, name))?;
            let mut current = scope.out(&old)?;
            match kind {
                PatchType::Merge => patch::merge_patch(&mut current, &body),
                PatchType::Json => patch::json_patch(&mut current, &body)?,
                PatchType::Strategic => patch::strategic_merge(&res.kind, &mut current, &body)?,
                PatchType::Apply => unreachable!("handled above"),
            }
            if meta_str(&current, "resourceVersion") != meta_str(&old, "resourceVersion") {
                return Err(ApiError::modified(&res.group, &res.plural, name));
            }
            let (stored, w) = self.finalize(scope, txn, Some(&old), current, mode, Managed::Update(&scope.manager))?;
            Ok((Self::put_or_finish(txn, scope.key(name), old, stored), w))
        })?;
        self.after_commit(scope, &events);
        Ok(Written { object: Self::writer_out(scope, &events, stored)?, created, warnings })
    }

    /// Keeps the served resources in step with committed CRDs.
    pub(crate) fn after_commit(&self, scope: &Scope<'_>, events: &[crate::store::Event]) {
        if !is_crd(&scope.res) || scope.query.dry_run() {
            return;
        }
        for e in events.iter().filter(|e| e.key.resource == scope.res.store_key()) {
            match e.kind {
                EventType::Deleted => {
                    if let Ok(info) = resources::from_crd(&e.object) {
                        self.registry.unregister(&info.group, &info.plural);
                    }
                }
                _ => {
                    if let Ok(info) = resources::from_crd(&e.object) {
                        self.registry.register(info);
                    }
                }
            }
        }
    }
}

fn is_namespace(res: &ResourceInfo) -> bool {
    res.group.is_empty() && res.plural == "namespaces"
}

fn subresource(mode: Mode) -> &'static str {
    if mode == Mode::Status { "status" } else { "" }
}

/// What a real API server reports once a CRD's names are accepted and it is being served.
fn crd_status(crd: &Value, info: &ResourceInfo, old: Option<&Value>, stamp: &str) -> Value {
    let since = old
        .and_then(|o| o.pointer("/status/conditions/0/lastTransitionTime"))
        .and_then(Value::as_str)
        .unwrap_or(stamp)
        .to_string();
    let mut stored: Vec<String> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if !stored.contains(&info.storage_version) {
        stored.push(info.storage_version.clone());
    }
    json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since},
        ],
        "storedVersions": stored,
    })
}
