//! The leader-only Canary reconciler: reads each Canary and its TrafficSplit, calls due webhooks
//! and the analysis engine, runs one [`machine::advance`], then writes status (the decision) before
//! the split (its effect), so a crash in between is repaired from status on the next tick and
//! never jumps a step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use shifter_analysis::{Analyzer, AnalyzerConfig, AnyProvider, Target};
use shifter_crds::TrafficSplit;
use shifter_crds::canary::{
    BackendStats, COMMAND_ANNOTATION, Canary, CanaryPhase, CanaryStatus, OpaqueState, VerdictResult,
};
use shifter_crds::duration::parse_duration;
use tokio::sync::watch;
use tracing::{Instrument, warn};

use super::machine::{self, Command, SplitObservation, Tick, TickVerdict, stable_of};
use super::webhooks;
use crate::events::EventRecorder;
use crate::lease::Leadership;
use crate::metrics::ControllerMetrics;
use crate::telemetry::TelemetryStore;

/// The field manager for splits a Canary owns.
pub const SPLIT_MANAGER: &str = "shifter-canary";
/// Consecutive metrics-source errors tolerated before they count as a failed check.
pub const ERROR_LIMIT: u32 = 3;
/// Telemetry younger than this may still be arriving and is not judged yet.
const FLUSH_DELAY_S: i64 = 2;

pub struct CanaryController {
    pub client: Client,
    pub telemetry: Arc<TelemetryStore>,
    pub metrics: Arc<ControllerMetrics>,
    pub leadership: watch::Receiver<Leadership>,
    pub identity: String,
}

struct Running {
    analyzer: Analyzer,
    /// The rollout the analyzer belongs to (`status.rolloutStartedAt`).
    rollout: String,
}

fn now_s() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

impl CanaryController {
    pub fn spawn(self) {
        tokio::spawn(self.run().instrument(tracing::info_span!("canaries")));
    }

    async fn run(self) {
        let (store, writer) = reflector::store::<Canary>();
        let api: Api<Canary> = Api::all(self.client.clone());
        let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()).default_backoff());
        tokio::spawn(stream.applied_objects().for_each(|_| async {}));
        let recorder = EventRecorder::new(self.client.clone(), "shifter-controller", self.identity.clone());
        let http = reqwest::Client::builder().user_agent("shifter-canary").build().expect("HTTP client");
        let mut running: HashMap<(String, String), Running> = HashMap::new();
        let mut last_tick: HashMap<(String, String), i64> = HashMap::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !self.leadership.borrow().is_leader {
                running.clear();
                last_tick.clear();
                continue;
            }
            for canary in store_state(&store) {
                let key = (canary.namespace().unwrap_or_default(), canary.name_any());
                let interval = canary
                    .spec
                    .analysis
                    .interval
                    .as_deref()
                    .and_then(|i| parse_duration(i).ok())
                    .unwrap_or(Duration::from_secs(10));
                let status = canary.status.clone().unwrap_or_default();
                let pending = canary
                    .annotations()
                    .get(COMMAND_ANNOTATION)
                    .is_some_and(|c| status.last_command.as_ref() != Some(c));
                let spec_changed = status.observed_generation != canary.metadata.generation;
                let due = last_tick.get(&key).is_none_or(|t| now_s() - t >= interval.as_secs().max(1) as i64);
                if !(due || pending || spec_changed) {
                    continue;
                }
                last_tick.insert(key.clone(), now_s());
                if let Err(error) = self.reconcile(&canary, &mut running, &recorder, &http).await {
                    warn!(%error, canary = %format!("{}/{}", key.0, key.1), "canary reconcile failed");
                }
            }
            let live: Vec<(String, String)> =
                store_state(&store).iter().map(|c| (c.namespace().unwrap_or_default(), c.name_any())).collect();
            running.retain(|k, _| live.contains(k));
            last_tick.retain(|k, _| live.contains(k));
            self.metrics.retain_canaries(&live);
        }
    }

    async fn reconcile(
        &self,
        canary: &Canary,
        running: &mut HashMap<(String, String), Running>,
        recorder: &EventRecorder,
        http: &reqwest::Client,
    ) -> Result<(), kube::Error> {
        let ns = canary.namespace().unwrap_or_default();
        let name = canary.name_any();
        let key = (ns.clone(), name.clone());
        let spec = &canary.spec;
        let status = canary.status.clone().unwrap_or_default();
        let now = now_s();
        let canaries: Api<Canary> = Api::namespaced(self.client.clone(), &ns);
        let reference = ObjectReference {
            api_version: Some("shifter.dev/v1alpha1".into()),
            kind: Some("Canary".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: canary.uid(),
            ..Default::default()
        };

        let problems = shifter_crds::canary::validate(spec);
        if !problems.is_empty() {
            let mut s = status.clone();
            s.observed_generation = canary.metadata.generation;
            let message = problems.join("; ");
            shifter_crds::conditions::set_condition(
                &mut s.conditions,
                shifter_crds::conditions::condition(
                    "Progressing",
                    false,
                    "InvalidSpec",
                    message,
                    canary.metadata.generation,
                ),
            );
            if s != status {
                write_status(&canaries, &name, &s).await?;
            }
            return Ok(());
        }

        let splits: Api<TrafficSplit> = Api::namespaced(self.client.clone(), &ns);
        let split = splits.get_opt(&spec.service).await?;
        let observation = observe_split(split.as_ref(), spec, &status);
        let command = canary
            .annotations()
            .get(COMMAND_ANNOTATION)
            .filter(|c| status.last_command.as_ref() != Some(*c))
            .and_then(|c| parse_command(c).map(|cmd| (cmd, c.clone())));

        // Webhooks due in the state before this tick.
        let due = machine::webhooks_due(spec, &status);
        let calls = due.iter().map(|hook| {
            let body = webhooks::body(&name, &ns, spec, &status, hook);
            async move { webhooks::call(http, hook, &body).await }
        });
        let outcomes = join_all(calls).await;

        // Analysis, while traffic is on the canary of the current rollout.
        let analysing = matches!(status.phase, CanaryPhase::Progressing | CanaryPhase::WaitingConfirmation)
            && status.canary_weight > 0
            && status.canary.as_deref() == Some(spec.canary.as_str());
        let target = Target {
            namespace: ns.clone(),
            service: spec.service.clone(),
            stable: stable_of(spec, &status),
            canary: spec.canary.clone(),
        };
        let verdict = if analysing {
            let rollout = status.rollout_started_at.clone().unwrap_or_default();
            let run = match running.remove(&key) {
                Some(r) if r.rollout == rollout => Some(r),
                _ => start_analyzer(&target, spec, &status, &rollout, now),
            };
            match run {
                Some(mut r) => {
                    let provider = AnyProvider::from_spec(&spec.analysis.provider, self.telemetry.clone());
                    let verdict = match provider {
                        Ok(p) => {
                            let v = r.analyzer.tick(&p, now - FLUSH_DELAY_S).await;
                            let errors = r.analyzer.state().consecutive_errors;
                            Some(to_tick_verdict(v.result, v.reason, errors))
                        }
                        Err(e) => Some(TickVerdict { result: VerdictResult::Error, reason: e.to_string() }),
                    };
                    running.insert(key.clone(), r);
                    verdict
                }
                None => None,
            }
        } else {
            None
        };

        let tick = Tick {
            now,
            generation: canary.metadata.generation,
            spec,
            status: &status,
            split: observation.clone(),
            verdict: verdict.clone(),
            webhooks: outcomes,
            command,
        };
        let mut outcome = machine::advance(&tick);

        // Keep the analyzer in step with the machine and its evidence in status.
        if let Some(r) = running.get_mut(&key) {
            let rollout = outcome.status.rollout_started_at.clone().unwrap_or_default();
            if r.rollout != rollout
                || !matches!(
                    outcome.status.phase,
                    CanaryPhase::Progressing | CanaryPhase::WaitingConfirmation | CanaryPhase::Paused
                )
            {
                running.remove(&key);
            } else if outcome.status.current_step != status.current_step
                || outcome.status.canary_weight != status.canary_weight
            {
                r.analyzer.reset_for_step(now);
            }
        }
        outcome.status.analysis = running
            .get(&key)
            .and_then(|r| serde_json::to_value(r.analyzer.state()).ok())
            .map(OpaqueState)
            .or(if machine_active(outcome.status.phase) { outcome.status.analysis.clone() } else { None });
        outcome.status.backends = self.backend_stats(&ns, spec, &outcome.status, now);

        if outcome.status != status {
            write_status(&canaries, &name, &outcome.status).await?;
        }
        // The split follows status: the weight this tick decided, or the one status holds when the
        // split drifted from it (a crash between the two writes), unless a person changed it.
        let enforce = machine_active(outcome.status.phase)
            && outcome.status.phase != CanaryPhase::Paused
            && observation != SplitObservation::AsWritten;
        let weight = outcome.canary_weight.or(enforce.then_some(outcome.status.canary_weight));
        if let Some(w) = weight
            && !(matches!(observation, SplitObservation::Edited(_)) && outcome.status.phase == CanaryPhase::Paused)
        {
            write_split(&splits, canary, &outcome.status, w).await?;
        }
        for (reason, note, warning) in &outcome.events {
            recorder.record(&reference, *warning, reason, "Rollout", note).await?;
        }
        self.metrics.record_canary(&key, outcome.status.canary_weight, outcome.status.phase, verdict.map(|v| v.result));
        Ok(())
    }

    fn backend_stats(
        &self,
        ns: &str,
        spec: &shifter_crds::CanarySpec,
        status: &CanaryStatus,
        now: i64,
    ) -> Vec<BackendStats> {
        const WINDOW: i64 = 60;
        let stable = stable_of(spec, status);
        let canary = status.canary.clone().unwrap_or_else(|| spec.canary.clone());
        let mut out = Vec::new();
        for (service, weight) in
            [(stable.clone(), 100 - status.canary_weight.min(100)), (canary.clone(), status.canary_weight.min(100))]
        {
            if out.iter().any(|b: &BackendStats| b.service == service) {
                continue;
            }
            let c = shifter_analysis::MeshSource::counts(
                self.telemetry.as_ref(),
                ns,
                &spec.service,
                &service,
                now - WINDOW - FLUSH_DELAY_S,
                now - FLUSH_DELAY_S,
            );
            let success_rate = (c.requests > 0).then(|| {
                ((c.requests - c.failures.min(c.requests)) as f64 * 10000.0 / c.requests as f64).round() / 100.0
            });
            out.push(BackendStats {
                service,
                weight,
                rps: (c.requests as f64 * 100.0 / WINDOW as f64).round() / 100.0,
                success_rate,
                p99_ms: c.latency_quantile_ms(0.99),
                window_seconds: WINDOW as u32,
            });
        }
        out
    }
}

fn store_state(store: &Store<Canary>) -> Vec<Arc<Canary>> {
    store.state()
}

fn machine_active(phase: CanaryPhase) -> bool {
    matches!(
        phase,
        CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::WaitingConfirmation | CanaryPhase::Promoting
    )
}

fn start_analyzer(
    target: &Target,
    spec: &shifter_crds::CanarySpec,
    status: &CanaryStatus,
    rollout: &str,
    now: i64,
) -> Option<Running> {
    let config = match AnalyzerConfig::from_analysis(target.clone(), &spec.analysis) {
        Ok(c) => c,
        Err(error) => {
            warn!(%error, "analysis configuration rejected");
            return None;
        }
    };
    let resumed = status
        .analysis
        .as_ref()
        .and_then(|s| serde_json::from_value(s.0.clone()).ok())
        .and_then(|state| Analyzer::resume(config.clone(), state).ok());
    let started = rollout.parse::<k8s_openapi::jiff::Timestamp>().map_or(now, |t| t.as_second());
    let analyzer = resumed.unwrap_or_else(|| {
        let mut a = Analyzer::new(config, started);
        a.reset_for_step(now);
        a
    });
    Some(Running { analyzer, rollout: rollout.to_string() })
}

fn to_tick_verdict(result: shifter_analysis::VerdictResult, reason: String, consecutive_errors: u32) -> TickVerdict {
    use shifter_analysis::VerdictResult as A;
    let result = match result {
        A::Pass => VerdictResult::Pass,
        A::Fail => VerdictResult::Fail,
        A::Inconclusive => VerdictResult::Inconclusive,
        // A blip of the metrics source holds the rollout; a persisting outage counts as a failure.
        A::Error if consecutive_errors >= ERROR_LIMIT => VerdictResult::Error,
        A::Error => {
            return TickVerdict {
                result: VerdictResult::Inconclusive,
                reason: format!("metrics source error {consecutive_errors}/{ERROR_LIMIT}: {reason}"),
            };
        }
    };
    TickVerdict { result, reason }
}

/// `promote@…`, `promote-full@…`, `abort@…`, `resume@…`.
pub fn parse_command(raw: &str) -> Option<Command> {
    match raw.split_once('@').map_or(raw, |(verb, _)| verb) {
        "promote" => Some(Command::Promote { full: false }),
        "promote-full" => Some(Command::Promote { full: true }),
        "abort" => Some(Command::Abort),
        "resume" => Some(Command::Resume),
        _ => None,
    }
}

/// The weights a Canary's split must carry in `status`'s phase: (service, weight) pairs.
pub fn desired_backends(
    spec: &shifter_crds::CanarySpec,
    status: &CanaryStatus,
    canary_weight: u32,
) -> Vec<(String, u32)> {
    let stable = stable_of(spec, status);
    let canary = status.canary.clone().unwrap_or_else(|| spec.canary.clone());
    if stable == canary {
        return vec![(stable, 100)];
    }
    if status.phase == CanaryPhase::Succeeded {
        // The promoted version is the new stable: it takes everything.
        return vec![(canary, 100)];
    }
    let w = canary_weight.min(100);
    vec![(stable, 100 - w), (canary, w)]
}

fn observe_split(
    split: Option<&TrafficSplit>,
    spec: &shifter_crds::CanarySpec,
    status: &CanaryStatus,
) -> SplitObservation {
    let Some(split) = split else { return SplitObservation::Missing };
    let mut have: Vec<(String, u32)> =
        split.spec.backends.iter().filter(|b| b.weight > 0).map(|b| (b.service.clone(), b.weight as u32)).collect();
    let mut want: Vec<(String, u32)> =
        desired_backends(spec, status, status.canary_weight).into_iter().filter(|(_, w)| *w > 0).collect();
    have.sort();
    want.sort();
    if have == want {
        return SplitObservation::AsWritten;
    }
    let manager = crate::index::state::last_spec_manager(&split.metadata).unwrap_or_default();
    if manager == SPLIT_MANAGER || manager.is_empty() {
        // Our own earlier write (e.g. before a restart): status decides what it must say now.
        return SplitObservation::Missing;
    }
    let now: Vec<String> = split.spec.backends.iter().map(|b| format!("{}={}", b.service, b.weight)).collect();
    SplitObservation::Edited(format!("{} by {manager}", now.join(" ")))
}

async fn write_status(canaries: &Api<Canary>, name: &str, status: &CanaryStatus) -> Result<(), kube::Error> {
    let patch = json!({"apiVersion": "shifter.dev/v1alpha1", "kind": "Canary", "status": status});
    canaries
        .patch_status(name, &PatchParams::apply("shifter-controller").force(), &Patch::Apply(&patch))
        .await
        .map(drop)
}

async fn write_split(
    splits: &Api<TrafficSplit>,
    canary: &Canary,
    status: &CanaryStatus,
    canary_weight: u32,
) -> Result<(), kube::Error> {
    let spec = &canary.spec;
    let backends: Vec<serde_json::Value> = desired_backends(spec, status, canary_weight)
        .into_iter()
        .map(|(service, weight)| json!({"service": service, "weight": weight}))
        .collect();
    let split = json!({
        "apiVersion": "split.smi-spec.io/v1alpha4",
        "kind": "TrafficSplit",
        "metadata": {
            "name": spec.service,
            "ownerReferences": [{
                "apiVersion": "shifter.dev/v1alpha1",
                "kind": "Canary",
                "name": canary.name_any(),
                "uid": canary.uid().unwrap_or_default(),
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {"service": spec.service, "backends": backends},
    });
    splits.patch(&spec.service, &PatchParams::apply(SPLIT_MANAGER).force(), &Patch::Apply(&split)).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_from_their_annotation() {
        assert_eq!(parse_command("promote@2026-01-01T00:00:00Z"), Some(Command::Promote { full: false }));
        assert_eq!(parse_command("promote-full@x"), Some(Command::Promote { full: true }));
        assert_eq!(parse_command("abort@x"), Some(Command::Abort));
        assert_eq!(parse_command("resume@x"), Some(Command::Resume));
        assert_eq!(parse_command("explode@x"), None);
    }

    #[test]
    fn splits_carry_the_phase_weights() {
        let spec = shifter_crds::CanarySpec {
            service: "web".into(),
            stable: "v1".into(),
            canary: "v2".into(),
            ..Default::default()
        };
        let mut status = CanaryStatus {
            canary: Some("v2".into()),
            phase: CanaryPhase::Progressing,
            canary_weight: 20,
            ..Default::default()
        };
        assert_eq!(desired_backends(&spec, &status, 20), vec![("v1".into(), 80), ("v2".into(), 20)]);
        status.phase = CanaryPhase::Succeeded;
        status.stable = Some("v2".into());
        assert_eq!(desired_backends(&spec, &status, 100), vec![("v2".into(), 100)]);
    }

    #[test]
    fn persistent_metric_errors_fail_and_blips_hold() {
        let blip = to_tick_verdict(shifter_analysis::VerdictResult::Error, "down".into(), 1);
        assert_eq!(blip.result, VerdictResult::Inconclusive);
        assert!(blip.reason.contains("1/3"));
        assert_eq!(
            to_tick_verdict(shifter_analysis::VerdictResult::Error, "down".into(), 3).result,
            VerdictResult::Error
        );
    }
}
