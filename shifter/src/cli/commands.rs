//! Verbs that change something: `promote`, `abort`, `pause`, `resume`, `start` on a Canary and
//! `weight` on a TrafficSplit.
//!
//! Commands to the controller travel as the annotation `shifter.dev/command: <verb>@<RFC 3339 time>`;
//! the controller records the value it acted on in `status.lastCommand`, so each runs once however
//! often the controller restarts. Every write uses the field manager `kubectl-shift`, which is how
//! the controller's Events say who changed what.

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use shifter_crds::canary::{COMMAND_ANNOTATION, Canary, CanaryPhase};
use shifter_crds::traffic_split::{Backend, TrafficSplit};

use super::args::{CanaryArgs, PromoteArgs, StartArgs, WeightArgs, WeightAssignment, check_unique};
use super::connect::{Target, connect};
use super::error::{CliError, is_conflict, is_not_found, request_error};

/// The field manager of every write this CLI makes.
pub const FIELD_MANAGER: &str = "kubectl-shift";

/// `promote@2026-01-01T12:00:00.123Z`: unique per call (milliseconds), so a repeated command is new.
pub fn command_value(verb: &str, now: Timestamp) -> String {
    format!("{verb}@{now:.3}")
}

fn params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

pub(crate) async fn get_canary(api: &Api<Canary>, name: &str, namespace: &str) -> Result<Canary, CliError> {
    api.get(name).await.map_err(|e| {
        if is_not_found(&e) {
            CliError::NotFound { kind: "canary", name: name.into(), namespace: namespace.into() }
        } else {
            request_error(format!("reading canary {name}"), "Canary (shifter.dev)", e)
        }
    })
}

/// Merge-patches a Canary (after checking it exists, so a typo gets a clear answer).
async fn patch_canary(target: &Target, name: &str, patch: serde_json::Value) -> Result<Canary, CliError> {
    let api: Api<Canary> = Api::namespaced(target.client.clone(), &target.namespace);
    get_canary(&api, name, &target.namespace).await?;
    api.patch(name, &params(), &Patch::Merge(&patch)).await.map_err(|e| {
        if is_not_found(&e) {
            CliError::NotFound { kind: "canary", name: name.into(), namespace: target.namespace.clone() }
        } else {
            request_error(format!("updating canary {name}"), "Canary (shifter.dev)", e)
        }
    })
}

fn command_patch(value: &str) -> serde_json::Value {
    json!({"metadata": {"annotations": {COMMAND_ANNOTATION: value}}})
}

/// Whether the controller acts on commands in this phase.
fn in_rollout(phase: CanaryPhase) -> bool {
    matches!(
        phase,
        CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::WaitingConfirmation | CanaryPhase::Promoting
    )
}

fn note_if_idle(canary: &Canary, verb: &str) {
    let phase = canary.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if !in_rollout(phase) {
        eprintln!(
            "note: canary {} is {phase:?}, not in a rollout; the controller acts on {verb} only while one runs",
            canary.metadata.name.as_deref().unwrap_or("?")
        );
    }
}

pub async fn promote(args: PromoteArgs) -> Result<(), CliError> {
    let verb = if args.full { "promote-full" } else { "promote" };
    let value = command_value(verb, Timestamp::now());
    let canary = patch_canary(&connect(&args.connect).await?, &args.name, command_patch(&value)).await?;
    let what = if args.full { "promotion to 100%" } else { "promotion to the next step" };
    println!("canary/{} {what} requested ({COMMAND_ANNOTATION}={value})", args.name);
    note_if_idle(&canary, verb);
    Ok(())
}

pub async fn abort(args: CanaryArgs) -> Result<(), CliError> {
    let value = command_value("abort", Timestamp::now());
    let canary = patch_canary(&connect(&args.connect).await?, &args.name, command_patch(&value)).await?;
    println!("canary/{} abort requested: traffic goes back to stable ({COMMAND_ANNOTATION}={value})", args.name);
    note_if_idle(&canary, "abort");
    Ok(())
}

pub async fn pause(args: CanaryArgs) -> Result<(), CliError> {
    patch_canary(&connect(&args.connect).await?, &args.name, json!({"spec": {"paused": true}})).await?;
    println!("canary/{} paused (spec.paused=true); traffic stays where it is until `resume`", args.name);
    Ok(())
}

pub async fn resume(args: CanaryArgs) -> Result<(), CliError> {
    let value = command_value("resume", Timestamp::now());
    let mut patch = command_patch(&value);
    patch["spec"] = json!({"paused": false});
    patch_canary(&connect(&args.connect).await?, &args.name, patch).await?;
    println!("canary/{} resumed (spec.paused=false, {COMMAND_ANNOTATION}={value})", args.name);
    Ok(())
}

pub async fn start(args: StartArgs) -> Result<(), CliError> {
    let target = connect(&args.connect).await?;
    let patch = json!({"spec": {"canary": args.canary}});
    patch_canary(&target, &args.name, patch).await?;
    println!("canary/{} rollout of {} requested (spec.canary={})", args.name, args.canary, args.canary);
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(target.client, &target.namespace);
    if let Ok(None) = services.get_opt(&args.canary).await {
        eprintln!(
            "note: service {} does not exist in namespace {} yet; it gets no traffic until it does",
            args.canary, target.namespace
        );
    }
    Ok(())
}

/// The split's backends with the given weights replaced; every named backend must be in the split.
pub fn apply_weights(
    split: &str,
    backends: &[Backend],
    weights: &[WeightAssignment],
) -> Result<Vec<Backend>, CliError> {
    check_unique(weights).map_err(CliError::Invalid)?;
    for w in weights {
        if !backends.iter().any(|b| b.service == w.backend) {
            let known: Vec<&str> = backends.iter().map(|b| b.service.as_str()).collect();
            return Err(CliError::Invalid(format!(
                "backend {} is not in trafficsplit {split} (its backends: {}); add it with `kubectl edit trafficsplit {split}`",
                w.backend,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
    }
    Ok(backends
        .iter()
        .map(|b| match weights.iter().find(|w| w.backend == b.service) {
            Some(w) => Backend { service: b.service.clone(), weight: w.weight },
            None => b.clone(),
        })
        .collect())
}

/// `web-v1=80 web-v2=20`.
pub fn weights_line(backends: &[Backend]) -> String {
    backends.iter().map(|b| format!("{}={}", b.service, b.weight)).collect::<Vec<_>>().join(" ")
}

pub async fn weight(args: WeightArgs) -> Result<(), CliError> {
    check_unique(&args.weights).map_err(CliError::Invalid)?;
    let target = connect(&args.connect).await?;
    let api: Api<TrafficSplit> = Api::namespaced(target.client, &target.namespace);
    let name = &args.split;
    // Read, replace, write with the read resourceVersion: a concurrent edit makes the write fail
    // with 409 and we start over from the new object instead of undoing someone's change.
    for _ in 0..5 {
        let split = api.get(name).await.map_err(|e| {
            if is_not_found(&e) {
                CliError::NotFound { kind: "trafficsplit", name: name.clone(), namespace: target.namespace.clone() }
            } else {
                request_error(format!("reading trafficsplit {name}"), "TrafficSplit (split.smi-spec.io)", e)
            }
        })?;
        let backends = apply_weights(name, &split.spec.backends, &args.weights)?;
        let patch = json!({
            "metadata": {"resourceVersion": split.metadata.resource_version},
            "spec": {"backends": backends},
        });
        match api.patch(name, &params(), &Patch::Merge(&patch)).await {
            Ok(_) => {
                println!("trafficsplit/{name} weights: {}", weights_line(&backends));
                if let Some(owner) = split.metadata.owner_references.iter().flatten().find(|o| o.kind == "Canary") {
                    eprintln!(
                        "note: canary {0} drives this split; during a rollout it pauses instead of overwriting your change, and `kubectl shift resume {0}` hands control back",
                        owner.name
                    );
                }
                return Ok(());
            }
            Err(e) if is_conflict(&e) => continue,
            Err(e) => {
                return Err(request_error(
                    format!("updating trafficsplit {name}"),
                    "TrafficSplit (split.smi-spec.io)",
                    e,
                ));
            }
        }
    }
    Err(CliError::Invalid(format!("trafficsplit {name} kept changing while it was updated; try again")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::parse_assignment;

    fn backends(list: &[(&str, i64)]) -> Vec<Backend> {
        list.iter().map(|(s, w)| Backend { service: s.to_string(), weight: *w }).collect()
    }

    fn assign(list: &[&str]) -> Vec<WeightAssignment> {
        list.iter().map(|a| parse_assignment(a).unwrap()).collect()
    }

    #[test]
    fn weights_replace_listed_backends_and_keep_others() {
        let split = backends(&[("web-v1", 90), ("web-v2", 10), ("web-v3", 0)]);
        let out = apply_weights("web", &split, &assign(&["web-v2=30", "web-v1=70"])).unwrap();
        assert_eq!(weights_line(&out), "web-v1=70 web-v2=30 web-v3=0");
    }

    #[test]
    fn an_unknown_backend_is_named_with_the_known_ones() {
        let split = backends(&[("web-v1", 90), ("web-v2", 10)]);
        let e = apply_weights("web", &split, &assign(&["web-v9=5"])).unwrap_err().to_string();
        assert!(e.contains("backend web-v9 is not in trafficsplit web (its backends: web-v1, web-v2)"), "{e}");
        let e = apply_weights("web", &split, &assign(&["web-v1=5", "web-v1=6"])).unwrap_err().to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn command_values_carry_the_verb_and_a_millisecond_time() {
        let now: Timestamp = "2026-01-01T12:00:00.5Z".parse().unwrap();
        assert_eq!(command_value("promote-full", now), "promote-full@2026-01-01T12:00:00.500Z");
    }
}
