//! Field sets in Kubernetes' `FieldsV1` form (`f:spec`, `k:{"port":80}`, `v:"x"`, `.`): which
//! fields an object sets, and reading or removing a field by its path. Server-side apply and
//! `managedFields` bookkeeping ([`crate::apply`]) are built on these.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field's path as FieldsV1 tokens, e.g. `["f:spec", "f:ports", "k:{\"port\":80}", "f:name"]`.
pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// How a list is owned: whole, or element by element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    Atomic,
    /// Elements identified by these keys.
    Map(Vec<String>),
    /// Scalars identified by value.
    Set,
}

/// Tells which lists of one kind are associative: from the CRD schema's `x-kubernetes-list-type`,
/// or, for built-in kinds, the few lists this server knows to be keyed.
#[derive(Debug, Clone)]
pub struct ListKinds<'a> {
    pub kind: &'a str,
    pub schema: Option<&'a Value>,
}

impl ListKinds<'_> {
    pub fn at(&self, names: &[&str]) -> ListKind {
        match names {
            ["metadata", "finalizers"] => return ListKind::Set,
            ["metadata", "ownerReferences"] => return ListKind::Map(vec!["uid".into()]),
            _ => {}
        }
        if let Some(schema) = self.schema {
            let mut node = schema;
            for name in names {
                let next = node.get("items").unwrap_or(node);
                match next.pointer(&format!("/properties/{name}")) {
                    Some(n) => node = n,
                    None => return ListKind::Atomic,
                }
            }
            return match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListKind::Set,
                Some("map") => ListKind::Map(
                    node.get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                        .unwrap_or_default(),
                ),
                _ => ListKind::Atomic,
            };
        }
        match (self.kind, names) {
            ("Service", ["spec", "ports"]) => ListKind::Map(vec!["port".into(), "protocol".into()]),
            (_, ["status", "conditions"]) => ListKind::Map(vec!["type".into()]),
            _ => ListKind::Atomic,
        }
    }
}

/// The `k:` token naming a list element by its keys.
fn key_token(item: &Value, keys: &[String]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        match item.get(k) {
            Some(v) => {
                m.insert(k.clone(), v.clone());
            }
            // Kubernetes defaults Service port protocol to TCP before keying.
            None if k == "protocol" => {
                m.insert(k.clone(), json!("TCP"));
            }
            None => return None,
        }
    }
    Some(format!("k:{}", Value::Object(m)))
}

/// Every field `obj` sets, skipping what the server owns (`apiVersion`, `kind`, and metadata other
/// than labels, annotations, finalizers and ownerReferences).
pub fn field_set(obj: &Value, lists: &ListKinds<'_>) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else { return out };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for mk in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(mv) = v.get(mk) {
                        let mut path = vec!["f:metadata".to_string(), format!("f:{mk}")];
                        collect(mv, &mut path, &mut vec!["metadata", mk], lists, &mut out);
                    }
                }
            }
            _ => collect(v, &mut vec![format!("f:{k}")], &mut vec![k.as_str()], lists, &mut out),
        }
    }
    out
}

/// Each member of an object, as `f:<name>` under `path`.
fn collect_members<'v>(
    m: &'v serde_json::Map<String, Value>,
    path: &mut Path,
    names: &mut Vec<&'v str>,
    lists: &ListKinds<'_>,
    out: &mut FieldSet,
) {
    for (k, v) in m {
        path.push(format!("f:{k}"));
        names.push(k);
        collect(v, path, names, lists, out);
        names.pop();
        path.pop();
    }
}

fn collect<'v>(value: &'v Value, path: &mut Path, names: &mut Vec<&'v str>, lists: &ListKinds<'_>, out: &mut FieldSet) {
    match value {
        Value::Object(m) if !m.is_empty() => collect_members(m, path, names, lists, out),
        Value::Array(items) if !items.is_empty() => match lists.at(names) {
            ListKind::Atomic => {
                out.insert(path.clone());
            }
            ListKind::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Map(keys) => {
                for item in items {
                    let Some(token) = key_token(item, &keys) else {
                        out.insert(path.clone());
                        continue;
                    };
                    path.push(token);
                    out.insert(path.clone());
                    if let Some(m) = item.as_object() {
                        collect_members(m, path, names, lists, out);
                    }
                    path.pop();
                }
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

fn element_matches(item: &Value, token: &str) -> bool {
    if let Some(raw) = token.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(raw) else { return false };
        keys.iter().all(|(k, v)| item.get(k) == Some(v) || (k == "protocol" && item.get(k).is_none() && v == "TCP"))
    } else if let Some(raw) = token.strip_prefix("v:") {
        serde_json::from_str::<Value>(raw).is_ok_and(|v| &v == item)
    } else {
        false
    }
}

/// The value at `path`, if the object has it.
pub fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = obj;
    for token in path {
        node = match token.strip_prefix("f:") {
            Some(name) => node.get(name)?,
            None => node.as_array()?.iter().find(|item| element_matches(item, token))?,
        };
    }
    Some(node)
}

/// Removes the field at `path`; empty parent maps are left in place, as Kubernetes does.
pub fn remove(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut node = obj;
    for token in parents {
        let next = match token.strip_prefix("f:") {
            Some(name) => node.get_mut(name),
            None => node.as_array_mut().and_then(|a| a.iter_mut().find(|item| element_matches(item, token))),
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    match last.strip_prefix("f:") {
        Some(name) => {
            if let Some(m) = node.as_object_mut() {
                m.remove(name);
            }
        }
        None => {
            if let Some(a) = node.as_array_mut() {
                a.retain(|item| !element_matches(item, last));
            }
        }
    }
}

/// Encodes a field set as a FieldsV1 object.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for token in path {
            let child = node.entry(token.clone()).or_insert_with(|| json!({}));
            node = child.as_object_mut().expect("fieldsV1 nodes are objects");
        }
        let is_element = path.last().is_some_and(|t| t.starts_with("k:"));
        if is_element {
            node.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

/// Decodes a FieldsV1 object into a field set.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, path: &mut Path, out: &mut FieldSet) {
        for (token, child) in node {
            if token == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(token.clone());
            match child.as_object() {
                Some(m) if !m.is_empty() => walk(m, path, out),
                _ => {
                    out.insert(path.clone());
                }
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Some(m) = v.as_object() {
        walk(m, &mut Vec::new(), &mut out);
    }
    out
}

/// `.spec.ports[port=80,protocol="TCP"].name`, the way conflict messages print a path.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for token in path {
        if let Some(name) = token.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(raw) = token.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(raw).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(raw) = token.strip_prefix("v:") {
            out.push_str(&format!("[={raw}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sets_round_trip_through_fields_v1() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"ports": [{"port": 80, "name": "http"}], "selector": {"app": "web"}}});
        let lists = ListKinds { kind: "Service", schema: None };
        let set = field_set(&svc, &lists);
        let v1 = to_fields_v1(&set);
        assert_eq!(v1["f:spec"]["f:ports"]["k:{\"port\":80,\"protocol\":\"TCP\"}"]["f:name"], json!({}));
        assert_eq!(from_fields_v1(&v1), set);
        let port = set.iter().find(|p| p.last().unwrap() == "f:name" && p.len() == 4).unwrap();
        assert_eq!(get(&svc, port), Some(&json!("http")));
        assert_eq!(display(port), ".spec.ports[port=80,protocol=\"TCP\"].name");
    }

    #[test]
    fn remove_deletes_map_fields_and_list_elements() {
        let mut o = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"x": 1, "y": 2}});
        remove(&mut o, &["f:spec".into(), "f:x".into()]);
        remove(&mut o, &["f:metadata".into(), "f:finalizers".into(), "v:\"a\"".into()]);
        assert_eq!(o, json!({"metadata": {"finalizers": ["b"]}, "spec": {"y": 2}}));
    }
}
