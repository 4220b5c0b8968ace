//! Every transition of the Canary state machine, and a restart in each phase (state rebuilt from
//! status alone, as a freshly started controller reads it from the API).

use shifter_crds::canary::{CanaryPhase, CanarySpec, CanaryStatus, CanaryStep, VerdictResult, Webhook, WebhookKind};
use shifter_crds::conditions::is_true;

use super::machine::{Command, Outcome, SplitObservation, Tick, TickVerdict, WebhookOutcome, advance, webhooks_due};

fn spec() -> CanarySpec {
    CanarySpec {
        service: "web".into(),
        stable: "web-v1".into(),
        canary: "web-v2".into(),
        steps: vec![CanaryStep { weight: 10, ..Default::default() }, CanaryStep { weight: 50, ..Default::default() }],
        ..Default::default()
    }
}

fn verdict(result: VerdictResult) -> Option<TickVerdict> {
    Some(TickVerdict { result, reason: format!("{result:?} because numbers") })
}

/// Runs one tick at `now` and round-trips the status through JSON, as a restarted controller reads it.
fn tick(spec: &CanarySpec, status: &CanaryStatus, now: i64, v: Option<TickVerdict>) -> Outcome {
    tick_with(spec, status, now, v, SplitObservation::AsWritten, None, vec![])
}

fn tick_with(
    spec: &CanarySpec,
    status: &CanaryStatus,
    now: i64,
    verdict: Option<TickVerdict>,
    split: SplitObservation,
    command: Option<Command>,
    webhooks: Vec<WebhookOutcome>,
) -> Outcome {
    let command = command.map(|c| (c, format!("cmd@{now}")));
    let out = advance(&Tick { now, generation: Some(1), spec, status, split, verdict, webhooks, command });
    let json = serde_json::to_string(&out.status).unwrap();
    Outcome { status: serde_json::from_str(&json).unwrap(), ..out }
}

fn reasons(out: &Outcome) -> Vec<&str> {
    out.events.iter().map(|e| e.0.as_str()).collect()
}

fn condition_reason(status: &CanaryStatus, type_: &str) -> String {
    status.conditions.iter().find(|c| c.type_ == type_).map(|c| c.reason.clone()).unwrap_or_default()
}

const T0: i64 = 1_800_000_000;

#[test]
fn a_new_canary_starts_at_the_first_step() {
    let out = tick(&spec(), &CanaryStatus::default(), T0, None);
    assert_eq!(out.status.phase, CanaryPhase::Progressing);
    assert_eq!(out.canary_weight, Some(10));
    assert_eq!(out.status.canary.as_deref(), Some("web-v2"));
    assert_eq!(out.status.stable.as_deref(), Some("web-v1"));
    assert_eq!(reasons(&out), ["RolloutStarted", "StepStarted"]);
    assert!(is_true(&out.status.conditions, "Progressing"));
}

#[test]
fn passing_steps_promote_and_succeed() {
    let s = spec();
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    let b = tick(&s, &a.status, T0 + 10, verdict(VerdictResult::Pass));
    assert_eq!((b.status.current_step, b.canary_weight), (1, Some(50)));
    let c = tick(&s, &b.status, T0 + 20, verdict(VerdictResult::Pass));
    assert_eq!((c.status.phase, c.canary_weight), (CanaryPhase::Promoting, Some(100)));
    let d = tick(&s, &c.status, T0 + 30, None);
    assert_eq!(d.status.phase, CanaryPhase::Succeeded);
    assert_eq!(d.status.stable.as_deref(), Some("web-v2"));
    assert!(is_true(&d.status.conditions, "Promoted"));
    assert!(!is_true(&d.status.conditions, "Progressing"));
    // Nothing more happens once promoted.
    let e = tick(&s, &d.status, T0 + 40, verdict(VerdictResult::Fail));
    assert_eq!((e.status.phase, e.canary_weight, e.events.len()), (CanaryPhase::Succeeded, None, 0));
}

#[test]
fn inconclusive_holds_the_step() {
    let s = spec();
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    let b = tick(&s, &a.status, T0 + 10, verdict(VerdictResult::Inconclusive));
    assert_eq!((b.status.phase, b.status.current_step, b.canary_weight), (CanaryPhase::Progressing, 0, None));
    assert_eq!(b.status.last_verdict.unwrap().result, VerdictResult::Inconclusive);
}

#[test]
fn failed_checks_at_the_limit_roll_back() {
    let mut s = spec();
    s.analysis.failure_limit = Some(2);
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    let b = tick(&s, &a.status, T0 + 10, verdict(VerdictResult::Fail));
    assert_eq!((b.status.phase, b.status.failed_checks), (CanaryPhase::Progressing, 1));
    let c = tick(&s, &b.status, T0 + 20, verdict(VerdictResult::Error));
    assert_eq!((c.status.phase, c.canary_weight), (CanaryPhase::RolledBack, Some(0)));
    assert!(is_true(&c.status.conditions, "RolledBack"));
    assert_eq!(condition_reason(&c.status, "RolledBack"), "AnalysisFailed");
    let msg = &c.status.conditions.iter().find(|x| x.type_ == "RolledBack").unwrap().message;
    assert!(msg.contains("Error because numbers") && msg.contains("web-v1 serves 100%"), "{msg}");
    assert_eq!(c.status.history.len(), 2);
}

#[test]
fn no_progress_rolls_back_at_the_deadline_saying_so() {
    let mut s = spec();
    s.progress_deadline = Some("2m".into());
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    let b = tick(&s, &a.status, T0 + 60, verdict(VerdictResult::Inconclusive));
    assert_eq!(b.status.phase, CanaryPhase::Progressing);
    let c = tick(&s, &b.status, T0 + 121, verdict(VerdictResult::Inconclusive));
    assert_eq!(c.status.phase, CanaryPhase::RolledBack);
    assert_eq!(condition_reason(&c.status, "RolledBack"), "ProgressDeadlineExceeded");
    let msg = &c.status.conditions.iter().find(|x| x.type_ == "RolledBack").unwrap().message;
    assert!(msg.contains("no progress for 2m at step 1 (10%)") && msg.contains("Inconclusive"), "{msg}");
}

#[test]
fn a_gate_waits_for_promote() {
    let mut s = spec();
    s.steps[0].gate = true;
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    let b = tick(&s, &a.status, T0 + 10, verdict(VerdictResult::Pass));
    assert_eq!(b.status.phase, CanaryPhase::WaitingConfirmation);
    let c = tick(&s, &b.status, T0 + 9999, verdict(VerdictResult::Pass));
    assert_eq!(
        (c.status.phase, c.status.current_step),
        (CanaryPhase::WaitingConfirmation, 0),
        "no deadline while a person decides"
    );
    let d = tick_with(
        &s,
        &c.status,
        T0 + 10000,
        None,
        SplitObservation::AsWritten,
        Some(Command::Promote { full: false }),
        vec![],
    );
    assert_eq!((d.status.phase, d.status.current_step, d.canary_weight), (CanaryPhase::Progressing, 1, Some(50)));
    assert_eq!(d.status.last_command.as_deref(), Some("cmd@1800010000"));
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let s = spec();
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    let b = tick_with(
        &s,
        &a.status,
        T0 + 1,
        None,
        SplitObservation::AsWritten,
        Some(Command::Promote { full: true }),
        vec![],
    );
    assert_eq!((b.status.phase, b.canary_weight), (CanaryPhase::Promoting, Some(100)));
}

#[test]
fn abort_rolls_back_at_once() {
    let s = spec();
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    let b = tick_with(&s, &a.status, T0 + 1, None, SplitObservation::AsWritten, Some(Command::Abort), vec![]);
    assert_eq!((b.status.phase, b.canary_weight), (CanaryPhase::RolledBack, Some(0)));
    assert_eq!(condition_reason(&b.status, "RolledBack"), "Aborted");
}

#[test]
fn spec_paused_holds_and_resumes() {
    let mut s = spec();
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    s.paused = true;
    let b = tick(&s, &a.status, T0 + 10, verdict(VerdictResult::Pass));
    assert_eq!((b.status.phase, b.status.current_step), (CanaryPhase::Paused, 0));
    let c = tick(&s, &b.status, T0 + 5000, verdict(VerdictResult::Pass));
    assert_eq!(c.status.phase, CanaryPhase::Paused, "no deadline while paused");
    s.paused = false;
    let d = tick(&s, &c.status, T0 + 5010, verdict(VerdictResult::Pass));
    assert_eq!((d.status.phase, d.status.current_step), (CanaryPhase::Progressing, 1));
}

#[test]
fn a_manual_edit_pauses_until_resumed() {
    let s = spec();
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    let edit = SplitObservation::Edited("web-v1=70 web-v2=30 by kubectl-edit".into());
    let b = tick_with(&s, &a.status, T0 + 10, verdict(VerdictResult::Pass), edit.clone(), None, vec![]);
    assert_eq!((b.status.phase, b.canary_weight), (CanaryPhase::Paused, None), "the edit is not overwritten");
    assert_eq!(condition_reason(&b.status, "Progressing"), "ManualOverride");
    let msg = &b.status.conditions.iter().find(|c| c.type_ == "Progressing").unwrap().message;
    assert!(msg.contains("kubectl shift resume web") && msg.contains("web-v1=70"), "{msg}");
    let c = tick_with(&s, &b.status, T0 + 20, verdict(VerdictResult::Pass), edit.clone(), None, vec![]);
    assert_eq!((c.status.phase, c.canary_weight, c.events.len()), (CanaryPhase::Paused, None, 0), "no repeated Event");
    let d = tick_with(&s, &c.status, T0 + 30, None, edit, Some(Command::Resume), vec![]);
    assert_eq!(
        (d.status.phase, d.canary_weight),
        (CanaryPhase::Progressing, Some(10)),
        "resume restores the step weight"
    );
}

#[test]
fn changing_the_canary_restarts_from_the_first_step() {
    let mut s = spec();
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    let b = tick(&s, &a.status, T0 + 10, verdict(VerdictResult::Pass));
    assert_eq!(b.status.current_step, 1);
    s.canary = "web-v3".into();
    let c = tick(&s, &b.status, T0 + 20, verdict(VerdictResult::Pass));
    assert_eq!((c.status.current_step, c.canary_weight), (0, Some(10)));
    assert_eq!(c.status.canary.as_deref(), Some("web-v3"));
    assert_eq!(c.status.stable.as_deref(), Some("web-v1"), "stable is still the last promoted version");
}

#[test]
fn after_promotion_a_new_canary_rolls_out_against_the_promoted_version() {
    let mut s = spec();
    let mut st = tick(&s, &CanaryStatus::default(), T0, None).status;
    for i in 1..4 {
        st = tick(&s, &st, T0 + i * 10, verdict(VerdictResult::Pass)).status;
    }
    assert_eq!(st.phase, CanaryPhase::Succeeded);
    s.stable = "web-v1".into();
    s.canary = "web-v3".into();
    let out = tick(&s, &st, T0 + 100, None);
    assert_eq!(out.status.phase, CanaryPhase::Progressing);
    assert!(out.events[0].1.contains("rolling out web-v3 in place of web-v2"), "{:?}", out.events);
}

#[test]
fn pre_rollout_webhooks_gate_the_first_step_and_never_run_twice() {
    let mut s = spec();
    s.analysis.failure_limit = Some(2);
    s.webhooks = vec![Webhook {
        name: "smoke".into(),
        kind: WebhookKind::PreRollout,
        url: "http://x".into(),
        ..Default::default()
    }];
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    assert_eq!(a.canary_weight, Some(0), "no traffic before pre-rollout hooks pass");
    assert_eq!(webhooks_due(&s, &a.status).len(), 1);
    let failed =
        WebhookOutcome { name: "smoke".into(), kind: WebhookKind::PreRollout, ok: false, message: "503".into() };
    let b = tick_with(&s, &a.status, T0 + 10, None, SplitObservation::AsWritten, None, vec![failed]);
    assert_eq!((b.status.phase, b.status.failed_checks), (CanaryPhase::Progressing, 1));
    let ok = WebhookOutcome { name: "smoke".into(), kind: WebhookKind::PreRollout, ok: true, message: "200".into() };
    let c = tick_with(&s, &b.status, T0 + 20, None, SplitObservation::AsWritten, None, vec![ok]);
    assert_eq!(c.canary_weight, Some(10));
    assert!(webhooks_due(&s, &c.status).is_empty(), "a restarted controller does not call it again");
}

#[test]
fn a_rollback_webhook_answering_yes_rolls_back() {
    let mut s = spec();
    s.webhooks = vec![Webhook {
        name: "kill-switch".into(),
        kind: WebhookKind::Rollback,
        url: "http://x".into(),
        ..Default::default()
    }];
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    assert_eq!(webhooks_due(&s, &a.status).len(), 1);
    let yes =
        WebhookOutcome { name: "kill-switch".into(), kind: WebhookKind::Rollback, ok: true, message: "200".into() };
    let b =
        tick_with(&s, &a.status, T0 + 10, verdict(VerdictResult::Pass), SplitObservation::AsWritten, None, vec![yes]);
    assert_eq!(condition_reason(&b.status, "RolledBack"), "RollbackWebhook");
}

#[test]
fn confirm_promotion_webhooks_hold_promotion_until_they_approve() {
    let mut s = spec();
    s.webhooks = vec![Webhook {
        name: "approve".into(),
        kind: WebhookKind::ConfirmPromotion,
        url: "http://x".into(),
        ..Default::default()
    }];
    let mut st = tick(&s, &CanaryStatus::default(), T0, None).status;
    st = tick(&s, &st, T0 + 10, verdict(VerdictResult::Pass)).status;
    st = tick(&s, &st, T0 + 20, verdict(VerdictResult::Pass)).status;
    assert_eq!(st.phase, CanaryPhase::WaitingConfirmation);
    assert_eq!(webhooks_due(&s, &st).len(), 1);
    let no = WebhookOutcome {
        name: "approve".into(),
        kind: WebhookKind::ConfirmPromotion,
        ok: false,
        message: "403".into(),
    };
    let held = tick_with(&s, &st, T0 + 30, verdict(VerdictResult::Pass), SplitObservation::AsWritten, None, vec![no]);
    assert_eq!(held.status.phase, CanaryPhase::WaitingConfirmation);
    let yes =
        WebhookOutcome { name: "approve".into(), kind: WebhookKind::ConfirmPromotion, ok: true, message: "200".into() };
    let go = tick_with(
        &s,
        &held.status,
        T0 + 40,
        verdict(VerdictResult::Pass),
        SplitObservation::AsWritten,
        None,
        vec![yes],
    );
    assert_eq!(go.status.phase, CanaryPhase::Promoting);
}

#[test]
fn a_step_pause_keeps_the_step_at_least_that_long() {
    let mut s = spec();
    s.steps[0].pause = Some("1m".into());
    let a = tick(&s, &CanaryStatus::default(), T0, None);
    let b = tick(&s, &a.status, T0 + 30, verdict(VerdictResult::Pass));
    assert_eq!(b.status.current_step, 0);
    let c = tick(&s, &b.status, T0 + 61, verdict(VerdictResult::Pass));
    assert_eq!(c.status.current_step, 1);
}

#[test]
fn a_restart_in_every_phase_resumes_from_status_without_jumping() {
    // Drive a rollout through every phase; at each point a "restarted" controller (status from
    // JSON only, nothing else) must make exactly the decision an uninterrupted one makes.
    let mut s = spec();
    s.steps[1].gate = true;
    let mut st = CanaryStatus::default();
    let script: Vec<(Option<TickVerdict>, Option<Command>, bool)> = vec![
        (None, None, false),                                   // Idle → Progressing step 1
        (verdict(VerdictResult::Inconclusive), None, false),   // holds
        (verdict(VerdictResult::Pass), None, false),           // → step 2
        (verdict(VerdictResult::Pass), None, false),           // → WaitingConfirmation
        (None, None, true),                                    // spec.paused holds the wait
        (verdict(VerdictResult::Pass), None, true),            // paused at step 2
        (None, None, false),                                   // unpaused
        (None, Some(Command::Promote { full: false }), false), // → Promoting
        (None, None, false),                                   // → Succeeded
    ];
    let mut phases = Vec::new();
    for (i, (v, cmd, paused)) in script.into_iter().enumerate() {
        s.paused = paused;
        let now = T0 + 10 * i as i64;
        let live = tick_with(&s, &st, now, v.clone(), SplitObservation::AsWritten, cmd.clone(), vec![]);
        let restored: CanaryStatus = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        let restarted = tick_with(&s, &restored, now, v, SplitObservation::AsWritten, cmd, vec![]);
        assert_eq!(restarted.status, live.status, "tick {i}");
        assert_eq!(restarted.canary_weight, live.canary_weight, "tick {i}");
        // A restart with the split not yet written re-sends the weight status holds, never another.
        let missing = tick_with(&s, &live.status, now + 1, None, SplitObservation::Missing, None, vec![]);
        if let Some(w) = missing.canary_weight {
            assert_eq!(w, missing.status.canary_weight, "tick {i}");
        }
        st = live.status;
        phases.push(st.phase);
    }
    use CanaryPhase::*;
    assert_eq!(
        phases,
        [
            Progressing,
            Progressing,
            Progressing,
            WaitingConfirmation,
            WaitingConfirmation,
            WaitingConfirmation,
            WaitingConfirmation,
            Promoting,
            Succeeded
        ]
    );
}
