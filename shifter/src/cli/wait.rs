//! `wait NAME`: block until the rollout of the Canary's current `spec.canary` ends, for CD pipelines.
//!
//! Exit 0 when that version was promoted, 1 when it was rolled back, 2 on timeout, a missing Canary
//! or an API error. A finished rollout of an earlier version never counts: the status must be about
//! `spec.canary` and the controller must have seen the latest generation.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::watch_object;
use shifter_crds::canary::{Canary, CanaryPhase, effective_steps};

use super::args::WaitArgs;
use super::commands::get_canary;
use super::connect::connect;
use super::error::CliError;

/// Keep retrying a broken watch this long before giving up with exit 2.
const ERROR_BUDGET: Duration = Duration::from_secs(30);

/// Where the rollout of the current `spec.canary` stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitState {
    Promoted,
    RolledBack(String),
    Pending,
}

impl WaitState {
    pub fn exit_code(&self) -> u8 {
        match self {
            WaitState::Promoted => 0,
            WaitState::RolledBack(_) => 1,
            WaitState::Pending => 2,
        }
    }
}

pub fn judge(canary: &Canary) -> WaitState {
    let Some(status) = &canary.status else { return WaitState::Pending };
    let current = status.canary.as_deref() == Some(canary.spec.canary.as_str());
    let observed = match (status.observed_generation, canary.metadata.generation) {
        (Some(seen), Some(generation)) => seen >= generation,
        (_, None) => true,
        (None, Some(_)) => false,
    };
    if !(current && observed) {
        return WaitState::Pending;
    }
    match status.phase {
        CanaryPhase::Succeeded => WaitState::Promoted,
        CanaryPhase::RolledBack => {
            let condition = status.conditions.iter().find(|c| c.type_ == "RolledBack" && !c.message.is_empty());
            let message = match (condition, &status.last_verdict) {
                (Some(c), _) => format!("{}: {}", c.reason, c.message),
                (None, Some(v)) => v.reason.clone(),
                (None, None) => "no reason recorded".into(),
            };
            WaitState::RolledBack(message)
        }
        _ => WaitState::Pending,
    }
}

/// `Progressing: web-v2 at 20% (step 2/3), last verdict Pass` — what changed as the rollout moves.
pub fn progress(canary: &Canary) -> String {
    let status = canary.status.clone().unwrap_or_default();
    let subject = status.canary.as_deref().unwrap_or("(not started)");
    let mut s = format!("{:?}: {subject} at {}%", status.phase, status.canary_weight);
    if matches!(status.phase, CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::WaitingConfirmation) {
        s.push_str(&format!(" (step {}/{})", status.current_step + 1, effective_steps(&canary.spec).len()));
    }
    if status.canary.as_deref() != Some(canary.spec.canary.as_str()) {
        s.push_str(&format!(", waiting for the controller to start {}", canary.spec.canary));
    }
    if let Some(v) = &status.last_verdict {
        s.push_str(&format!(", last verdict {:?}", v.result));
    }
    let name = canary.metadata.name.as_deref().unwrap_or("NAME");
    if status.phase == CanaryPhase::WaitingConfirmation {
        s.push_str(&format!("; `kubectl shift promote {name}` continues"));
    } else if canary.spec.paused || status.phase == CanaryPhase::Paused {
        s.push_str(&format!("; `kubectl shift resume {name}` continues"));
    }
    s
}

/// Runs `wait` and returns the exit code (0, 1 or 2).
pub async fn wait(args: WaitArgs) -> Result<u8, CliError> {
    let started = Instant::now();
    let target = connect(&args.connect).await?;
    let api: Api<Canary> = Api::namespaced(target.client, &target.namespace);
    let name = args.name.clone();
    let first = get_canary(&api, &name, &target.namespace).await?;
    let wanted = first.spec.canary.clone();
    let mut last_line = String::new();
    let mut report = |c: &Canary| {
        let line = progress(c);
        if line != last_line {
            eprintln!("[{:>4}s] canary/{name} {line}", started.elapsed().as_secs());
            last_line = line;
        }
    };
    let finish = |state: WaitState| -> u8 {
        match &state {
            WaitState::Promoted => println!("canary/{} promoted", args.name),
            WaitState::RolledBack(why) => println!("canary/{} rolled back: {why}", args.name),
            WaitState::Pending => {}
        }
        state.exit_code()
    };
    report(&first);
    let state = judge(&first);
    if state != WaitState::Pending {
        return Ok(finish(state));
    }

    let mut last_seen = first;
    let watch = async {
        let mut changes = watch_object(api, &args.name).default_backoff().boxed();
        let mut failing_since: Option<Instant> = None;
        while let Some(change) = changes.next().await {
            match change {
                Ok(Some(c)) => {
                    failing_since = None;
                    report(&c);
                    let state = judge(&c);
                    last_seen = c;
                    if state != WaitState::Pending {
                        return Ok(state);
                    }
                }
                Ok(None) => {
                    return Err(CliError::NotFound {
                        kind: "canary",
                        name: args.name.clone(),
                        namespace: target.namespace.clone(),
                    });
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    eprintln!("warning: watching canary {}: {e}; retrying", args.name);
                    if since.elapsed() > ERROR_BUDGET {
                        return Err(CliError::Api {
                            action: format!("watching canary {}", args.name),
                            message: format!("{e} (failing for {}s)", since.elapsed().as_secs()),
                        });
                    }
                }
            }
        }
        Err(CliError::Api { action: format!("watching canary {}", args.name), message: "the watch ended".into() })
    };
    let remaining = args.timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(remaining, watch).await {
        Ok(Ok(state)) => Ok(finish(state)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(CliError::Timeout(format!(
            "timed out after {}s waiting for canary {} to finish rolling out {wanted}; last seen {}",
            args.timeout.as_secs(),
            args.name,
            progress(&last_seen)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use shifter_crds::canary::{CanarySpec, CanaryStatus};

    fn canary(spec_canary: &str, status_canary: &str, phase: CanaryPhase, generation: i64, observed: i64) -> Canary {
        let spec = CanarySpec {
            service: "web".into(),
            stable: "web-v1".into(),
            canary: spec_canary.into(),
            ..Default::default()
        };
        let mut c = Canary::new("web", spec);
        c.metadata.generation = Some(generation);
        c.status = Some(CanaryStatus {
            phase,
            canary: Some(status_canary.into()),
            observed_generation: Some(observed),
            ..Default::default()
        });
        c
    }

    #[test]
    fn only_the_current_canary_at_the_current_generation_ends_the_wait() {
        assert_eq!(judge(&canary("web-v2", "web-v2", CanaryPhase::Succeeded, 2, 2)), WaitState::Promoted);
        assert_eq!(
            judge(&canary("web-v3", "web-v2", CanaryPhase::Succeeded, 3, 2)),
            WaitState::Pending,
            "stale canary"
        );
        assert_eq!(
            judge(&canary("web-v2", "web-v2", CanaryPhase::Succeeded, 3, 2)),
            WaitState::Pending,
            "stale generation"
        );
        assert_eq!(judge(&canary("web-v2", "web-v2", CanaryPhase::Progressing, 2, 2)), WaitState::Pending);
        assert_eq!(judge(&Canary::new("web", CanarySpec::default())), WaitState::Pending);
    }

    #[test]
    fn a_rollback_carries_the_condition_message_and_exit_code_1() {
        let mut c = canary("web-v2", "web-v2", CanaryPhase::RolledBack, 2, 2);
        c.status.as_mut().unwrap().conditions.push(Condition {
            type_: "RolledBack".into(),
            status: "True".into(),
            reason: "FailedChecks".into(),
            message: "canary success 95.0% vs stable 100.0%".into(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: None,
        });
        let state = judge(&c);
        assert_eq!(state, WaitState::RolledBack("FailedChecks: canary success 95.0% vs stable 100.0%".into()));
        assert_eq!(state.exit_code(), 1);
        assert_eq!(WaitState::Promoted.exit_code(), 0);
    }

    #[test]
    fn progress_lines_name_phase_weight_and_step() {
        let mut c = canary("web-v2", "web-v2", CanaryPhase::Progressing, 2, 2);
        c.status.as_mut().unwrap().canary_weight = 20;
        c.status.as_mut().unwrap().current_step = 1;
        assert_eq!(progress(&c), "Progressing: web-v2 at 20% (step 2/3)");
        let stale = canary("web-v3", "web-v2", CanaryPhase::Succeeded, 3, 2);
        assert_eq!(progress(&stale), "Succeeded: web-v2 at 0%, waiting for the controller to start web-v3");
        c.status.as_mut().unwrap().phase = CanaryPhase::WaitingConfirmation;
        assert_eq!(
            progress(&c),
            "WaitingConfirmation: web-v2 at 20% (step 2/3); `kubectl shift promote web` continues"
        );
        c.status.as_mut().unwrap().phase = CanaryPhase::Paused;
        assert_eq!(progress(&c), "Paused: web-v2 at 20% (step 2/3); `kubectl shift resume web` continues");
    }
}
