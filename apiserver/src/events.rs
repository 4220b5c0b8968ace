//! `events.k8s.io/v1` Events are stored as core `v1` Events, as in Kubernetes, so an Event a
//! controller records through either API shows up in `kubectl get events` and in
//! `kubectl describe`. These functions map the fields between the two shapes.

use serde_json::{Map, Value, json};

/// (events.k8s.io/v1 field, core v1 field) pairs that only change name.
const RENAMED: [(&str, &str); 6] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
];

/// Fields with the same name in both versions.
const SHARED: [&str; 8] =
    ["metadata", "reason", "type", "eventTime", "series", "action", "related", "reportingInstance"];

/// events.k8s.io/v1 → core v1.
pub fn to_core(obj: Value) -> Value {
    let Value::Object(mut from) = obj else { return obj };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    for key in SHARED {
        if let Some(v) = from.remove(key) {
            out.insert(key.into(), v);
        }
    }
    for (new, old) in RENAMED {
        if let Some(v) = from.remove(new) {
            out.insert(old.into(), v);
        }
    }
    let count = from.remove("deprecatedCount").or_else(|| out.get("series").and_then(|s| s.get("count")).cloned());
    if let Some(c) = count {
        out.insert("count".into(), c);
    }
    Value::Object(out)
}

/// core v1 → events.k8s.io/v1.
pub fn from_core(obj: Value) -> Value {
    let Value::Object(mut from) = obj else { return obj };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    for key in SHARED {
        if let Some(v) = from.remove(key) {
            out.insert(key.into(), v);
        }
    }
    for (new, old) in RENAMED {
        if let Some(v) = from.remove(old) {
            out.insert(new.into(), v);
        }
    }
    if let Some(c) = from.remove("count") {
        out.insert("deprecatedCount".into(), c);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_v1_event_round_trips_through_core() {
        let e = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
            "regarding": {"kind": "TrafficSplit", "name": "web"}, "note": "weights 90/10", "reason": "WeightsChanged",
            "type": "Normal", "reportingController": "shifter", "reportingInstance": "shifter-0", "action": "Update",
            "eventTime": "2026-01-01T00:00:00.000000Z"});
        let core = to_core(e.clone());
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "weights 90/10");
        assert_eq!(core["reportingComponent"], "shifter");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(from_core(core), e);
    }
}
