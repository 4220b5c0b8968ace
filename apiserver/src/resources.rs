//! What the server serves: the built-in kinds plus every resource a stored CRD defines, with what
//! discovery, validation, tables and conversion need to know about each.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::error::{ApiError, FieldError};

/// One served version of a resource.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub name: String,
    /// `openAPIV3Schema`, for custom resources.
    pub schema: Option<Value>,
    /// `additionalPrinterColumns`, for custom resources.
    pub printer_columns: Vec<Value>,
}

/// How objects move between served versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Only `apiVersion` changes.
    None,
    /// SMI TrafficSplit: `shifter_crds::convert`, in-process, in place of the CRD's webhook.
    TrafficSplit,
    /// `events.k8s.io/v1` Events, stored as core `v1` Events.
    EventsV1,
}

/// Everything known about one resource (one group + plural).
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub group: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// Served versions, most preferred first.
    pub versions: Vec<VersionInfo>,
    pub storage_version: String,
    pub status_subresource: bool,
    /// Defined by a CustomResourceDefinition (JSON merge patch only, schema enforced).
    pub custom: bool,
    pub conversion: Conversion,
    /// Stored with another resource (`group/plural`), as events.k8s.io Events are with core Events.
    pub store_as: Option<String>,
}

impl ResourceInfo {
    /// The key objects of this resource are stored under.
    pub fn store_key(&self) -> String {
        self.store_as.clone().unwrap_or_else(|| format!("{}/{}", self.group, self.plural))
    }

    /// Converts an object written at any served version to the stored form.
    pub fn to_storage(&self, obj: Value) -> Result<Value, ApiError> {
        match self.conversion {
            Conversion::EventsV1 => Ok(crate::events::to_core(obj)),
            _ => self.convert(obj, &self.storage_version),
        }
    }

    /// Converts a stored object to `version` of this resource.
    pub fn from_storage(&self, obj: Value, version: &str) -> Result<Value, ApiError> {
        match self.conversion {
            Conversion::EventsV1 => Ok(crate::events::from_core(obj)),
            _ => self.convert(obj, version),
        }
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() { version.to_string() } else { format!("{}/{version}", self.group) }
    }

    pub fn version(&self, name: &str) -> Option<&VersionInfo> {
        self.versions.iter().find(|v| v.name == name)
    }

    pub fn preferred_version(&self) -> &str {
        &self.versions[0].name
    }

    /// `trafficsplits.split.smi-spec.io`, as error messages name the resource.
    pub fn qualified(&self) -> String {
        crate::error::qualified(&self.plural, &self.group)
    }

    /// Converts an object (at any served version of this resource) to `version`.
    pub fn convert(&self, obj: Value, version: &str) -> Result<Value, ApiError> {
        let target = self.api_version(version);
        if obj.get("apiVersion").and_then(Value::as_str) == Some(target.as_str()) {
            return Ok(obj);
        }
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        match self.conversion {
            Conversion::TrafficSplit => shifter_crds::convert::convert(obj, &target).map_err(|e| match e {
                shifter_crds::convert::ConversionError::Invalid { field, message } => {
                    ApiError::invalid(&self.group, &self.kind, &name, vec![FieldError::rule(field, message)])
                }
                other => ApiError::Internal(format!("conversion webhook for {}: {other}", self.qualified())),
            }),
            Conversion::None | Conversion::EventsV1 => {
                let mut obj = obj;
                obj["apiVersion"] = json!(target);
                Ok(obj)
            }
        }
    }
}

const ALL_VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The verbs every resource supports.
pub fn verbs() -> Value {
    json!(ALL_VERBS)
}

fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if matches!(plural, "services" | "configmaps" | "secrets") && group.is_empty() {
            vec!["all".into()]
        } else {
            Vec::new()
        },
        namespaced,
        versions: vec![VersionInfo { name: version.into(), schema: None, printer_columns: Vec::new() }],
        storage_version: version.into(),
        status_subresource: status,
        custom: false,
        conversion: Conversion::None,
        store_as: None,
    }
}

/// A built-in resource checked against the schema of its Kubernetes type.
fn typed<T: schemars::JsonSchema>(mut info: ResourceInfo) -> ResourceInfo {
    info.versions[0].schema = Some(crate::builtin_schema::schema_of::<T>());
    info
}

fn builtins() -> Vec<ResourceInfo> {
    use k8s_openapi::api::{coordination, core, discovery, events};
    vec![
        typed::<core::v1::Namespace>(builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true)),
        typed::<core::v1::Service>(builtin("", "v1", "services", "Service", true, &["svc"], true)),
        typed::<core::v1::ConfigMap>(builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false)),
        typed::<core::v1::Secret>(builtin("", "v1", "secrets", "Secret", true, &[], false)),
        typed::<core::v1::Event>(builtin("", "v1", "events", "Event", true, &["ev"], false)),
        typed::<discovery::v1::EndpointSlice>(builtin(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
            &[],
            false,
        )),
        typed::<events::v1::Event>(ResourceInfo {
            conversion: Conversion::EventsV1,
            store_as: Some("/events".into()),
            ..builtin("events.k8s.io", "v1", "events", "Event", true, &["ev"], false)
        }),
        typed::<coordination::v1::Lease>(builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[], false)),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
        ),
    ]
}

/// Kubernetes' version priority: GA before beta before alpha, higher numbers first.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn rank(v: &str) -> (u8, u64, u64) {
        let Some(rest) = v.strip_prefix('v') else { return (0, 0, 0) };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(major) = digits.parse::<u64>() else { return (0, 0, 0) };
        let tail = &rest[digits.len()..];
        let (level, minor) = if tail.is_empty() {
            (3, 0)
        } else if let Some(n) = tail.strip_prefix("beta") {
            (2, n.parse().unwrap_or(0))
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (1, n.parse().unwrap_or(0))
        } else {
            (0, 0)
        };
        (level, major, minor)
    }
    rank(b).cmp(&rank(a)).then_with(|| a.cmp(b))
}

/// Builds the resource a CRD defines, or says which field of the CRD is wrong.
pub fn from_crd(crd: &Value) -> Result<ResourceInfo, Vec<FieldError>> {
    let mut errs = Vec::new();
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let text = |v: &Value, path: &str, field: &str, errs: &mut Vec<FieldError>| -> String {
        match v.pointer(path).and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => {
                errs.push(FieldError::required(field));
                String::new()
            }
        }
    };
    let group = text(&spec, "/group", "spec.group", &mut errs);
    let plural = text(&spec, "/names/plural", "spec.names.plural", &mut errs);
    let kind = text(&spec, "/names/kind", "spec.names.kind", &mut errs);
    let scope = text(&spec, "/scope", "spec.scope", &mut errs);
    if !scope.is_empty() && scope != "Namespaced" && scope != "Cluster" {
        errs.push(FieldError::not_supported("spec.scope", &json!(scope), &[json!("Cluster"), json!("Namespaced")]));
    }
    let name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid("metadata.name", &json!(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    let strings = |path: &str| -> Vec<String> {
        spec.pointer(path)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut versions = Vec::new();
    let mut storage = Vec::new();
    let mut status_subresource = false;
    for (i, v) in spec.get("versions").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let vname = v.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        if vname.is_empty() {
            errs.push(FieldError::required(format!("spec.versions[{i}].name")));
        }
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage.push(vname.clone());
        }
        if let Some(schema) = v.pointer("/schema/openAPIV3Schema")
            && !schema.is_object()
        {
            errs.push(FieldError::type_invalid(format!("spec.versions[{i}].schema.openAPIV3Schema"), schema, "object"));
        }
        if v.pointer("/subresources/status").is_some() {
            status_subresource = true;
        }
        if v.get("served").and_then(Value::as_bool) != Some(false) {
            versions.push(VersionInfo {
                name: vname,
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
    }
    if versions.is_empty() {
        errs.push(FieldError::invalid("spec.versions", &json!([]), "must have at least one served version"));
    }
    if storage.len() != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            &json!(storage),
            "must have exactly one version marked as storage version",
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    versions.sort_by(|a, b| compare_versions(&a.name, &b.name));
    let conversion =
        if group == shifter_crds::traffic_split::GROUP { Conversion::TrafficSplit } else { Conversion::None };
    Ok(ResourceInfo {
        singular: spec
            .pointer("/names/singular")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase()),
        short_names: strings("/names/shortNames"),
        categories: strings("/names/categories"),
        namespaced: scope == "Namespaced",
        storage_version: storage.remove(0),
        status_subresource,
        custom: true,
        conversion,
        store_as: None,
        versions,
        group,
        plural,
        kind,
    })
}

/// The resources currently served, keyed by (group, plural).
#[derive(Debug)]
pub struct Registry {
    resources: RwLock<BTreeMap<(String, String), Arc<ResourceInfo>>>,
}

impl Default for Registry {
    fn default() -> Self {
        let map = builtins().into_iter().map(|r| ((r.group.clone(), r.plural.clone()), Arc::new(r))).collect();
        Registry { resources: RwLock::new(map) }
    }
}

impl Registry {
    pub fn get(&self, group: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.read().get(&(group.to_string(), plural.to_string())).cloned()
    }

    /// The resource served at `group/version` under `plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.get(group, plural).filter(|r| r.version(version).is_some())
    }

    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        self.read().values().cloned().collect()
    }

    /// Registers (or replaces) a custom resource; returns the resource it replaced.
    pub fn register(&self, info: ResourceInfo) -> Option<Arc<ResourceInfo>> {
        let key = (info.group.clone(), info.plural.clone());
        self.resources.write().unwrap_or_else(|p| p.into_inner()).insert(key, Arc::new(info))
    }

    pub fn unregister(&self, group: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        let mut map = self.resources.write().unwrap_or_else(|p| p.into_inner());
        match map.get(&(group.to_string(), plural.to_string())) {
            Some(r) if r.custom => map.remove(&(group.to_string(), plural.to_string())),
            _ => None,
        }
    }

    /// Groups with their served versions (most preferred first), core group first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.all() {
            let versions = groups.entry(r.group.clone()).or_default();
            for v in &r.versions {
                if !versions.contains(&v.name) {
                    versions.push(v.name.clone());
                }
            }
        }
        groups
            .into_iter()
            .map(|(g, mut vs)| {
                vs.sort_by(|a, b| compare_versions(a, b));
                (g, vs)
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<(String, String), Arc<ResourceInfo>>> {
        self.resources.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v1", "v1beta1", "v1alpha4", "v2", "v1alpha2"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(v, ["v2", "v1", "v1beta1", "v1alpha4", "v1alpha2", "v1alpha1"]);
    }

    #[test]
    fn traffic_split_crd_serves_every_version_and_stores_v1alpha4() {
        let crds = shifter_crds::all_crds();
        let ts = serde_json::to_value(&crds[0]).unwrap();
        let info = from_crd(&ts).unwrap();
        assert_eq!(info.kind, "TrafficSplit");
        assert_eq!(info.storage_version, "v1alpha4");
        assert_eq!(info.preferred_version(), "v1alpha4");
        assert_eq!(info.versions.len(), 4);
        assert_eq!(info.short_names, ["ts"]);
        assert!(info.status_subresource && info.namespaced);
        assert_eq!(info.conversion, Conversion::TrafficSplit);
    }
}
