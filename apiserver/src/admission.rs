//! In-process validating admission: rules the schema cannot express, checked on every write of
//! an object (not its status), registered per group and kind. [`shifter`] registers shifter's own
//! rules for TrafficSplit and Canary; the API server needs no webhook for them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::error::FieldError;

/// Validates objects of one kind. `obj` is the object as written (at its request version, after
/// schema defaulting); every problem names its field.
pub trait Admission: Send + Sync {
    fn validate(&self, obj: &Value) -> Vec<FieldError>;
}

/// The hooks in force, by (group, kind).
#[derive(Clone, Default)]
pub struct AdmissionChain {
    hooks: HashMap<(String, String), Vec<Arc<dyn Admission>>>,
}

impl std::fmt::Debug for AdmissionChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.hooks.keys()).finish()
    }
}

impl AdmissionChain {
    pub fn register(&mut self, group: &str, kind: &str, hook: Arc<dyn Admission>) {
        self.hooks.entry((group.to_string(), kind.to_string())).or_default().push(hook);
    }

    pub fn validate(&self, group: &str, kind: &str, obj: &Value) -> Vec<FieldError> {
        self.hooks
            .get(&(group.to_string(), kind.to_string()))
            .into_iter()
            .flatten()
            .flat_map(|h| h.validate(obj))
            .collect()
    }

    /// No hooks: objects are checked against their schemas alone, as on a cluster without
    /// shifter's webhook.
    pub fn none() -> Self {
        AdmissionChain::default()
    }

    /// A chain with shifter's rules for TrafficSplit and Canary.
    pub fn shifter() -> Self {
        let mut chain = AdmissionChain::default();
        chain.register(shifter_crds::traffic_split::GROUP, "TrafficSplit", Arc::new(shifter::TrafficSplitRules));
        chain.register("shifter.dev", "Canary", Arc::new(shifter::CanaryRules));
        chain
    }
}

/// shifter's own admission rules.
pub mod shifter {
    use super::*;

    /// Every TrafficSplit must normalise: backends named once, weights numeric and not all zero.
    pub struct TrafficSplitRules;

    impl Admission for TrafficSplitRules {
        fn validate(&self, obj: &Value) -> Vec<FieldError> {
            match shifter_crds::normalise(obj) {
                Ok(_) => Vec::new(),
                Err(errs) => errs.0.into_iter().map(|e| FieldError::rule(e.field, e.message)).collect(),
            }
        }
    }

    /// Cross-field Canary rules (steps only go up, stable differs from canary, durations parse).
    pub struct CanaryRules;

    impl Admission for CanaryRules {
        fn validate(&self, obj: &Value) -> Vec<FieldError> {
            let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
            match serde_json::from_value::<shifter_crds::CanarySpec>(spec) {
                Ok(spec) => shifter_crds::canary::validate(&spec)
                    .into_iter()
                    .map(|m| match m.split_once(": ") {
                        Some((field, message)) if field.starts_with("spec") => FieldError::rule(field, message),
                        _ => FieldError::rule("spec", m),
                    })
                    .collect(),
                Err(e) => vec![FieldError::rule("spec", e.to_string())],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn all_zero_weights_and_duplicates_name_their_fields() {
        let chain = AdmissionChain::shifter();
        let split = json!({"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "metadata": {"name": "w"},
            "spec": {"service": "web", "backends": [{"service": "a", "weight": 0}, {"service": "a", "weight": 0}]}});
        let errs = chain.validate("split.smi-spec.io", "TrafficSplit", &split);
        assert!(errs.iter().any(|e| e.field.starts_with("spec.backends")), "{errs:?}");
        assert!(errs.len() >= 2, "{errs:?}");
        let ok = json!({"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "metadata": {"name": "w"},
            "spec": {"service": "web", "backends": [{"service": "a", "weight": 1}]}});
        assert!(chain.validate("split.smi-spec.io", "TrafficSplit", &ok).is_empty());
        assert!(chain.validate("", "ConfigMap", &ok).is_empty());
    }

    #[test]
    fn canary_with_stable_equal_to_canary_is_rejected() {
        let chain = AdmissionChain::shifter();
        let c = json!({"spec": {"service": "web", "stable": "web-v1", "canary": "web-v1"}});
        let errs = chain.validate("shifter.dev", "Canary", &c);
        assert!(errs.iter().any(|e| e.field == "spec.canary"), "{errs:?}");
    }
}
