//! What the cluster says, reduced to what routing needs. Built from watch events; holds no channels.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use shifter_crds::normalise::{NormalisedSplit, SplitErrors};
use shifter_crds::route_group::{HTTPRouteGroup, HttpMatch};
use shifter_crds::{TrafficSplit, TrafficSplitStatus};

use super::gateway::{RouteInfo, RouteKey};
use crate::authority::Authority;

/// Namespace and name.
pub type Key = (String, String);

/// The label EndpointSlices carry naming their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInfo {
    pub ports: Vec<ServicePortInfo>,
    /// The Service's virtual addresses (`spec.clusterIPs`); empty for a headless Service.
    pub cluster_ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServicePortInfo {
    pub name: Option<String>,
    pub port: u16,
    /// `targetPort` when it is a number; used when no EndpointSlice names the port.
    pub target_number: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SliceInfo {
    pub service: String,
    /// Slice port name (None when unnamed) → port number on the endpoints.
    pub ports: Vec<(Option<String>, u16)>,
    pub endpoints: Vec<EndpointInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointInfo {
    pub address: String,
    pub name: String,
    pub zone: String,
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SplitInfo {
    pub name: String,
    pub service: String,
    pub generation: Option<i64>,
    /// Orders competing splits for one apex: the oldest wins.
    pub created: String,
    pub split: Result<NormalisedSplit, SplitErrors>,
    /// The Canary that owns this split, if any (for Events naming who changed it).
    pub canary_owner: Option<String>,
    pub uid: Option<String>,
    /// Status as last read from the API.
    pub status: Option<TrafficSplitStatus>,
    /// The field manager that last wrote the spec (e.g. `kubectl-patch`), from managedFields.
    pub spec_manager: Option<String>,
}

/// Everything the index knows.
#[derive(Debug, Default, Clone)]
pub struct ClusterState {
    pub services: BTreeMap<Key, ServiceInfo>,
    /// Keyed by the slice's own name.
    pub slices: BTreeMap<Key, SliceInfo>,
    pub splits: BTreeMap<Key, SplitInfo>,
    pub route_groups: BTreeMap<Key, Vec<HttpMatch>>,
    /// Gateway API HTTPRoutes and GRPCRoutes, translated.
    pub gateway_routes: BTreeMap<RouteKey, RouteInfo>,
    /// Every ClusterIP → its Service: what a sidecar's original destination resolves through.
    pub addresses: HashMap<IpAddr, Key>,
}

impl ClusterState {
    /// Adds or replaces the Service at `key`; whether anything changed.
    pub fn insert_service(&mut self, key: Key, info: ServiceInfo) -> bool {
        if self.services.get(&key) == Some(&info) {
            return false;
        }
        self.forget_addresses(&key);
        for ip in &info.cluster_ips {
            self.addresses.insert(*ip, key.clone());
        }
        self.services.insert(key, info);
        true
    }

    /// Removes the Service at `key`; whether it was there.
    pub fn remove_service(&mut self, key: &Key) -> bool {
        self.forget_addresses(key);
        self.services.remove(key).is_some()
    }

    /// Keeps only the Services `keep` says to.
    pub fn retain_services(&mut self, keep: impl Fn(&Key) -> bool) {
        self.services.retain(|k, _| keep(k));
        self.addresses.retain(|_, k| keep(k));
    }

    fn forget_addresses(&mut self, key: &Key) {
        if let Some(old) = self.services.get(key) {
            for ip in &old.cluster_ips {
                if self.addresses.get(ip) == Some(key) {
                    self.addresses.remove(ip);
                }
            }
        }
    }

    /// The authority a connection to `addr` means: the Service whose ClusterIP it is, at that
    /// port, when the Service has the port.
    pub fn authority_at(&self, addr: SocketAddr) -> Option<Authority> {
        let (namespace, service) = self.addresses.get(&addr.ip())?;
        self.services.get(&(namespace.clone(), service.clone()))?.port(addr.port())?;
        Some(Authority { namespace: namespace.clone(), service: service.clone(), port: addr.port() })
    }
}

pub fn key_of<K: ResourceExt>(obj: &K) -> Key {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

impl ServiceInfo {
    pub fn from_service(svc: &Service) -> Self {
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let port = u16::try_from(p.port).ok()?;
                let target_number = match &p.target_port {
                    Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
                    None => Some(port),
                    Some(IntOrString::String(_)) => None,
                };
                Some(ServicePortInfo { name: p.name.clone().filter(|n| !n.is_empty()), port, target_number })
            })
            .collect();
        let spec = svc.spec.as_ref();
        let listed = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
        let single = spec.and_then(|s| s.cluster_ip.clone()).into_iter();
        let cluster_ips = if listed.is_empty() { single.collect() } else { listed }
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .collect();
        ServiceInfo { ports, cluster_ips }
    }

    pub fn port(&self, number: u16) -> Option<&ServicePortInfo> {
        self.ports.iter().find(|p| p.port == number)
    }
}

impl SliceInfo {
    /// None when the slice names no Service.
    pub fn from_slice(slice: &EndpointSlice) -> Option<Self> {
        let service = slice.labels().get(SERVICE_NAME_LABEL)?.clone();
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone().filter(|n| !n.is_empty()), u16::try_from(p.port?).ok()?)))
            .collect();
        let endpoints = slice
            .endpoints
            .iter()
            .flat_map(|e| {
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                let name = e
                    .target_ref
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .or_else(|| e.hostname.clone())
                    .unwrap_or_default();
                let zone = e.zone.clone().unwrap_or_default();
                e.addresses.iter().map(move |a| EndpointInfo {
                    address: a.clone(),
                    name: name.clone(),
                    zone: zone.clone(),
                    ready,
                })
            })
            .collect();
        Some(SliceInfo { service, ports, endpoints })
    }
}

impl SplitInfo {
    pub fn from_split(ts: &TrafficSplit) -> Self {
        let value = serde_json::to_value(ts).unwrap_or_default();
        let canary_owner = ts
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "Canary" && o.api_version.starts_with("shifter.dev/"))
            .map(|o| o.name.clone());
        let spec_manager = last_spec_manager(&ts.metadata);
        SplitInfo {
            name: ts.name_any(),
            service: ts.spec.service.clone(),
            generation: ts.metadata.generation,
            created: ts.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            split: shifter_crds::normalise(&value),
            canary_owner,
            uid: ts.metadata.uid.clone(),
            status: ts.status.clone(),
            spec_manager,
        }
    }
}

pub fn route_group_matches(group: &HTTPRouteGroup) -> Vec<HttpMatch> {
    group.spec.matches.clone()
}

/// The field manager that last wrote `spec`: the newest managedFields entry, outside
/// subresources, that owns spec fields (e.g. `kubectl-patch`, `kubectl-client-side-apply`).
pub fn last_spec_manager(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|m| m.subresource.as_deref().unwrap_or("").is_empty())
        .filter(|m| m.fields_v1.as_ref().is_some_and(|f| f.0.get("f:spec").is_some()))
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone())
}
