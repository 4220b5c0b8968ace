//! Object metadata rules shared by every kind (names, labels) and the defaulting the built-in
//! kinds get from a real API server (Service cluster IPs and ports, Secret `stringData`,
//! Namespace phase).

use std::collections::HashSet;

use base64::Engine;
use serde_json::{Value, json};

use crate::error::FieldError;
use crate::resources::ResourceInfo;
use crate::store::Txn;

fn dns_label(s: &str, first_letter: bool) -> Option<String> {
    let ok_chars = s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let first = s.chars().next();
    let starts_ok =
        first.is_some_and(|c| if first_letter { c.is_ascii_lowercase() } else { c.is_ascii_alphanumeric() });
    let ends_ok = s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if s.is_empty() || s.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    if !(ok_chars && starts_ok && ends_ok) {
        let what = if first_letter { "a DNS-1035 label" } else { "a lowercase RFC 1123 label" };
        let start = if first_letter {
            "start with an alphabetic character"
        } else {
            "start and end with an alphanumeric character"
        };
        return Some(format!(
            "{what} must consist of lower case alphanumeric characters or '-', and must {start} (e.g. 'my-name', or '123-abc')"
        ));
    }
    None
}

fn dns_subdomain(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    let ok = s.split('.').all(|part| {
        !part.is_empty()
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric())
    });
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')".to_string()
    })
}

/// Checks `metadata.name` by the rule of its kind.
pub fn validate_name(res: &ResourceInfo, name: &str) -> Option<FieldError> {
    let problem = match (res.group.as_str(), res.plural.as_str()) {
        ("", "namespaces") => dns_label(name, false),
        ("", "services") => dns_label(name, true),
        _ => dns_subdomain(name),
    };
    problem.map(|why| FieldError::invalid("metadata.name", &json!(name), why))
}

fn label_value_ok(v: &str) -> bool {
    v.len() <= 63
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && (v.is_empty()
            || (v.starts_with(|c: char| c.is_ascii_alphanumeric()) && v.ends_with(|c: char| c.is_ascii_alphanumeric())))
}

fn qualified_name_ok(k: &str) -> bool {
    let (prefix, name) = k.rsplit_once('/').unwrap_or(("", k));
    (prefix.is_empty() || dns_subdomain(prefix).is_none()) && !name.is_empty() && label_value_ok(name)
}

/// Label keys and values, annotation keys.
pub fn validate_metadata(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    for (field, ty) in
        [("labels", "object"), ("annotations", "object"), ("finalizers", "array"), ("ownerReferences", "array")]
    {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(_)) if ty == "object" => {}
            Some(Value::Array(_)) if ty == "array" => {}
            Some(other) => errs.push(FieldError::type_invalid(format!("metadata.{field}"), other, ty)),
        }
    }
    for (i, f) in meta.get("finalizers").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if !f.is_string() {
            errs.push(FieldError::type_invalid(format!("metadata.finalizers[{i}]"), f, "string"));
        }
    }
    for (k, v) in obj.pointer("/metadata/labels").and_then(Value::as_object).into_iter().flatten() {
        if !qualified_name_ok(k) {
            errs.push(FieldError::invalid("metadata.labels", &json!(k), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        }
        match v.as_str() {
            Some(s) if label_value_ok(s) => {}
            _ => errs.push(FieldError::invalid(format!("metadata.labels.{k}"), v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (max 63 characters)")),
        }
    }
    for (k, v) in obj.pointer("/metadata/annotations").and_then(Value::as_object).into_iter().flatten() {
        if !qualified_name_ok(k) {
            errs.push(FieldError::invalid(
                "metadata.annotations",
                &json!(k),
                "name part must consist of alphanumeric characters, '-', '_' or '.'",
            ));
        }
        if !v.is_string() {
            errs.push(FieldError::type_invalid(format!("metadata.annotations.{k}"), v, "string"));
        }
    }
    errs
}

/// Defaults and checks a built-in kind the way its real API server strategy does.
pub fn prepare(res: &ResourceInfo, obj: &mut Value, old: Option<&Value>, txn: &Txn<'_>) -> Vec<FieldError> {
    match (res.group.as_str(), res.plural.as_str()) {
        ("", "services") => service(obj, old, txn),
        ("", "secrets") => secret(obj),
        ("", "namespaces") => {
            let name = obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), name);
                }
            }
            if obj.pointer("/status/phase").is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn service(obj: &mut Value, old: Option<&Value>, txn: &Txn<'_>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    if spec.get("type").is_none() {
        spec["type"] = json!("ClusterIP");
    }
    for (k, v) in [
        ("sessionAffinity", json!("None")),
        ("internalTrafficPolicy", json!("Cluster")),
        ("ipFamilies", json!(["IPv4"])),
        ("ipFamilyPolicy", json!("SingleStack")),
    ] {
        if spec.get(k).is_none() {
            spec[k] = v;
        }
    }
    for (i, port) in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten().enumerate() {
        if !port.is_object() {
            errs.push(FieldError::type_invalid(format!("spec.ports[{i}]"), port, "object"));
            continue;
        }
        match port.get("port").and_then(Value::as_i64) {
            Some(p) if (1..=65535).contains(&p) => {
                if port.get("targetPort").is_none() {
                    port["targetPort"] = json!(p);
                }
            }
            _ => errs.push(FieldError::invalid(
                format!("spec.ports[{i}].port"),
                port.get("port").unwrap_or(&Value::Null),
                "must be between 1 and 65535, inclusive",
            )),
        }
        if port.get("protocol").is_none() {
            port["protocol"] = json!("TCP");
        }
    }
    let kept = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
    match (spec.get("clusterIP").cloned(), kept) {
        (_, Some(ip)) => {
            spec["clusterIP"] = ip.clone();
            spec["clusterIPs"] = json!([ip]);
        }
        (Some(ip), None) => spec["clusterIPs"] = json!([ip]),
        (None, None) if spec["type"] != "ExternalName" => {
            let ip = allocate_ip(txn);
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        }
        _ => {}
    }
    if obj.get("status").is_none() {
        obj["status"] = json!({"loadBalancer": {}});
    }
    errs
}

/// A free address in 10.96.0.0/16 (10.96.0.1 is left for the `kubernetes` service by convention).
fn allocate_ip(txn: &Txn<'_>) -> String {
    let used: HashSet<String> = txn
        .list("/services", None)
        .iter()
        .filter_map(|(_, s)| s.pointer("/spec/clusterIP").and_then(Value::as_str).map(str::to_string))
        .collect();
    let start: u32 = rand::random_range(2..65_000);
    (0..65_534u32)
        .map(|i| 2 + (start + i) % 65_532)
        .map(|n| format!("10.96.{}.{}", n / 256, n % 256))
        .find(|ip| !used.contains(ip) && !ip.ends_with(".0") && !ip.ends_with(".255"))
        .unwrap_or_else(|| "10.96.255.254".into())
}

fn secret(obj: &mut Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if obj.get("type").is_none() {
        obj["type"] = json!("Opaque");
    }
    let engine = base64::engine::general_purpose::STANDARD;
    if !obj.get("data").is_none_or(Value::is_object) {
        errs.push(FieldError::type_invalid("data", &obj["data"], "object"));
        return errs;
    }
    if let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        if obj.get("data").is_none() {
            obj["data"] = json!({});
        }
        for (k, v) in string_data.as_object().into_iter().flatten() {
            let text = v.as_str().unwrap_or_default();
            obj["data"][k] = json!(engine.encode(text));
        }
    }
    for (k, v) in obj.get("data").and_then(Value::as_object).into_iter().flatten() {
        if v.as_str().is_none_or(|s| engine.decode(s).is_err()) {
            errs.push(FieldError::invalid(format!("data[{k}]"), v, "must be base64-encoded bytes"));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    #[test]
    fn names_follow_each_kinds_dns_rule() {
        let reg = Registry::default();
        let svc = reg.get("", "services").unwrap();
        let ns = reg.get("", "namespaces").unwrap();
        let cm = reg.get("", "configmaps").unwrap();
        assert!(validate_name(&cm, "my.config-1").is_none());
        assert!(validate_name(&cm, "My_Config").is_some());
        assert!(validate_name(&ns, "a.b").is_some());
        assert!(validate_name(&svc, "1web").is_some());
        assert!(validate_name(&svc, "web-1").is_none());
        assert!(validate_name(&cm, &"a".repeat(254)).is_some());
    }

    #[test]
    fn bad_labels_are_reported() {
        let o = json!({"metadata": {"labels": {"app": "web", "bad key!": "x", "v": "-x-"}}});
        assert_eq!(validate_metadata(&o).len(), 2);
    }
}
