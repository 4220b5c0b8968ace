//! One Canary tick: read the Canary's TrafficSplit, call due webhooks and the analysis engine, run
//! one [`machine::advance`], then write status (the decision) before the split (its effect), so a
//! crash in between is repaired from status on the next tick and never jumps a step.
//!
//! Every write goes through the leader's [`Fence`]; every call out (webhooks, Prometheus) is
//! bounded, so one tick of one Canary always ends. Scheduling ticks is [`super::worker`]'s job.

use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use shifter_analysis::{Analyzer, AnalyzerConfig, AnyProvider, Target};
use shifter_crds::TrafficSplit;
use shifter_crds::canary::{
    BackendStats, COMMAND_ANNOTATION, Canary, CanaryPhase, CanarySpec, CanaryStatus, OpaqueState, RouteRef,
    VerdictResult,
};
use shifter_crds::conditions::{condition, set_condition};
use tracing::warn;

use super::machine::{self, Command, Outcome, SplitObservation, Tick, TickVerdict, stable_of};
use super::{route, webhooks};
use crate::events::EventRecorder;
use crate::fence::{Fence, WriteError};
use crate::metrics::ControllerMetrics;
use crate::telemetry::TelemetryStore;

/// The field manager for splits a Canary owns.
pub const SPLIT_MANAGER: &str = "shifter-canary";
/// The field manager for Canary status.
pub const STATUS_MANAGER: &str = "shifter-controller";
/// Consecutive metrics-source errors tolerated before they count as a failed check.
pub const ERROR_LIMIT: u32 = 3;
/// Telemetry younger than this may still be arriving and is not judged yet.
const FLUSH_DELAY_S: i64 = 2;

/// What every Canary's ticks share.
pub struct CanaryContext {
    pub client: Client,
    pub telemetry: Arc<TelemetryStore>,
    pub metrics: Arc<ControllerMetrics>,
    pub fence: Fence,
    pub recorder: EventRecorder,
    /// One HTTP client (one connection pool) for every webhook and Prometheus query.
    pub http: reqwest::Client,
}

/// What a Canary moves weights on, as read this tick.
pub enum Weighted {
    Split(Option<TrafficSplit>),
    Route(RouteRef, Option<DynamicObject>),
}

/// What one Canary remembers between ticks: its running analysis. Losing it is safe — the
/// evidence is also kept in status and resumed from there.
#[derive(Default)]
pub struct Memory {
    running: Option<Running>,
}

impl Memory {
    pub fn forget(&mut self) {
        self.running = None;
    }
}

struct Running {
    analyzer: Analyzer,
    /// The rollout the analyzer belongs to (`status.rolloutStartedAt`).
    rollout: String,
}

/// Why a tick did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error("reading the {what}: {source}")]
    Read { what: &'static str, source: kube::Error },
    #[error("writing the {what}: {source}")]
    Write { what: &'static str, source: WriteError },
}

impl TickError {
    /// The write was withheld because leadership is not proven: nothing is wrong with the object.
    pub fn is_fenced(&self) -> bool {
        matches!(self, TickError::Write { source: WriteError::Fenced, .. })
    }
}

fn write_err(what: &'static str) -> impl FnOnce(WriteError) -> TickError {
    move |source| TickError::Write { what, source }
}

pub(crate) fn now_s() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// The Event reference for a Canary.
pub(crate) fn reference(canary: &Canary) -> ObjectReference {
    ObjectReference {
        api_version: Some("shifter.dev/v1alpha1".into()),
        kind: Some("Canary".into()),
        name: Some(canary.name_any()),
        namespace: canary.namespace(),
        uid: canary.uid(),
        ..Default::default()
    }
}

/// Runs one tick of `canary` at `now` (unix seconds).
pub async fn tick(ctx: &CanaryContext, canary: &Canary, memory: &mut Memory, now: i64) -> Result<(), TickError> {
    let ns = canary.namespace().unwrap_or_default();
    let key = (ns.clone(), canary.name_any());
    let spec = &canary.spec;
    let status = canary.status.clone().unwrap_or_default();

    let problems = shifter_crds::canary::validate(spec);
    if !problems.is_empty() {
        memory.forget();
        return report_invalid_spec(ctx, canary, &status, &problems).await;
    }

    let target = match &spec.route_ref {
        None => {
            let splits: Api<TrafficSplit> = Api::namespaced(ctx.client.clone(), &ns);
            let split = splits
                .get_opt(&spec.service)
                .await
                .map_err(|source| TickError::Read { what: "TrafficSplit", source })?;
            Weighted::Split(split)
        }
        Some(r) => {
            let api = route::api(&ctx.client, canary, r);
            let found = api
                .get_opt(r.name_or(&spec.service))
                .await
                .map_err(|source| TickError::Read { what: "route", source })?;
            Weighted::Route(r.clone(), found)
        }
    };
    let observation = match &target {
        Weighted::Split(split) => observe_split(split.as_ref(), spec, &status),
        Weighted::Route(_, found) => route::observe(found.as_ref(), canary, &status),
    };
    let command = canary
        .annotations()
        .get(COMMAND_ANNOTATION)
        .filter(|c| status.last_command.as_ref() != Some(*c))
        .and_then(|c| parse_command(c).map(|cmd| (cmd, c.clone())));

    // Webhooks due in the state before this tick, called together; each is bounded by its budget.
    let calls = machine::webhooks_due(spec, &status).into_iter().map(|hook| {
        let body = webhooks::body(&key.1, &ns, spec, &status, hook);
        let http = ctx.http.clone();
        async move { webhooks::call(&http, hook, &body).await }
    });
    let outcomes = join_all(calls).await;
    // A step is judged only on traffic the route really carries: once it is Accepted at the
    // generation shifter wrote.
    let verdict = match &target {
        Weighted::Route(_, found) if route::waiting(found.as_ref(), canary).is_some() => None,
        _ => analyse(ctx, canary, &status, memory, now).await,
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
    keep_analysis_in_step(memory, &status, &mut outcome, now);
    outcome.status.backends = backend_stats(&ctx.telemetry, &ns, spec, &outcome.status, now);
    apply(ctx, canary, &status, &outcome, &observation, &target).await?;
    ctx.metrics.record_canary(&key, outcome.status.canary_weight, outcome.status.phase, verdict.map(|v| v.result));
    Ok(())
}

/// A spec that cannot run says so in a condition (and once in an Event), naming every field.
async fn report_invalid_spec(
    ctx: &CanaryContext,
    canary: &Canary,
    status: &CanaryStatus,
    problems: &[String],
) -> Result<(), TickError> {
    let mut next = status.clone();
    next.observed_generation = canary.metadata.generation;
    let message = problems.join("; ");
    set_condition(
        &mut next.conditions,
        condition("Progressing", false, "InvalidSpec", message.clone(), canary.metadata.generation),
    );
    if next == *status {
        return Ok(());
    }
    write_status(ctx, canary, &next).await?;
    ctx.fence
        .write(ctx.recorder.record(&reference(canary), true, "InvalidSpec", "Validate", &message))
        .await
        .map_err(write_err("Event"))
}

/// The analysis verdict of this tick, while traffic is on the canary of the current rollout.
async fn analyse(
    ctx: &CanaryContext,
    canary: &Canary,
    status: &CanaryStatus,
    memory: &mut Memory,
    now: i64,
) -> Option<TickVerdict> {
    let spec = &canary.spec;
    let analysing = matches!(status.phase, CanaryPhase::Progressing | CanaryPhase::WaitingConfirmation)
        && status.canary_weight > 0
        && status.canary.as_deref() == Some(spec.canary.as_str());
    if !analysing {
        return None;
    }
    let target = Target {
        namespace: canary.namespace().unwrap_or_default(),
        service: spec.service.clone(),
        stable: stable_of(spec, status),
        canary: spec.canary.clone(),
    };
    let rollout = status.rollout_started_at.clone().unwrap_or_default();
    let mut run = match memory.running.take() {
        Some(r) if r.rollout == rollout => r,
        _ => start_analyzer(&target, spec, status, &rollout, now)?,
    };
    let provider = AnyProvider::from_spec_with_client(&spec.analysis.provider, ctx.telemetry.clone(), ctx.http.clone());
    let verdict = match provider {
        Ok(p) => {
            let v = run.analyzer.tick(&p, now - FLUSH_DELAY_S).await;
            to_tick_verdict(v.result, v.reason, run.analyzer.state().consecutive_errors)
        }
        Err(e) => TickVerdict { result: VerdictResult::Error, reason: e.to_string() },
    };
    memory.running = Some(run);
    Some(verdict)
}

/// Keeps the analyzer in step with the machine, and its evidence in status.
fn keep_analysis_in_step(memory: &mut Memory, before: &CanaryStatus, outcome: &mut Outcome, now: i64) {
    if let Some(r) = memory.running.as_mut() {
        let rollout = outcome.status.rollout_started_at.clone().unwrap_or_default();
        if r.rollout != rollout
            || !matches!(
                outcome.status.phase,
                CanaryPhase::Progressing | CanaryPhase::WaitingConfirmation | CanaryPhase::Paused
            )
        {
            memory.running = None;
        } else if outcome.status.current_step != before.current_step
            || outcome.status.canary_weight != before.canary_weight
        {
            r.analyzer.reset_for_step(now);
        }
    }
    outcome.status.analysis = memory
        .running
        .as_ref()
        .and_then(|r| serde_json::to_value(r.analyzer.state()).ok())
        .map(OpaqueState)
        .or(if machine_active(outcome.status.phase) { outcome.status.analysis.clone() } else { None });
}

/// Writes what the tick decided: status, then the split, then Events.
async fn apply(
    ctx: &CanaryContext,
    canary: &Canary,
    before: &CanaryStatus,
    outcome: &Outcome,
    observation: &SplitObservation,
    target: &Weighted,
) -> Result<(), TickError> {
    if outcome.status != *before {
        write_status(ctx, canary, &outcome.status).await?;
    }
    // The split follows status: the weight this tick decided, or the one status holds when the
    // split drifted from it (a crash between the two writes), unless a person changed it.
    let enforce = machine_active(outcome.status.phase)
        && outcome.status.phase != CanaryPhase::Paused
        && *observation != SplitObservation::AsWritten;
    let weight = outcome.canary_weight.or(enforce.then_some(outcome.status.canary_weight));
    if let Some(w) = weight
        && !(matches!(observation, SplitObservation::Edited(_)) && outcome.status.phase == CanaryPhase::Paused)
    {
        match target {
            Weighted::Split(_) => {
                let splits: Api<TrafficSplit> =
                    Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
                ctx.fence
                    .write(write_split(&splits, canary, &outcome.status, w))
                    .await
                    .map_err(write_err("TrafficSplit"))?;
            }
            Weighted::Route(r, found) => {
                ctx.fence
                    .write(route::write(&ctx.client, canary, r, found.as_ref(), &outcome.status, w))
                    .await
                    .map_err(write_err("route"))?;
            }
        }
    }
    let regarding = reference(canary);
    for (reason, note, warning) in &outcome.events {
        ctx.fence
            .write(ctx.recorder.record(&regarding, *warning, reason, "Rollout", note))
            .await
            .map_err(write_err("Event"))?;
    }
    Ok(())
}

/// The recent traffic per version shown in status.
fn backend_stats(
    telemetry: &TelemetryStore,
    ns: &str,
    spec: &CanarySpec,
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
            telemetry,
            ns,
            &spec.service,
            &service,
            now - WINDOW - FLUSH_DELAY_S,
            now - FLUSH_DELAY_S,
        );
        let success_rate = (c.requests > 0)
            .then(|| ((c.requests - c.failures.min(c.requests)) as f64 * 10000.0 / c.requests as f64).round() / 100.0);
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

/// Writes a Canary's whole status under [`STATUS_MANAGER`], through the fence.
pub(crate) async fn write_status(ctx: &CanaryContext, canary: &Canary, status: &CanaryStatus) -> Result<(), TickError> {
    let canaries: Api<Canary> = Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "shifter.dev/v1alpha1", "kind": "Canary", "status": status});
    let params = PatchParams::apply(STATUS_MANAGER).force();
    let name = canary.name_any();
    ctx.fence
        .write(canaries.patch_status(&name, &params, &Patch::Apply(&patch)))
        .await
        .map(drop)
        .map_err(write_err("Canary status"))
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
