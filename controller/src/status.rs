//! TrafficSplit status and weight-change Events, written only by the leader.
//!
//! Status is computed from the index and proxy acknowledgements, compared with what the API last
//! showed, and written with server-side apply under one field manager only when it differs — so
//! running the writer twice on the same state writes nothing and records no Event. A weight-change
//! Event is recorded after the status that remembers the new weights is written: a new leader reads
//! those weights from status and never repeats the Event.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use shifter_crds::conditions::{condition, set_condition};
use shifter_crds::traffic_split::BackendStatus;
use shifter_crds::{TrafficSplit, TrafficSplitStatus};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::Authority;
use crate::events::EventRecorder;
use crate::fence::{Fence, WriteError};
use crate::index::{Check, Index, Key, RouteKey, SplitInfo, SplitReport, gateway};
use crate::lease::Leadership;
use crate::metrics::ControllerMetrics;
use crate::telemetry::TelemetryStore;

/// The one field manager shifter writes status with.
pub const FIELD_MANAGER: &str = "shifter-controller";

/// Proxies running the current routing for a split's apex: (in sync, reporting).
pub type ProxySync = (u32, u32);

/// The status a split should have, keeping condition transition times from `info.status`.
pub fn desired_status(info: &SplitInfo, report: &SplitReport, proxies: ProxySync) -> TrafficSplitStatus {
    let generation = info.generation;
    let mut status = info.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let cond = |type_: &str, check: &Check, ok_reason: &str, ok_message: String| match check {
        Ok(()) => condition(type_, true, ok_reason, ok_message, generation),
        Err((reason, message)) => condition(type_, false, reason, message.clone(), generation),
    };
    set_condition(&mut status.conditions, cond("Accepted", &report.accepted, "Accepted", "the split is valid".into()));
    set_condition(
        &mut status.conditions,
        cond("ResolvedRefs", &report.resolved_refs, "ResolvedRefs", "every backend and route group was found".into()),
    );
    let (in_sync, connected) = proxies;
    let programmed: Check = if report.accepted.is_err() || !report.active {
        Err(("NotAccepted", "the split is not routing; see the Accepted condition".into()))
    } else if in_sync < connected {
        Err(("Pending", format!("{in_sync}/{connected} proxies run the current routing")))
    } else {
        Ok(())
    };
    let ok_message = if connected == 0 {
        format!("routing is ready; no proxy serves {} yet, and any that connects gets it at once", info.service)
    } else {
        format!("{in_sync}/{connected} proxies run the current routing")
    };
    set_condition(&mut status.conditions, cond("Programmed", &programmed, "Programmed", ok_message));
    status.backends = report
        .backends
        .iter()
        .map(|b| BackendStatus {
            service: b.service.clone(),
            weight: Some(b.weight),
            percent: b.percent,
            reason: b.reason.map(str::to_string),
        })
        .collect();
    status.split = (!report.backends.is_empty()).then(|| {
        report
            .backends
            .iter()
            .map(|b| format!("{}={}%", b.service, format_percent(b.percent)))
            .collect::<Vec<_>>()
            .join(" ")
    });
    status.proxies = Some(format!("{in_sync}/{connected}"));
    status.proxies_connected = Some(connected);
    status.proxies_in_sync = Some(in_sync);
    status
}

fn format_percent(p: f64) -> String {
    if (p - p.round()).abs() < 1e-9 { format!("{}", p.round() as i64) } else { format!("{p:.2}") }
}

/// The Event note for a weight change, or None when the weights did not change.
pub fn weight_change(info: &SplitInfo, desired: &TrafficSplitStatus) -> Option<String> {
    let before: Vec<(String, Option<u64>)> =
        info.status.iter().flat_map(|s| s.backends.iter().map(|b| (b.service.clone(), b.weight))).collect();
    let after: Vec<(String, Option<u64>)> = desired.backends.iter().map(|b| (b.service.clone(), b.weight)).collect();
    if before == after || after.is_empty() {
        return None;
    }
    let old = |service: &str| before.iter().find(|(s, _)| s == service).and_then(|(_, w)| *w);
    let changes: Vec<String> = after
        .iter()
        .map(|(service, w)| match (old(service), w) {
            (Some(o), Some(n)) if o != *n => format!("{service} {o}→{n}"),
            (None, Some(n)) => format!("{service} {n}"),
            (_, Some(n)) => format!("{service} {n}"),
            (_, None) => service.clone(),
        })
        .collect();
    let removed: Vec<String> = before
        .iter()
        .filter(|(s, _)| !after.iter().any(|(a, _)| a == s))
        .map(|(s, _)| format!("{s} removed"))
        .collect();
    let who = match (&info.canary_owner, &info.spec_manager) {
        (Some(canary), _) => format!("Canary {canary}"),
        (None, Some(manager)) => manager.clone(),
        (None, None) => "unknown".into(),
    };
    let verb = if before.is_empty() { "weights set" } else { "weights changed" };
    Some(format!("{verb}: {} by {who}", changes.into_iter().chain(removed).collect::<Vec<_>>().join(", ")))
}

/// Writes split status and Events while this replica leads.
#[derive(Clone)]
pub struct StatusWriter {
    pub client: Client,
    pub index: Arc<Index>,
    pub telemetry: Arc<TelemetryStore>,
    pub metrics: Arc<ControllerMetrics>,
    pub leadership: watch::Receiver<Leadership>,
    /// Every write checks it: only a replica that can prove it leads writes.
    pub fence: Fence,
    pub identity: String,
}

impl StatusWriter {
    /// Runs under `supervisor` (task `status`).
    pub fn spawn(self, supervisor: &crate::supervise::Supervisor) {
        supervisor.spawn("status", tracing::info_span!("status"), move || {
            let writer = self.clone();
            async move {
                writer.run().await;
                Ok(())
            }
        });
    }

    async fn run(mut self) {
        let recorder = EventRecorder::new(self.client.clone(), FIELD_MANAGER, self.identity.clone());
        let mut changes = self.index.changes();
        let mut written: HashMap<Key, TrafficSplitStatus> = HashMap::new();
        let mut written_routes: HashMap<RouteKey, Vec<Value>> = HashMap::new();
        loop {
            tokio::select! {
                _ = changes.changed() => tokio::time::sleep(Duration::from_millis(20)).await,
                _ = self.leadership.changed() => {
                    written.clear();
                    written_routes.clear();
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            changes.borrow_and_update();
            if !self.leadership.borrow().is_leader {
                continue;
            }
            for key in self.index.split_keys() {
                if !self.leadership.borrow().is_leader {
                    break;
                }
                let started = Instant::now();
                match self.reconcile(&recorder, &key, &mut written).await {
                    Ok(()) => {}
                    Err(WriteError::Fenced) => debug!("status not written: leadership is not proven"),
                    Err(error) => {
                        self.metrics.reconcile_errors.fetch_add(1, Ordering::Relaxed);
                        warn!(%error, split = %format!("{}/{}", key.0, key.1), "status update failed");
                    }
                }
                self.metrics.reconciles.fetch_add(1, Ordering::Relaxed);
                self.metrics.reconcile_duration.observe(started.elapsed());
            }
            written.retain(|k, _| self.index.split(k).is_some());
            for key in self.index.route_keys() {
                if !self.leadership.borrow().is_leader {
                    break;
                }
                match self.reconcile_route(&key, &mut written_routes).await {
                    Ok(()) => {}
                    Err(WriteError::Fenced) => debug!("route status not written: leadership is not proven"),
                    Err(error) => {
                        self.metrics.reconcile_errors.fetch_add(1, Ordering::Relaxed);
                        warn!(%error, route = %format!("{}/{}", key.0, key.2), kind = key.1.kind(), "route status update failed");
                    }
                }
            }
            written_routes.retain(|k, _| self.index.gateway_route(k).is_some());
        }
    }

    /// Writes a Gateway API route's `status.parents` when shifter's entries should change; the
    /// other controllers' entries are carried over as they were read.
    async fn reconcile_route(
        &self,
        key: &RouteKey,
        written: &mut HashMap<RouteKey, Vec<Value>>,
    ) -> Result<(), WriteError> {
        let Some((info, reports)) = self.index.gateway_route(key) else { return Ok(()) };
        let desired = gateway::desired_parents(&info, &reports);
        if info.status_parents == desired || written.get(key) == Some(&desired) {
            return Ok(());
        }
        let (ns, kind, name) = key;
        let resource = gateway::api_resource(*kind);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
        let patch = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "status": {"parents": desired},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.fence.write(api.patch_status(name, &params, &Patch::Apply(&patch))).await?;
        self.metrics.status_writes.fetch_add(1, Ordering::Relaxed);
        debug!(route = %name, kind = kind.kind(), "route status written");
        written.insert(key.clone(), desired);
        Ok(())
    }

    fn proxy_sync(&self, namespace: &str, service: &str) -> ProxySync {
        let mut total = (0, 0);
        for raw in self.telemetry.authorities() {
            let Ok(authority) = raw.parse::<Authority>() else { continue };
            if authority.namespace != namespace || authority.service != service {
                continue;
            }
            let (in_sync, connected) = self.telemetry.sync(&raw, &self.index.digest_for(&authority));
            total = (total.0 + in_sync, total.1 + connected);
        }
        total
    }

    async fn reconcile(
        &self,
        recorder: &EventRecorder,
        key: &Key,
        written: &mut HashMap<Key, TrafficSplitStatus>,
    ) -> Result<(), WriteError> {
        let Some((info, report)) = self.index.split(key) else { return Ok(()) };
        let desired = desired_status(&info, &report, self.proxy_sync(&key.0, &info.service));
        if info.status.as_ref() == Some(&desired) || written.get(key) == Some(&desired) {
            return Ok(());
        }
        let api: Api<TrafficSplit> = Api::namespaced(self.client.clone(), &key.0);
        let patch = json!({"apiVersion": "split.smi-spec.io/v1alpha4", "kind": "TrafficSplit", "status": desired});
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.fence.write(api.patch_status(&key.1, &params, &Patch::Apply(&patch))).await?;
        self.metrics.status_writes.fetch_add(1, Ordering::Relaxed);
        debug!(split = %key.1, "status written");
        written.insert(key.clone(), desired.clone());
        if let Some(note) = weight_change(&info, &desired) {
            let reference = ObjectReference {
                api_version: Some("split.smi-spec.io/v1alpha4".into()),
                kind: Some("TrafficSplit".into()),
                name: Some(key.1.clone()),
                namespace: Some(key.0.clone()),
                uid: info.uid.clone(),
                ..Default::default()
            };
            self.fence.write(recorder.record(&reference, false, "WeightsChanged", "Route", &note)).await?;
            self.metrics.events.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use shifter_crds::conditions::is_true;

    use super::*;
    use crate::index::resolve::BackendReport;

    fn info(status: Option<TrafficSplitStatus>) -> SplitInfo {
        SplitInfo {
            name: "web".into(),
            service: "web".into(),
            generation: Some(3),
            created: String::new(),
            split: Err(shifter_crds::SplitErrors(vec![])),
            canary_owner: None,
            uid: None,
            status,
            spec_manager: Some("kubectl-patch".into()),
        }
    }

    fn report(weights: &[(&str, u64, f64)]) -> SplitReport {
        SplitReport {
            accepted: Ok(()),
            resolved_refs: Ok(()),
            backends: weights
                .iter()
                .map(|(s, w, p)| BackendReport { service: s.to_string(), weight: *w, percent: *p, reason: None })
                .collect(),
            active: true,
        }
    }

    #[test]
    fn status_is_stable_when_nothing_changed() {
        let r = report(&[("web-v1", 90, 90.0), ("web-v2", 10, 10.0)]);
        let first = desired_status(&info(None), &r, (2, 2));
        assert_eq!(first.observed_generation, Some(3));
        assert_eq!(first.split.as_deref(), Some("web-v1=90% web-v2=10%"));
        assert_eq!(first.proxies.as_deref(), Some("2/2"));
        assert!(is_true(&first.conditions, "Programmed"));
        let again = desired_status(&info(Some(first.clone())), &r, (2, 2));
        assert_eq!(again, first, "a second run on the same state changes nothing");
        assert_eq!(weight_change(&info(Some(first.clone())), &again), None, "and records no Event");
    }

    #[test]
    fn programmed_waits_for_every_proxy() {
        let s = desired_status(&info(None), &report(&[("web-v1", 1, 100.0)]), (1, 3));
        let programmed = s.conditions.iter().find(|c| c.type_ == "Programmed").unwrap();
        assert_eq!((programmed.status.as_str(), programmed.reason.as_str()), ("False", "Pending"));
        assert!(programmed.message.contains("1/3"));
    }

    #[test]
    fn a_weight_change_names_old_new_and_who() {
        let before = desired_status(&info(None), &report(&[("web-v1", 90, 90.0), ("web-v2", 10, 10.0)]), (0, 0));
        let after =
            desired_status(&info(Some(before.clone())), &report(&[("web-v1", 80, 80.0), ("web-v2", 20, 20.0)]), (0, 0));
        let note = weight_change(&info(Some(before)), &after).unwrap();
        assert_eq!(note, "weights changed: web-v1 90→80, web-v2 10→20 by kubectl-patch");
        let mut owned = info(None);
        owned.canary_owner = Some("web".into());
        assert!(weight_change(&owned, &after).unwrap().ends_with("by Canary web"));
    }

    #[test]
    fn a_rejected_split_says_why_in_conditions() {
        let mut r = report(&[]);
        r.accepted = Err(("AllWeightsZero", "spec.backends: every weight is 0".into()));
        r.active = false;
        let s = desired_status(&info(None), &r, (0, 0));
        let accepted = s.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
        assert_eq!((accepted.status.as_str(), accepted.reason.as_str()), ("False", "AllWeightsZero"));
        assert!(!is_true(&s.conditions, "Programmed"));
    }
}
