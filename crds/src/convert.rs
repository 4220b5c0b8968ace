//! TrafficSplit conversion between served versions (see [`crate::traffic_split`] for why).
//!
//! Objects pass through the stored form (v1alpha4): quantities become integers at the smallest
//! power-of-1000 scale that keeps every share exact. What a target version cannot hold travels in
//! annotations so a round trip through any version returns the object unchanged:
//! - [`MATCHES_ANNOTATION`]: `spec.matches`, while the object is read at v1alpha1 or v1alpha2;
//! - [`QUANTITIES_ANNOTATION`]: the quantity spellings a v1alpha1 writer used, with the integer each
//!   became; reused on the way back only while that backend's integer is unchanged.

use serde_json::{Map, Value, json};

use crate::quantity::{QuantityError, parse_quantity, to_integer_weights};
use crate::traffic_split::{GROUP, STORED_VERSION, VERSIONS};

pub const MATCHES_ANNOTATION: &str = "split.shifter.dev/matches";
pub const QUANTITIES_ANNOTATION: &str = "split.shifter.dev/v1alpha1-weights";

/// Why an object cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    #[error("apiVersion {0:?} is not a served TrafficSplit version")]
    UnknownVersion(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

/// Converts a TrafficSplit object (as JSON) to `target_api_version`, e.g. `split.smi-spec.io/v1alpha1`.
pub fn convert(obj: Value, target_api_version: &str) -> Result<Value, ConversionError> {
    let source = version_of(obj.get("apiVersion").and_then(Value::as_str).unwrap_or(""))?;
    let target = version_of(target_api_version)?;
    if source == target {
        return Ok(obj);
    }
    let hub = to_hub(obj, source)?;
    from_hub(hub, target)
}

fn version_of(api_version: &str) -> Result<&'static str, ConversionError> {
    match api_version.split_once('/') {
        Some((GROUP, v)) => VERSIONS.iter().copied().find(|known| *known == v),
        _ => None,
    }
    .ok_or_else(|| ConversionError::UnknownVersion(api_version.to_string()))
}

fn to_hub(mut obj: Value, source: &str) -> Result<Value, ConversionError> {
    if source == "v1alpha1" {
        let backends = backends_mut(&mut obj);
        let mut parsed = Vec::new();
        let mut spelled = Vec::new();
        for (i, b) in backends.iter().enumerate() {
            let raw = b.get("weight").cloned().unwrap_or(Value::Null);
            let text = match &raw {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(invalid(
                        format!("spec.backends[{i}].weight"),
                        "required quantity such as \"500m\" or 90",
                    ));
                }
            };
            let n = parse_quantity(&text).map_err(|e| invalid(format!("spec.backends[{i}].weight"), e.to_string()))?;
            parsed.push(n);
            spelled.push(raw);
        }
        let ints = to_integer_weights(&parsed).map_err(|e| match e {
            QuantityError::Rescaled { index, .. } => invalid(format!("spec.backends[{index}].weight"), e.to_string()),
            _ => invalid("spec.backends".into(), e.to_string()),
        })?;
        let mut record = Vec::new();
        for ((b, w), text) in backends.iter_mut().zip(&ints).zip(spelled) {
            // Remember only spellings the default (the integer as a string) would not reproduce.
            if text != Value::String(w.to_string()) {
                let service = b.get("service").cloned().unwrap_or(Value::Null);
                record.push(json!({"service": service, "quantity": text, "weight": w}));
            }
            b["weight"] = json!(w);
        }
        if !record.is_empty() {
            set_annotation(&mut obj, QUANTITIES_ANNOTATION, Some(Value::Array(record).to_string()));
        }
    }
    if (source == "v1alpha1" || source == "v1alpha2")
        && let Some(raw) = take_annotation(&mut obj, MATCHES_ANNOTATION)
        && let Ok(matches @ Value::Array(_)) = serde_json::from_str::<Value>(&raw)
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.insert("matches".into(), matches);
    }
    obj["apiVersion"] = json!(format!("{GROUP}/{STORED_VERSION}"));
    Ok(obj)
}

fn from_hub(mut obj: Value, target: &str) -> Result<Value, ConversionError> {
    if target == "v1alpha1" || target == "v1alpha2" {
        let matches = obj.get_mut("spec").and_then(Value::as_object_mut).and_then(|s| s.remove("matches"));
        if let Some(m) = matches.filter(|m| m.as_array().is_some_and(|a| !a.is_empty())) {
            set_annotation(&mut obj, MATCHES_ANNOTATION, Some(m.to_string()));
        }
    }
    if target == "v1alpha1" {
        let remembered: Vec<Value> = take_annotation(&mut obj, QUANTITIES_ANNOTATION)
            .and_then(|raw| serde_json::from_str(&raw).ok())
            .unwrap_or_default();
        for b in backends_mut(&mut obj).iter_mut() {
            let weight = b.get("weight").cloned().unwrap_or(Value::Null);
            let service = b.get("service").cloned().unwrap_or(Value::Null);
            let spelled = remembered
                .iter()
                .find(|r| r.get("service") == Some(&service) && r.get("weight") == Some(&weight))
                .and_then(|r| r.get("quantity").cloned());
            b["weight"] = match (spelled, weight) {
                (Some(original), _) => original,
                (None, Value::Number(n)) => Value::String(n.to_string()),
                (None, other) => other,
            };
        }
    }
    obj["apiVersion"] = json!(format!("{GROUP}/{target}"));
    Ok(obj)
}

fn invalid(field: String, message: impl Into<String>) -> ConversionError {
    ConversionError::Invalid { field, message: message.into() }
}

fn backends_mut(obj: &mut Value) -> &mut Vec<Value> {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    if !spec.get("backends").is_some_and(Value::is_array) {
        spec["backends"] = json!([]);
    }
    spec["backends"].as_array_mut().expect("just set")
}

fn annotations_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("metadata")?.get_mut("annotations")?.as_object_mut()
}

fn take_annotation(obj: &mut Value, key: &str) -> Option<String> {
    let annotations = annotations_mut(obj)?;
    let value = annotations.remove(key).and_then(|v| v.as_str().map(str::to_string));
    if annotations.is_empty()
        && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.remove("annotations");
    }
    value
}

fn set_annotation(obj: &mut Value, key: &str, value: Option<String>) {
    let Some(value) = value else { return };
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = &mut obj["metadata"];
    if !meta.get("annotations").is_some_and(Value::is_object) {
        meta["annotations"] = json!({});
    }
    meta["annotations"][key] = Value::String(value);
}
