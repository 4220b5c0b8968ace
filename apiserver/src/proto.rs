//! Just enough of Kubernetes' protobuf encoding to accept what kubectl's typed clients send:
//! `kubectl create namespace|configmap|secret|service` post protobuf bodies and do not fall back
//! to JSON. Objects of these kinds are decoded into their JSON form; any other protobuf body is
//! refused with 415 Unsupported Media Type.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// `k8s\0`, the prefix of every Kubernetes protobuf body.
const MAGIC: [u8; 4] = [0x6b, 0x38, 0x73, 0x00];

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn bad(why: &str) -> ApiError {
    ApiError::BadRequest(format!("malformed protobuf body: {why}"))
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(bad("varint too long"))
}

/// Every (field number, value) of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ApiError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let wire = match tag & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                pos += if tag & 7 == 1 { 8 } else { 4 };
                Wire::Fixed
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end =
                    pos.checked_add(len).filter(|e| *e <= buf.len()).ok_or_else(|| bad("field runs past the end"))?;
                let bytes = &buf[pos..end];
                pos = end;
                Wire::Bytes(bytes)
            }
            _ => return Err(bad("unsupported wire type")),
        };
        out.push((tag >> 3, wire));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8"))
}

/// A `map<string, string>` (or bytes values, base64-encoded as JSON does) entry.
fn map_entry(b: &[u8], bytes_value: bool, into: &mut Map<String, Value>) -> Result<(), ApiError> {
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(x)) => k = text(x)?,
            (2, Wire::Bytes(x)) if bytes_value => v = json!(base64::engine::general_purpose::STANDARD.encode(x)),
            (2, Wire::Bytes(x)) => v = json!(text(x)?),
            _ => {}
        }
    }
    into.insert(k, v);
    Ok(())
}

/// Decodes one message with `spec` saying how each field number maps to JSON.
fn message(b: &[u8], spec: &[(u64, &str, Kind)]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for (n, w) in fields(b)? {
        let Some((_, name, kind)) = spec.iter().find(|(f, _, _)| *f == n) else { continue };
        let name = name.to_string();
        match (kind, w) {
            // Go's encoder writes empty strings too; in JSON they are simply absent.
            (Kind::Str, Wire::Bytes([])) => {}
            (Kind::Str, Wire::Bytes(x)) => {
                out.insert(name, json!(text(x)?));
            }
            // Zero numbers and false booleans are Go's defaults, omitted from JSON.
            (Kind::Int | Kind::Bool, Wire::Varint(0)) => {}
            (Kind::Int, Wire::Varint(v)) => {
                out.insert(name, json!(v as i64));
            }
            (Kind::Bool, Wire::Varint(v)) => {
                out.insert(name, json!(v != 0));
            }
            (Kind::Strs, Wire::Bytes(x)) => {
                let list = out.entry(name).or_insert_with(|| json!([]));
                list.as_array_mut().expect("list").push(json!(text(x)?));
            }
            (Kind::StrMap | Kind::BytesMap, Wire::Bytes(x)) => {
                let map = out.entry(name).or_insert_with(|| json!({}));
                map_entry(x, matches!(kind, Kind::BytesMap), map.as_object_mut().expect("map"))?;
            }
            (Kind::Msg(sub), Wire::Bytes(x)) => {
                out.insert(name, message(x, sub)?);
            }
            (Kind::Msgs(sub), Wire::Bytes(x)) => {
                let list = out.entry(name).or_insert_with(|| json!([]));
                list.as_array_mut().expect("list").push(message(x, sub)?);
            }
            (Kind::IntOrString, Wire::Bytes(x)) => {
                let v = message(x, INT_OR_STRING)?;
                let value = match v.get("type").and_then(Value::as_i64) {
                    Some(1) => v.get("strVal").cloned().unwrap_or(json!("")),
                    _ => v.get("intVal").cloned().unwrap_or(json!(0)),
                };
                out.insert(name, value);
            }
            _ => return Err(bad(&format!("field {name} has an unexpected wire type"))),
        }
    }
    Ok(Value::Object(out))
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    Strs,
    StrMap,
    BytesMap,
    IntOrString,
    Msg(&'static [(u64, &'static str, Kind)]),
    Msgs(&'static [(u64, &'static str, Kind)]),
}

type Spec = &'static [(u64, &'static str, Kind)];

const TYPE_META: Spec = &[(1, "apiVersion", Kind::Str), (2, "kind", Kind::Str)];
const UNKNOWN: Spec = &[(1, "typeMeta", Kind::Msg(TYPE_META))];
const OWNER_REF: Spec = &[
    (1, "kind", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
    (5, "apiVersion", Kind::Str),
    (6, "controller", Kind::Bool),
    (7, "blockOwnerDeletion", Kind::Bool),
];
const OBJECT_META: Spec = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (5, "uid", Kind::Str),
    (6, "resourceVersion", Kind::Str),
    (11, "labels", Kind::StrMap),
    (12, "annotations", Kind::StrMap),
    (13, "ownerReferences", Kind::Msgs(OWNER_REF)),
    (14, "finalizers", Kind::Strs),
];
const INT_OR_STRING: Spec = &[(1, "type", Kind::Int), (2, "intVal", Kind::Int), (3, "strVal", Kind::Str)];
const SERVICE_PORT: Spec = &[
    (1, "name", Kind::Str),
    (2, "protocol", Kind::Str),
    (3, "port", Kind::Int),
    (4, "targetPort", Kind::IntOrString),
    (5, "nodePort", Kind::Int),
];
const SERVICE_SPEC: Spec = &[
    (1, "ports", Kind::Msgs(SERVICE_PORT)),
    (2, "selector", Kind::StrMap),
    (3, "clusterIP", Kind::Str),
    (4, "type", Kind::Str),
    (10, "externalName", Kind::Str),
];
const NAMESPACE: Spec =
    &[(1, "metadata", Kind::Msg(OBJECT_META)), (2, "spec", Kind::Msg(&[(1, "finalizers", Kind::Strs)]))];
const CONFIG_MAP: Spec = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::StrMap),
    (3, "binaryData", Kind::BytesMap),
    (4, "immutable", Kind::Bool),
];
const SECRET: Spec = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::BytesMap),
    (3, "type", Kind::Str),
    (4, "stringData", Kind::StrMap),
    (5, "immutable", Kind::Bool),
];
const SERVICE: Spec = &[(1, "metadata", Kind::Msg(OBJECT_META)), (2, "spec", Kind::Msg(SERVICE_SPEC))];

/// Decodes a Kubernetes protobuf body of a kind this server understands.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let unsupported = |what: &str| {
        ApiError::UnsupportedMediaType(format!(
            "protobuf bodies are accepted only for Namespace, ConfigMap, Secret and Service ({what}); send application/json"
        ))
    };
    let envelope = body.strip_prefix(&MAGIC).ok_or_else(|| bad("missing the k8s protobuf prefix"))?;
    let unknown = message(envelope, UNKNOWN)?;
    let raw = fields(envelope)?
        .into_iter()
        .find_map(|(n, w)| match (n, w) {
            (2, Wire::Bytes(x)) => Some(x),
            _ => None,
        })
        .unwrap_or_default();
    let api_version = unknown.pointer("/typeMeta/apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = unknown.pointer("/typeMeta/kind").and_then(Value::as_str).unwrap_or("");
    let spec = match (api_version, kind) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "Service") => SERVICE,
        _ => return Err(unsupported(&format!("got {api_version} {kind}"))),
    };
    let mut obj = message(raw, spec)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(n: u64, wire: u8) -> u8 {
        ((n << 3) as u8) | wire
    }

    fn bytes_field(n: u64, b: &[u8]) -> Vec<u8> {
        let mut out = vec![tag(n, 2), b.len() as u8];
        out.extend_from_slice(b);
        out
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        [bytes_field(1, k.as_bytes()), bytes_field(2, v)].concat()
    }

    #[test]
    fn decodes_a_secret_as_kubectl_create_secret_sends_it() {
        let meta = [
            bytes_field(1, b"creds"),
            bytes_field(2, b""),
            bytes_field(3, b"default"),
            bytes_field(11, &entry("app", b"web")),
        ]
        .concat();
        let secret =
            [bytes_field(1, &meta), bytes_field(2, &entry("password", b"s3cret")), bytes_field(3, b"Opaque")].concat();
        let type_meta = [bytes_field(1, b"v1"), bytes_field(2, b"Secret")].concat();
        let body = [MAGIC.to_vec(), bytes_field(1, &type_meta), bytes_field(2, &secret)].concat();
        let obj = decode(&body).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "creds", "namespace": "default", "labels": {"app": "web"}},
                "data": {"password": "czNjcmV0"}})
        );
    }

    #[test]
    fn other_kinds_and_garbage_are_refused() {
        let type_meta = [bytes_field(1, b"apps/v1"), bytes_field(2, b"Deployment")].concat();
        let body = [MAGIC.to_vec(), bytes_field(1, &type_meta)].concat();
        assert!(matches!(decode(&body), Err(ApiError::UnsupportedMediaType(_))));
        assert!(matches!(decode(b"k8s\0\x0a\xff"), Err(ApiError::BadRequest(_))));
        assert!(matches!(decode(b"{}"), Err(ApiError::BadRequest(_))));
    }
}
