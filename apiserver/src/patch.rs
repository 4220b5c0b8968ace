//! The three classic patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! Kubernetes' strategic merge patch for the built-in kinds (lists merged by their merge key and
//! ordered as Kubernetes orders them, with the `$patch`, `$retainKeys`, `$setElementOrder` and
//! `$deleteFromPrimitiveList` directives that kubectl sends).

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Which patch format a request body is in, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies a JSON patch all or nothing. A malformed operation is a 400 naming its index; one that
/// cannot apply (a missing path, a failed `test`) a 422 naming the operation and its path.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Some(raw) = patch.as_array() else {
        return Err(ApiError::BadRequest(
            "invalid JSON patch: the body must be a list of operations, e.g. [{\"op\": \"replace\", \"path\": \"/spec/x\", \"value\": 1}]".into(),
        ));
    };
    let ops = raw
        .iter()
        .enumerate()
        .map(|(i, op)| {
            serde_json::from_value::<json_patch::PatchOperation>(op.clone()).map_err(|e| {
                ApiError::BadRequest(format!(
                    "invalid JSON patch: operation [{i}]: {e}: each operation needs op (add, remove, replace, move, copy or test), path and, for some, value or from"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Applied to a copy that replaces the target only on success: the library's own undo does not
    // restore every value (a moved-away null), and must never get the chance to panic.
    let mut patched = target.clone();
    json_patch::patch_unsafe(&mut patched, &ops).map_err(|e| ApiError::Invalid {
        subject: Default::default(),
        message: format!("the server rejected our request due to an error in our request: {e}"),
        causes: Vec::new(),
    })?;
    *target = patched;
    Ok(())
}

/// How a list at a given path merges in a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// Replaced wholesale (the default for lists without a patch strategy).
    Replace,
    /// A list of maps merged element-wise by this key.
    MergeKey(&'static str),
    /// A list of scalars merged as a set.
    Primitives,
}

/// The patch strategies of the list fields of the built-in kinds this server serves.
fn strategy(kind: &str, path: &str) -> ListStrategy {
    match (kind, path) {
        (_, "metadata.finalizers") => ListStrategy::Primitives,
        (_, "metadata.ownerReferences") => ListStrategy::MergeKey("uid"),
        (_, "status.conditions") => ListStrategy::MergeKey("type"),
        ("Service", "spec.ports") => ListStrategy::MergeKey("port"),
        _ => ListStrategy::Replace,
    }
}

/// Applies a strategic merge patch to an object of a built-in `kind`. A malformed directive is a
/// 400 naming where in the patch it is; `target` is then left partly patched, for the caller to
/// discard.
pub fn strategic_merge(kind: &str, target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let Some(patch) = patch.as_object() else {
        return Err(ApiError::BadRequest("strategic merge patch must be a JSON object".into()));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else { unreachable!("made an object above") };
    merge_map(kind, map, patch, "").map_err(|e| ApiError::BadRequest(format!("invalid strategic merge patch: {e}")))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

fn merge_map(
    kind: &str,
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), String> {
    match patch.get("$patch") {
        None => {}
        Some(Value::String(d)) if d == "replace" => {
            *target = patch.iter().filter(|(k, _)| *k != "$patch").map(|(k, v)| (k.clone(), v.clone())).collect();
            return Ok(());
        }
        Some(Value::String(d)) if d == "delete" => {
            target.clear();
            return Ok(());
        }
        Some(other) => {
            return Err(format!("{}: unknown directive {other}: use replace or delete", join(path, "$patch")));
        }
    }
    retain_keys(target, patch, path)?;
    let ordered = set_element_order(kind, target, patch, path)?;
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with(SET_ELEMENT_ORDER) || ordered.contains(key) {
            continue;
        }
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            continue;
        }
        let sub = join(path, key);
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(p) => match target.get_mut(key) {
                Some(Value::Object(t)) => merge_map(kind, t, p, &sub)?,
                _ => {
                    let mut fresh = Map::new();
                    merge_map(kind, &mut fresh, p, &sub)?;
                    target.insert(key.clone(), Value::Object(fresh));
                }
            },
            Value::Array(items) => {
                let existing = match target.get(key) {
                    Some(Value::Array(existing)) => existing.as_slice(),
                    _ => &[],
                };
                let merged = merge_list(kind, existing, items, &sub, strategy(kind, &sub))?;
                target.insert(key.clone(), Value::Array(merged));
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
    // Deletions from lists of values come last, after any additions to the same list.
    for (key, remove) in patch {
        let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) else { continue };
        let Some(remove) = remove.as_array() else {
            return Err(format!("{}: must be a list of the values to remove", join(path, key)));
        };
        if let Some(Value::Array(list)) = target.get_mut(field) {
            list.retain(|x| !remove.contains(x));
        }
    }
    Ok(())
}

/// `$retainKeys`: every key of `target` not listed is cleared; the patch may only set listed keys.
fn retain_keys(target: &mut Map<String, Value>, patch: &Map<String, Value>, path: &str) -> Result<(), String> {
    let Some(keep) = patch.get("$retainKeys") else { return Ok(()) };
    let at = join(path, "$retainKeys");
    let keep: Vec<&str> = keep
        .as_array()
        .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| format!("{at}: must be a list of field names"))?;
    for (key, value) in patch {
        let directive = key == "$patch"
            || key == "$retainKeys"
            || key.starts_with(SET_ELEMENT_ORDER)
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
        if !directive && !value.is_null() && !keep.contains(&key.as_str()) {
            return Err(format!("{at}: the patch sets {key:?}, which is not in the list of keys to retain"));
        }
    }
    target.retain(|k, _| keep.contains(&k.as_str()));
    Ok(())
}

/// `$setElementOrder/<list>`: merges `<list>` (if the patch has it) and orders the result as the
/// directive says, as Kubernetes does: the listed elements in the listed order, interleaved with
/// the elements only the server has by their positions in the live list. Returns the lists done.
fn set_element_order(
    kind: &str,
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for (key, order) in patch {
        let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else { continue };
        let at = join(path, key);
        let Some(order) = order.as_array().filter(|_| !field.is_empty()) else {
            return Err(format!("{at}: must be a list, under the name of the list it orders"));
        };
        let sub = join(path, field);
        let how = strategy(kind, &sub);
        // A live value that is not a list (the schema would not have allowed it) is replaced.
        let live = target.get(field).and_then(Value::as_array).cloned();
        let patched = match patch.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(_) => return Err(format!("{sub}: must be a list, as {at} orders it")),
        };
        let identity = Identity::of(how);
        if let Some(key) = identity.merge_key
            && let Some(i) = order.iter().position(|o| o.get(key).is_none())
        {
            return Err(format!("{at}[{i}]: has no merge key {key:?}"));
        }
        if let Some(patched) = &patched {
            check_order(patched, order, &identity, &at)?;
        }
        let merged = match (&live, &patched) {
            (None, None) => continue,
            (Some(live), None) => live.clone(),
            (live, Some(patched)) => merge_list(kind, live.as_deref().unwrap_or_default(), patched, &sub, how)?,
        };
        let ordered = match how {
            ListStrategy::Replace => merged,
            _ => identity.order(merged, order, live.as_deref().unwrap_or_default()),
        };
        target.insert(field.to_string(), Value::Array(ordered));
        done.push(field.to_string());
    }
    Ok(done)
}

/// The elements a patch sets (deletions aside) must appear in `$setElementOrder` in the same
/// relative order, as Kubernetes requires.
fn check_order(patched: &[Value], order: &[Value], identity: &Identity, at: &str) -> Result<(), String> {
    let mut position = 0;
    for item in patched.iter().filter(|i| i.get("$patch").is_none()) {
        match order[position..].iter().position(|o| identity.same(o, item)) {
            Some(p) => position += p + 1,
            None => {
                return Err(format!(
                    "{at}: does not list {} in the order the patch has it: list every element the patch sets, in the same order",
                    crate::error::short(item)
                ));
            }
        }
    }
    Ok(())
}

/// How elements of one list are told apart: by their merge key, or (values) by themselves.
struct Identity {
    merge_key: Option<&'static str>,
}

impl Identity {
    fn of(strategy: ListStrategy) -> Identity {
        Identity { merge_key: if let ListStrategy::MergeKey(k) = strategy { Some(k) } else { None } }
    }

    fn id<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        match self.merge_key {
            Some(k) => v.get(k),
            None => Some(v),
        }
    }

    fn same(&self, a: &Value, b: &Value) -> bool {
        self.id(a).is_some_and(|x| Some(x) == self.id(b))
    }

    fn position(&self, list: &[Value], v: &Value) -> Option<usize> {
        list.iter().position(|x| self.same(x, v))
    }

    /// Kubernetes' order for a merged list: elements named in `order` sorted by it; the rest
    /// (only on the server) kept in their `live` order; the two interleaved by position in
    /// `live` where both elements have one, the ordered element first where not.
    fn order(&self, merged: Vec<Value>, order: &[Value], live: &[Value]) -> Vec<Value> {
        let (mut named, mut server_only): (Vec<Value>, Vec<Value>) =
            merged.into_iter().partition(|v| self.position(order, v).is_some());
        named.sort_by_key(|v| self.position(order, v));
        server_only.sort_by_key(|v| self.position(live, v).unwrap_or(usize::MAX));
        let mut out = Vec::with_capacity(named.len() + server_only.len());
        let (mut named, mut server_only) = (named.into_iter().peekable(), server_only.into_iter().peekable());
        loop {
            let take_server = match (server_only.peek(), named.peek()) {
                (Some(s), Some(n)) => {
                    matches!((self.position(live, s), self.position(live, n)), (Some(a), Some(b)) if a < b)
                }
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            out.extend(if take_server { server_only.next() } else { named.next() });
        }
        out
    }
}

fn merge_list(
    kind: &str,
    existing: &[Value],
    patch: &[Value],
    path: &str,
    strategy: ListStrategy,
) -> Result<Vec<Value>, String> {
    let directive = |i: &Value| i.get("$patch").cloned();
    match strategy {
        ListStrategy::Replace => Ok(patch.iter().filter(|i| directive(i).is_none()).cloned().collect()),
        ListStrategy::Primitives => {
            let mut out = existing.to_vec();
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Ok(Identity::of(strategy).order(out, patch, existing))
        }
        ListStrategy::MergeKey(merge_key) => {
            let mut out = existing.to_vec();
            let mut upserts = Vec::new();
            for (i, item) in patch.iter().enumerate() {
                let at = format!("{path}[{i}]");
                let Some(fields) = item.as_object() else {
                    return Err(format!("{at}: must be an object with the merge key {merge_key:?}"));
                };
                let id = fields.get(merge_key);
                match fields.get("$patch") {
                    None => {
                        let id = id.ok_or_else(|| format!("{at}: has no merge key {merge_key:?}"))?;
                        upserts.push((id, fields));
                    }
                    Some(d) if d == "delete" => {
                        let id = id.ok_or_else(|| {
                            format!("{at}: a $patch: delete element needs its merge key {merge_key:?}")
                        })?;
                        out.retain(|e| e.get(merge_key) != Some(id));
                    }
                    Some(d) if d == "replace" => {
                        return Ok(patch.iter().filter(|i| directive(i).is_none()).cloned().collect());
                    }
                    Some(other) => {
                        return Err(format!("{at}.$patch: unknown directive {other}: use delete or replace"));
                    }
                }
            }
            for (id, fields) in upserts {
                match out.iter_mut().find(|e| e.get(merge_key) == Some(id)) {
                    Some(Value::Object(t)) => merge_map(kind, t, fields, path)?,
                    Some(other) => *other = Value::Object(fields.clone()),
                    None => {
                        let mut fresh = Map::new();
                        merge_map(kind, &mut fresh, fields, path)?;
                        out.push(Value::Object(fresh));
                    }
                }
            }
            let set: Vec<Value> = patch.iter().filter(|i| directive(i).is_none()).cloned().collect();
            Ok(Identity::of(strategy).order(out, &set, existing))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_service_ports_by_port() {
        let mut svc = json!({"metadata": {"finalizers": ["a"]}, "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}], "selector": {"app": "web"}}});
        let patch = json!({"metadata": {"finalizers": ["b"]}, "spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}],
            "ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "$patch": "delete"}], "selector": {"app": null, "tier": "x"}}});
        strategic_merge("Service", &mut svc, &patch).unwrap();
        assert_eq!(svc["spec"]["ports"], json!([{"port": 80, "targetPort": 9090}]));
        assert_eq!(svc["spec"]["selector"], json!({"tier": "x"}));
        // Kubernetes puts a patch's new elements before server-only ones it cannot place.
        assert_eq!(svc["metadata"]["finalizers"], json!(["b", "a"]));
    }

    #[test]
    fn set_element_order_orders_merged_lists_as_kubernetes_does() {
        let ports = |ps: &[u16]| json!({"spec": {"ports": ps.iter().map(|p| json!({"port": p})).collect::<Vec<_>>()}});
        let order = |v: &Value| -> Vec<u64> {
            v["spec"]["ports"].as_array().unwrap().iter().map(|p| p["port"].as_u64().unwrap()).collect()
        };
        // Listed elements in the listed order; a server-only element keeps its place where it can.
        let mut svc = ports(&[80, 443, 8080]);
        let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}, {"port": 9090}],
            "ports": [{"port": 9090, "name": "new"}]}});
        strategic_merge("Service", &mut svc, &patch).unwrap();
        assert_eq!(order(&svc), [443, 80, 9090, 8080]);
        assert_eq!(svc["spec"]["ports"][2]["name"], "new");
        // Reordering alone, with no change to the list's contents.
        let mut svc = ports(&[80, 443]);
        strategic_merge(
            "Service",
            &mut svc,
            &json!({"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}]}}),
        )
        .unwrap();
        assert_eq!(order(&svc), [443, 80]);
        // A list of values, with a deletion in the same patch.
        let mut o = json!({"metadata": {"finalizers": ["b", "e", "a", "c", "d"]}});
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["a", "b", "f"],
            "$deleteFromPrimitiveList/finalizers": ["c"], "finalizers": ["f"]}});
        strategic_merge("ConfigMap", &mut o, &patch).unwrap();
        assert_eq!(o["metadata"]["finalizers"], json!(["e", "a", "b", "f", "d"]));
    }

    #[test]
    fn malformed_directives_are_rejected_naming_where_they_are() {
        let svc = json!({"spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}});
        for (patch, at) in [
            (
                json!({"spec": {"$setElementOrder/ports": [{"port": 443}], "ports": [{"port": 80}]}}),
                "spec.$setElementOrder/ports",
            ),
            (json!({"spec": {"$setElementOrder/ports": [{"name": "x"}]}}), "spec.$setElementOrder/ports[0]"),
            (json!({"spec": {"$setElementOrder/ports": "80"}}), "spec.$setElementOrder/ports"),
            (json!({"spec": {"ports": [{"name": "no-key"}]}}), "spec.ports[0]"),
            (json!({"spec": {"ports": [{"port": 80, "$patch": "squash"}]}}), "spec.ports[0].$patch"),
            (json!({"spec": {"$patch": "merge"}}), "spec.$patch"),
            (json!({"spec": {"$retainKeys": ["ports"], "selector": {"c": "d"}}}), "spec.$retainKeys"),
            (json!({"spec": {"$retainKeys": "ports"}}), "spec.$retainKeys"),
            (
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "x"}}),
                "metadata.$deleteFromPrimitiveList/finalizers",
            ),
        ] {
            let err = strategic_merge("Service", &mut svc.clone(), &patch).unwrap_err().to_string();
            assert!(err.contains(&format!("{at}:")), "{patch}: {err}");
        }
    }

    #[test]
    fn lists_without_a_strategy_are_replaced_and_directives_honoured() {
        let mut o = json!({"data": {"a": "1", "b": "2"}, "items": [1, 2], "metadata": {"finalizers": ["x", "y"]}});
        let patch = json!({"items": [3], "data": {"$retainKeys": ["a"]}, "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}});
        strategic_merge("ConfigMap", &mut o, &patch).unwrap();
        assert_eq!(o["items"], json!([3]));
        assert_eq!(o["data"], json!({"a": "1"}));
        assert_eq!(o["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn json_patch_failures_change_nothing_even_a_moved_null() {
        let mut o = json!({"gone": null});
        let err = json_patch(&mut o, &json!([{"op": "move", "from": "/gone", "path": "/no/such/parent"}]));
        assert!(err.unwrap_err().to_string().contains("failed at path '/no/such/parent'"));
        assert_eq!(o, json!({"gone": null}));
    }

    #[test]
    fn json_patch_failures_change_nothing() {
        let mut o = json!({"spec": {"a": 1}});
        let err = json_patch(
            &mut o,
            &json!([{"op": "replace", "path": "/spec/a", "value": 2}, {"op": "test", "path": "/spec/a", "value": 9}]),
        );
        assert!(err.is_err());
        assert_eq!(o, json!({"spec": {"a": 1}}));
    }
}
