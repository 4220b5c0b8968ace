//! Query parameters: decoding them, and checking every parameter a verb reads before anything
//! uses it, so a malformed value (`limit=ten`, `watch=yes`, `dryRun=Some`) is answered
//! `400 BadRequest` with a message naming the parameter and saying what to send instead, never
//! silently ignored. Parameters a verb does not read are ignored, as Kubernetes ignores them.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::ApiError;
use crate::patch::PatchType;
use crate::selectors::Selector;

/// Decoded query parameters; an empty value counts as absent.
#[derive(Debug, Clone, Default)]
pub struct Query(pub HashMap<String, String>);

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a request does; it decides which parameters are read, so which are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch(PatchType),
    Delete,
    DeleteCollection,
}

/// Longest `fieldManager` Kubernetes accepts.
pub const MAX_FIELD_MANAGER: usize = 128;

const RV_MATCHES: [&str; 2] = ["NotOlderThan", "Exact"];
const FIELD_VALIDATIONS: [&str; 3] = ["Ignore", "Warn", "Strict"];
const PROPAGATION_POLICIES: [&str; 3] = ["Orphan", "Background", "Foreground"];
const INCLUDE_OBJECTS: [&str; 3] = ["None", "Metadata", "Object"];

fn bad(key: &str, value: &str, fix: &str) -> ApiError {
    ApiError::BadRequest(format!("invalid query parameter {key}={value:?}: {fix}"))
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(percent_decode(k), percent_decode(v));
        }
        Query(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// A boolean, spelled as Go's `strconv.ParseBool` (and so kubectl and client-go) spell it.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some("true" | "True" | "TRUE" | "t" | "T" | "1") => Ok(Some(true)),
            Some("false" | "False" | "FALSE" | "f" | "F" | "0") => Ok(Some(false)),
            Some(v) => Err(bad(key, v, "must be true or false")),
        }
    }

    /// A boolean that is false when absent; only for parameters [`check`] has already checked.
    pub fn flag(&self, key: &str) -> bool {
        self.bool(key).ok().flatten().unwrap_or(false)
    }

    /// A whole number, 0 or more.
    pub fn count(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| v.parse::<u64>().map_err(|_| bad(key, v, "must be a whole number, 0 or more")))
            .transpose()
    }

    /// A whole number of seconds, which may be negative (as `gracePeriodSeconds` may).
    pub fn seconds(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| v.parse::<i64>().map_err(|_| bad(key, v, "must be a whole number of seconds")))
            .transpose()
    }

    /// `resourceVersion`: a version this server handed out (a whole number), or `0` for "any".
    pub fn resource_version(&self) -> Result<Option<u64>, ApiError> {
        self.get("resourceVersion")
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    bad(
                        "resourceVersion",
                        v,
                        "must be a resourceVersion this server returned (a whole number), or 0 for any",
                    )
                })
            })
            .transpose()
    }

    /// One of a fixed set of values.
    pub fn one_of(&self, key: &str, allowed: &[&str]) -> Result<Option<&str>, ApiError> {
        match self.get(key) {
            Some(v) if !allowed.contains(&v) => Err(bad(key, v, &format!("supported values: {}", allowed.join(", ")))),
            v => Ok(v),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// Checks every parameter `verb` reads; all problems are reported at once.
pub fn check(query: &Query, verb: Verb) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    let mut note = |r: Result<(), ApiError>| {
        if let Err(e) = r {
            problems.push(e.to_string());
        }
    };
    note(duration(query, "timeout"));
    match verb {
        Verb::Get => {
            note(query.resource_version().map(drop));
            note(query.one_of("includeObject", &INCLUDE_OBJECTS).map(drop));
        }
        Verb::List | Verb::Watch => list_options(query, verb == Verb::Watch, &mut note),
        Verb::DeleteCollection => {
            list_options(query, false, &mut note);
            delete_query(query, &mut note);
        }
        Verb::Create | Verb::Update => write_options(query, &mut note),
        Verb::Patch(kind) => {
            write_options(query, &mut note);
            note(query.bool("force").map(drop));
            if kind == PatchType::Apply && query.get("fieldManager").is_none() {
                note(Err(ApiError::BadRequest(
                    "query parameter fieldManager is required for apply patches: add ?fieldManager=<your controller or tool>"
                        .into(),
                )));
            }
            if kind != PatchType::Apply && query.get("force").is_some() {
                note(Err(ApiError::BadRequest(
                    "query parameter force is only allowed for apply patches (application/apply-patch+yaml): drop it"
                        .into(),
                )));
            }
        }
        Verb::Delete => delete_query(query, &mut note),
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(ApiError::BadRequest(problems.remove(0))),
        _ => Err(ApiError::BadRequest(format!("[{}]", problems.join("; ")))),
    }
}

fn list_options(query: &Query, watch: bool, note: &mut impl FnMut(Result<(), ApiError>)) {
    note(Selector::parse(query.get("labelSelector"), query.get("fieldSelector")).map(drop));
    note(query.count("limit").map(drop));
    note(query.count("timeoutSeconds").map(drop));
    note(query.bool("watch").map(drop));
    note(query.bool("allowWatchBookmarks").map(drop));
    note(query.one_of("includeObject", &INCLUDE_OBJECTS).map(drop));
    let rv = query.resource_version();
    let matching = query.one_of("resourceVersionMatch", &RV_MATCHES);
    let initial = query.bool("sendInitialEvents");
    let forbid = |key: &str, why: &str| Err(ApiError::BadRequest(format!("query parameter {key} {why}")));
    match (rv, matching, initial) {
        (Ok(_), Ok(matching), Ok(initial)) if watch => {
            if initial.is_some() && matching != Some("NotOlderThan") {
                note(forbid("resourceVersionMatch", "must be NotOlderThan when sendInitialEvents is set"));
            }
            if initial.is_none() && matching.is_some() {
                note(forbid("resourceVersionMatch", "is only allowed on a watch with sendInitialEvents: drop it"));
            }
            if initial == Some(true) && query.bool("allowWatchBookmarks").ok().flatten() != Some(true) {
                note(forbid("sendInitialEvents", "requires allowWatchBookmarks=true"));
            }
        }
        (Ok(rv), Ok(matching), Ok(initial)) => {
            if let Some(m) = matching {
                if rv.is_none() {
                    note(forbid("resourceVersionMatch", "is only allowed with a resourceVersion: add one or drop it"));
                }
                if query.get("continue").is_some() {
                    note(forbid("resourceVersionMatch", "is not allowed with continue: drop one of them"));
                }
                if m == "Exact" && rv == Some(0) {
                    note(forbid("resourceVersionMatch", "Exact needs a resourceVersion other than 0"));
                }
            }
            if initial.is_some() {
                note(forbid("sendInitialEvents", "is only allowed on a watch (watch=true)"));
            }
        }
        (rv, matching, initial) => {
            note(rv.map(drop));
            note(matching.map(drop));
            note(initial.map(drop));
        }
    }
}

fn write_options(query: &Query, note: &mut impl FnMut(Result<(), ApiError>)) {
    note(query.one_of("dryRun", &["All"]).map(drop));
    note(query.one_of("fieldValidation", &FIELD_VALIDATIONS).map(drop));
    if let Some(m) = query.get("fieldManager") {
        if m.chars().count() > MAX_FIELD_MANAGER {
            note(Err(bad("fieldManager", m, &format!("must be at most {MAX_FIELD_MANAGER} characters long"))));
        }
        if m.chars().any(char::is_control) {
            note(Err(bad("fieldManager", m, "must contain only printable characters")));
        }
    }
}

fn delete_query(query: &Query, note: &mut impl FnMut(Result<(), ApiError>)) {
    note(query.one_of("dryRun", &["All"]).map(drop));
    note(query.seconds("gracePeriodSeconds").map(drop));
    note(query.one_of("propagationPolicy", &PROPAGATION_POLICIES).map(drop));
    note(query.bool("orphanDependents").map(drop));
    if query.get("propagationPolicy").is_some() && query.get("orphanDependents").is_some() {
        note(Err(ApiError::BadRequest(
            "query parameters orphanDependents and propagationPolicy cannot both be set: use propagationPolicy alone"
                .into(),
        )));
    }
}

/// A Go duration (`30s`, `1m30s`, `250ms`), as the `timeout` parameter takes.
fn duration(query: &Query, key: &str) -> Result<(), ApiError> {
    let Some(v) = query.get(key) else { return Ok(()) };
    if is_go_duration(v) { Ok(()) } else { Err(bad(key, v, "must be a duration such as 30s, 1m or 1m30s")) }
}

fn is_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        if !matches!(&rest[..unit], "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return false;
        }
        rest = &rest[unit..];
    }
    true
}

/// How a single delete is to be done, from its `DeleteOptions` body and its query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub orphan: bool,
    pub dry_run: bool,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

/// Reads a `DeleteOptions` body (`{}` when none was sent) together with the query (already
/// checked by [`check`]); every field of the wrong type or value is named.
pub fn delete_options(body: &Value, query: &Query) -> Result<DeleteOptions, ApiError> {
    let Some(map) = body.as_object() else {
        return Err(ApiError::BadRequest("the DeleteOptions body must be an object".into()));
    };
    let mut problems: Vec<String> = Vec::new();
    let field = |name: &str| map.get(name).filter(|v| !v.is_null());
    let wrong = |problems: &mut Vec<String>, name: &str, v: &Value, fix: &str| {
        problems.push(format!("DeleteOptions.{name}: invalid value {}: {fix}", crate::error::short(v)))
    };
    let policy = match field("propagationPolicy") {
        Some(Value::String(p)) if PROPAGATION_POLICIES.contains(&p.as_str()) => Some(p.as_str()),
        Some(v) => {
            wrong(
                &mut problems,
                "propagationPolicy",
                v,
                &format!("supported values: {}", PROPAGATION_POLICIES.join(", ")),
            );
            None
        }
        None => None,
    };
    let orphan_dependents = match field("orphanDependents") {
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => {
            wrong(&mut problems, "orphanDependents", v, "must be true or false");
            None
        }
        None => None,
    };
    if policy.is_some() && orphan_dependents.is_some() {
        problems.push(
            "DeleteOptions: orphanDependents and propagationPolicy cannot both be set: use propagationPolicy alone"
                .into(),
        );
    }
    if let Some(v) = field("gracePeriodSeconds").filter(|v| !v.is_i64()) {
        wrong(&mut problems, "gracePeriodSeconds", v, "must be a whole number of seconds");
    }
    let dry_run = match field("dryRun") {
        Some(Value::Array(a)) if a.iter().all(|x| x == "All") => !a.is_empty(),
        Some(v) => {
            wrong(&mut problems, "dryRun", v, "must be [\"All\"] or empty");
            false
        }
        None => false,
    };
    let mut precondition = |name: &str| match map.get("preconditions").and_then(|p| p.get(name)) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(v) => {
            problems.push(format!(
                "DeleteOptions.preconditions.{name}: invalid value {}: must be a string",
                crate::error::short(v)
            ));
            None
        }
    };
    let (uid, resource_version) = (precondition("uid"), precondition("resourceVersion"));
    if !problems.is_empty() {
        return Err(ApiError::BadRequest(problems.join("; ")));
    }
    let orphan = match (policy.or(query.get("propagationPolicy")), orphan_dependents) {
        (Some(p), _) => p == "Orphan",
        (None, Some(o)) => o,
        (None, None) => query.flag("orphanDependents"),
    };
    Ok(DeleteOptions { orphan, dry_run: dry_run || query.dry_run(), uid, resource_version })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_strings_are_decoded() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&limit="));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.get("limit"), None);
    }

    fn problem(raw: &str, verb: Verb) -> String {
        check(&Query::parse(Some(raw)), verb).expect_err(raw).to_string()
    }

    #[test]
    fn each_malformed_parameter_is_named_with_its_fix() {
        assert!(problem("limit=ten", Verb::List).contains("limit=\"ten\": must be a whole number"));
        assert!(problem("limit=-1", Verb::List).contains("limit"));
        assert!(problem("timeoutSeconds=1.5", Verb::Watch).contains("timeoutSeconds"));
        assert!(problem("resourceVersion=abc", Verb::Get).contains("resourceVersion=\"abc\""));
        assert!(problem("watch=yes", Verb::List).contains("watch=\"yes\": must be true or false"));
        assert!(problem("allowWatchBookmarks=maybe", Verb::Watch).contains("allowWatchBookmarks"));
        assert!(problem("gracePeriodSeconds=soon", Verb::Delete).contains("gracePeriodSeconds"));
        assert!(problem("propagationPolicy=Later", Verb::Delete).contains("supported values: Orphan"));
        assert!(problem("dryRun=true", Verb::Create).contains("dryRun=\"true\": supported values: All"));
        assert!(problem("fieldValidation=Loud", Verb::Update).contains("fieldValidation"));
        assert!(problem("force=sure&fieldManager=x", Verb::Patch(PatchType::Apply)).contains("force"));
        assert!(problem("force=true", Verb::Patch(PatchType::Merge)).contains("only allowed for apply"));
        assert!(problem("", Verb::Patch(PatchType::Apply)).contains("fieldManager is required"));
        assert!(problem(&format!("fieldManager={}", "m".repeat(129)), Verb::Create).contains("at most 128"));
        assert!(problem("labelSelector=a%20in%20b", Verb::List).contains("labelSelector"));
        assert!(problem("fieldSelector=metadata..name%3Dx", Verb::List).contains("fieldSelector"));
        assert!(problem("timeout=soon", Verb::Get).contains("timeout=\"soon\""));
        assert!(problem("includeObject=All", Verb::Get).contains("includeObject"));
        assert!(problem("resourceVersionMatch=Newest&resourceVersion=1", Verb::List).contains("resourceVersionMatch"));
        // Every problem is reported, not just the first.
        let both = problem("limit=x&watch=y", Verb::List);
        assert!(both.contains("limit") && both.contains("watch"), "{both}");
    }

    #[test]
    fn what_kubectl_and_kube_rs_send_is_accepted() {
        for (raw, verb) in [
            ("timeout=32s", Verb::Get),
            ("limit=500", Verb::List),
            ("resourceVersion=12&watch=true", Verb::Watch),
            (
                "allowWatchBookmarks=true&fieldSelector=metadata.name%3Dweb&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=310&watch=true",
                Verb::Watch,
            ),
            ("&watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=7", Verb::Watch),
            ("fieldManager=kubectl-client-side-apply&fieldValidation=Strict", Verb::Create),
            ("fieldManager=kubectl&fieldValidation=Strict&force=false", Verb::Patch(PatchType::Apply)),
            ("&force=true&fieldManager=shifter-controller", Verb::Patch(PatchType::Apply)),
            ("fieldManager=kubectl-edit&fieldValidation=Strict", Verb::Patch(PatchType::Strategic)),
            ("dryRun=All&propagationPolicy=Background&gracePeriodSeconds=0", Verb::Delete),
            ("resourceVersion=0&resourceVersionMatch=NotOlderThan&limit=1", Verb::List),
            ("timeout=1m30.5s", Verb::List),
        ] {
            assert!(
                check(&Query::parse(Some(raw)), verb).is_ok(),
                "{raw}: {:?}",
                check(&Query::parse(Some(raw)), verb)
            );
        }
    }

    #[test]
    fn delete_options_come_from_the_body_or_the_query() {
        let q = Query::default();
        assert!(delete_options(&json!({"propagationPolicy": "Orphan"}), &q).unwrap().orphan);
        assert!(delete_options(&json!({"orphanDependents": true}), &q).unwrap().orphan);
        assert!(delete_options(&json!({"dryRun": ["All"]}), &q).unwrap().dry_run);
        assert!(delete_options(&json!({}), &Query::parse(Some("propagationPolicy=Orphan"))).unwrap().orphan);
        let pre = delete_options(&json!({"preconditions": {"uid": "u1"}}), &q).unwrap();
        assert_eq!(pre.uid.as_deref(), Some("u1"));
        let err = delete_options(&json!({"propagationPolicy": "Later", "gracePeriodSeconds": "5"}), &q).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("DeleteOptions.propagationPolicy") && text.contains("DeleteOptions.gracePeriodSeconds"));
        assert!(
            delete_options(&json!({"dryRun": "All"}), &q).unwrap_err().to_string().contains("DeleteOptions.dryRun")
        );
    }
}
