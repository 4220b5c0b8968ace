//! `meta.k8s.io/v1` Tables, what `kubectl get` asks for: a Name column, then the resource's
//! printer columns (a CRD's `additionalPrinterColumns`, evaluated with the simple JSONPath forms
//! CRDs use), then Age.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::resources::ResourceInfo;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    /// `[?(@.a.b=="v")]`
    Filter(Vec<String>, Value),
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                steps.push(Step::Field(r[..end].to_string()));
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = r[..end].trim();
            // A filter may itself contain `]`-free text only, so the first `]` closes it.
            steps.push(if inner == "*" {
                Step::All
            } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                let (lhs, rhs) = f.split_once("==")?;
                let fields = lhs.trim().strip_prefix("@.")?.split('.').map(str::to_string).collect();
                let rhs = rhs.trim();
                let value = if let Some(s) = rhs.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    json!(s)
                } else if let Some(s) = rhs.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                    json!(s)
                } else {
                    serde_json::from_str(rhs).ok()?
                };
                Step::Filter(fields, value)
            } else if let Some(name) = inner.strip_prefix('\'').and_then(|n| n.strip_suffix('\'')) {
                Step::Field(name.to_string())
            } else {
                Step::Index(inner.parse().ok()?)
            });
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Field(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    Some(steps)
}

/// Evaluates a JSONPath of the forms CRD printer columns use; unknown forms yield nothing.
pub fn evaluate<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let Some(steps) = parse(path) else { return Vec::new() };
    let mut current = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name)),
                Step::Index(i) => next.extend(v.get(*i)),
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(fields, want) => {
                    for item in v.as_array().into_iter().flatten() {
                        let got = fields.iter().try_fold(item, |node, f| node.get(f));
                        if got == Some(want) {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current
}

/// Kubernetes' human-readable age: `45s`, `3m20s`, `5h`, `2d3h`, `400d`, `2y10d`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    let pair = |a: i64, ua: &str, b: i64, ub: &str| if b == 0 { format!("{a}{ua}") } else { format!("{a}{ua}{b}{ub}") };
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        pair(m, "m", secs % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        pair(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        pair(d, "d", h % 24, "h")
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        pair(d / 365, "y", d % 365, "d")
    } else {
        format!("{}y", d / 365)
    }
}

struct Column {
    name: String,
    ty: String,
    format: String,
    description: String,
    priority: i64,
    path: String,
}

fn columns(res: &ResourceInfo, version: &str) -> Vec<Column> {
    let col = |name: &str, ty: &str, path: &str, description: &str| Column {
        name: name.into(),
        ty: ty.into(),
        format: String::new(),
        description: description.into(),
        priority: 0,
        path: path.into(),
    };
    let mut cols = vec![Column {
        format: "name".into(),
        ..col("Name", "string", ".metadata.name", "Name must be unique within a namespace.")
    }];
    let printer = res.version(version).map(|v| v.printer_columns.clone()).unwrap_or_default();
    if res.custom {
        if printer.is_empty() {
            cols.push(col("Age", "date", ".metadata.creationTimestamp", "Time since creation"));
        }
        for p in printer {
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            cols.push(Column {
                name: s("name"),
                ty: s("type"),
                format: s("format"),
                description: s("description"),
                priority: p.get("priority").and_then(Value::as_i64).unwrap_or(0),
                path: s("jsonPath"),
            });
        }
        return cols;
    }
    // The columns Kubernetes prints for the built-in kinds; `=name` paths are computed in `derived`.
    match res.plural.as_str() {
        "services" => {
            cols.push(col("Type", "string", ".spec.type", "The type of service."));
            cols.push(col("Cluster-IP", "string", ".spec.clusterIP", "The cluster IP of the service."));
            cols.push(col("External-IP", "string", "=external-ip", "The external IPs of the service."));
            cols.push(col("Port(s)", "string", "=ports", "The ports of the service."));
        }
        "configmaps" => cols.push(col("Data", "integer", "=data-count", "Number of data keys.")),
        "secrets" => {
            cols.push(col("Type", "string", ".type", "The type of secret."));
            cols.push(col("Data", "integer", "=data-count", "Number of data keys."));
        }
        "endpointslices" => {
            cols.push(col("AddressType", "string", ".addressType", "Type of address."));
            cols.push(col("Ports", "string", ".ports[*].port", "Ports of the slice."));
            cols.push(col("Endpoints", "string", "=endpoints", "Addresses of the endpoints."));
        }
        "namespaces" => cols.push(col("Status", "string", ".status.phase", "The phase of the namespace.")),
        "leases" => cols.push(col("Holder", "string", ".spec.holderIdentity", "The holder of the lease.")),
        "events" => {
            let name = Column { priority: 1, ..cols.remove(0) };
            return vec![
                col("Last Seen", "string", "=last-seen", "Time since the event was last seen."),
                col("Type", "string", ".type", "Normal or Warning."),
                col("Reason", "string", ".reason", "Why the event happened."),
                col("Object", "string", "=object", "The object the event is about."),
                col("Message", "string", "=message", "What happened."),
                name,
            ];
        }
        _ => {}
    }
    cols.push(col("Age", "date", ".metadata.creationTimestamp", "Time since creation"));
    cols
}

fn age(stamp: Option<&Value>, now: DateTime<Utc>) -> Value {
    match stamp.and_then(Value::as_str).and_then(|s| DateTime::parse_from_rfc3339(s).ok()) {
        Some(t) => json!(human_duration((now - t.with_timezone(&Utc)).num_seconds())),
        None => Value::Null,
    }
}

/// Cells no JSONPath can express.
fn derived(obj: &Value, what: &str, now: DateTime<Utc>) -> Value {
    let strs = |path: &str| -> Vec<String> {
        evaluate(obj, path).iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect()
    };
    let none_or = |list: Vec<String>| if list.is_empty() { json!("<none>") } else { json!(list.join(",")) };
    match what {
        "=ports" => none_or(
            obj.pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(node) => format!("{}:{node}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect(),
        ),
        "=external-ip" => none_or(strs(".status.loadBalancer.ingress[*].ip")),
        "=data-count" => {
            let count = |k: &str| obj.get(k).and_then(Value::as_object).map_or(0, |m| m.len());
            json!(count("data") + count("binaryData"))
        }
        "=endpoints" => {
            let all = strs(".endpoints[*].addresses[*]");
            let mut shown: Vec<String> = all.iter().take(3).cloned().collect();
            if all.len() > 3 {
                shown.push(format!("+ {} more...", all.len() - 3));
            }
            none_or(shown)
        }
        "=object" => {
            let r = obj.get("involvedObject").or_else(|| obj.get("regarding")).cloned().unwrap_or_default();
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_lowercase();
            json!(format!("{}/{}", s("kind"), r.get("name").and_then(Value::as_str).unwrap_or("")))
        }
        "=message" => obj.get("message").or_else(|| obj.get("note")).cloned().unwrap_or(Value::Null),
        "=last-seen" => {
            let stamp = [
                "/series/lastObservedTime",
                "/lastTimestamp",
                "/deprecatedLastTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .find_map(|p| obj.pointer(p).filter(|v| v.is_string()));
            age(stamp, now)
        }
        _ => Value::Null,
    }
}

fn cell(obj: &Value, c: &Column, now: DateTime<Utc>) -> Value {
    if c.path.starts_with('=') {
        return derived(obj, &c.path, now);
    }
    let found = evaluate(obj, &c.path);
    if found.is_empty() {
        return Value::Null;
    }
    if c.ty == "date" {
        return age(Some(found[0]), now);
    }
    if found.len() == 1 && matches!(c.ty.as_str(), "integer" | "number" | "boolean") {
        return found[0].clone();
    }
    let text: Vec<String> = found
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    json!(text.join(","))
}

/// How much of each object a Table row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(raw: Option<&str>) -> Include {
        match raw {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// Builds a Table of `objects` (already at `version`).
pub fn table(res: &ResourceInfo, version: &str, objects: &[Value], include: Include, list_meta: Value) -> Value {
    let cols = columns(res, version);
    let now = Utc::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cols.iter().map(|c| cell(o, c, now)).collect::<Vec<_>>()});
            match include {
                Include::None => {}
                Include::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or(json!({}))});
                }
                Include::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": cols.iter().map(|c| json!({"name": c.name, "type": c.ty, "format": c.format,
            "description": c.description, "priority": c.priority})).collect::<Vec<_>>(),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_the_jsonpath_forms_crds_use() {
        let o = json!({"spec": {"service": "web", "matches": [{"name": "a"}, {"name": "b"}]},
            "status": {"conditions": [{"type": "Accepted", "status": "True"}, {"type": "Programmed", "status": "False"}]}});
        assert_eq!(evaluate(&o, ".spec.service"), [&json!("web")]);
        assert_eq!(evaluate(&o, ".status.conditions[?(@.type==\"Programmed\")].status"), [&json!("False")]);
        assert_eq!(evaluate(&o, ".spec.matches[*].name"), [&json!("a"), &json!("b")]);
        assert_eq!(evaluate(&o, ".spec.matches[1].name"), [&json!("b")]);
        assert!(evaluate(&o, ".status.split").is_empty());
    }

    #[test]
    fn built_in_kinds_print_like_kubectl() {
        let reg = crate::resources::Registry::default();
        let svc = json!({"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.9", "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443}]}});
        let t = table(&reg.get("", "services").unwrap(), "v1", &[svc], Include::None, json!({}));
        let names: Vec<&str> =
            t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]);
        assert_eq!(t["rows"][0]["cells"][3], "<none>");
        assert_eq!(t["rows"][0]["cells"][4], "80/TCP,443/TCP");
        let ev = json!({"metadata": {"name": "web.1"}, "type": "Normal", "reason": "WeightsChanged",
            "regarding": {"kind": "TrafficSplit", "name": "web"}, "note": "web-v1 90→50"});
        let t = table(&reg.get("events.k8s.io", "events").unwrap(), "v1", &[ev], Include::None, json!({}));
        assert_eq!(
            t["rows"][0]["cells"],
            json!([null, "Normal", "WeightsChanged", "trafficsplit/web", "web-v1 90→50", "web.1"])
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600 * 5), "5h");
        assert_eq!(human_duration(86400 * 2 + 3600 * 3), "2d3h");
        assert_eq!(human_duration(86400 * 400), "400d");
    }
}
