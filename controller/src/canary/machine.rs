//! The Canary state machine, as a pure function of the Canary and what one tick observed.
//!
//! Everything a rollout needs lives in `status`, so a controller killed at any moment resumes from
//! status alone: it never jumps weights (the weight it writes is always `status.canaryWeight`),
//! never repeats a webhook that already succeeded (`status.completedWebhooks`), and keeps the
//! verdict history.
//!
//! ```text
//! Idle ─► Progressing(step i, weight w) ─► [Paused | WaitingConfirmation] ─► Promoting ─► Succeeded
//!   any active phase ─► RolledBack   (failed checks reach the limit, progress deadline, rollback
//!                                     webhook, or a person aborts)
//! ```

use std::time::Duration;

use shifter_crds::canary::{
    CanaryPhase, CanarySpec, CanaryStatus, VerdictRecord, VerdictResult, Webhook, WebhookKind, effective_steps,
};
use shifter_crds::conditions::{condition, set_condition};
use shifter_crds::duration::parse_duration;

/// Verdicts kept in `status.history`.
pub const HISTORY: usize = 20;
/// Default progress deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);

/// What the owned TrafficSplit looks like now.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitObservation {
    /// Not created yet.
    Missing,
    /// It carries the weights shifter last wrote.
    AsWritten,
    /// Someone else changed it; the description says to what and by whom.
    Edited(String),
}

/// The analysis outcome of this tick, when analysis ran.
#[derive(Debug, Clone, PartialEq)]
pub struct TickVerdict {
    pub result: VerdictResult,
    pub reason: String,
}

/// A `kubectl shift` command not yet acted on.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Promote { full: bool },
    Abort,
    Resume,
}

/// The result of calling one webhook this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookOutcome {
    pub name: String,
    pub kind: WebhookKind,
    pub ok: bool,
    pub message: String,
}

/// Everything one tick observed.
#[derive(Debug, Clone)]
pub struct Tick<'a> {
    /// Unix seconds.
    pub now: i64,
    pub generation: Option<i64>,
    pub spec: &'a CanarySpec,
    pub status: &'a CanaryStatus,
    pub split: SplitObservation,
    pub verdict: Option<TickVerdict>,
    pub webhooks: Vec<WebhookOutcome>,
    /// The command and its id (the annotation value), when one is pending.
    pub command: Option<(Command, String)>,
}

/// What the controller should do after a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: CanaryStatus,
    /// Percent of traffic the owned split must send to the canary (stable gets the rest); None
    /// leaves the split alone.
    pub canary_weight: Option<u32>,
    /// Transitions worth an Event: (reason, note, warning).
    pub events: Vec<(String, String, bool)>,
}

fn rfc3339(unix: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix).map(|t| t.to_string()).unwrap_or_default()
}

fn parse_time(raw: Option<&String>) -> Option<i64> {
    raw.and_then(|r| r.parse::<k8s_openapi::jiff::Timestamp>().ok()).map(|t| t.as_second())
}

fn is_active(phase: CanaryPhase) -> bool {
    matches!(
        phase,
        CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::WaitingConfirmation | CanaryPhase::Promoting
    )
}

/// The stable version: the last promoted canary, else `spec.stable`.
pub fn stable_of(spec: &CanarySpec, status: &CanaryStatus) -> String {
    status.stable.clone().unwrap_or_else(|| spec.stable.clone())
}

/// Webhooks to call this tick, given the state before it; the controller calls them and passes
/// the outcomes into [`advance`].
pub fn webhooks_due<'a>(spec: &'a CanarySpec, status: &CanaryStatus) -> Vec<&'a Webhook> {
    let done = |w: &Webhook| status.completed_webhooks.contains(&webhook_key(w, status.current_step));
    spec.webhooks
        .iter()
        .filter(|w| match (w.kind, status.phase) {
            (WebhookKind::PreRollout, CanaryPhase::Progressing) => !done(w),
            (
                WebhookKind::Rollout | WebhookKind::Rollback,
                CanaryPhase::Progressing | CanaryPhase::WaitingConfirmation,
            ) => pre_rollout_done(spec, status),
            (WebhookKind::ConfirmPromotion, CanaryPhase::WaitingConfirmation) => !done(w),
            (WebhookKind::PostRollout, CanaryPhase::Succeeded) => !done(w),
            _ => false,
        })
        .collect()
}

fn webhook_key(w: &Webhook, step: u32) -> String {
    match w.kind {
        WebhookKind::PreRollout | WebhookKind::PostRollout => format!("{}@rollout", w.name),
        _ => format!("{}@{step}", w.name),
    }
}

fn pre_rollout_done(spec: &CanarySpec, status: &CanaryStatus) -> bool {
    spec.webhooks
        .iter()
        .filter(|w| w.kind == WebhookKind::PreRollout)
        .all(|w| status.completed_webhooks.contains(&webhook_key(w, 0)))
}

struct Machine<'a> {
    tick: &'a Tick<'a>,
    status: CanaryStatus,
    weight: Option<u32>,
    events: Vec<(String, String, bool)>,
}

/// Runs one tick.
pub fn advance(tick: &Tick<'_>) -> Outcome {
    let mut m = Machine { tick, status: tick.status.clone(), weight: None, events: Vec::new() };
    m.run();
    m.finish()
}

impl Machine<'_> {
    fn spec(&self) -> &CanarySpec {
        self.tick.spec
    }

    fn now(&self) -> i64 {
        self.tick.now
    }

    fn event(&mut self, reason: &str, note: String, warning: bool) {
        self.events.push((reason.into(), note, warning));
    }

    fn run(&mut self) {
        let tick = self.tick;
        let spec = tick.spec;
        let target = spec.canary.clone();
        let stable = stable_of(spec, &self.status);
        if self.status.stable.is_none() {
            self.status.stable = Some(stable.clone());
        }
        // A new canary (first rollout, or spec.canary changed at any time) starts from step one.
        if target != stable && self.status.canary.as_deref() != Some(target.as_str()) {
            self.start(&target, &stable);
            return;
        }
        if target == stable && self.status.canary.is_none() {
            self.status.phase = CanaryPhase::Idle;
            return;
        }
        if !is_active(self.status.phase) {
            if self.status.phase == CanaryPhase::Succeeded {
                self.record_webhooks();
            }
            return;
        }
        let mut resumed = false;
        if let Some((command, id)) = self.tick.command.clone() {
            self.status.last_command = Some(id);
            match command {
                Command::Abort => return self.roll_back("Aborted", "aborted by kubectl shift abort".into()),
                Command::Promote { full: true } => {
                    return self.promote("promoted in full by kubectl shift promote --full".into());
                }
                Command::Promote { full: false } => {
                    self.next_step("kubectl shift promote".into());
                    return;
                }
                Command::Resume => {
                    resumed = true;
                    if self.status.phase == CanaryPhase::Paused {
                        self.status.phase = CanaryPhase::Progressing;
                        self.weight = Some(self.status.canary_weight);
                        self.status.last_progress_at = Some(rfc3339(self.now()));
                        let note = format!("resumed at {}% by kubectl shift resume", self.status.canary_weight);
                        self.event("Resumed", note, false);
                    }
                }
            }
        }
        if let SplitObservation::Edited(what) = &self.tick.split
            && !resumed
        {
            if self.status.phase != CanaryPhase::Paused || !self.paused_for_edit() {
                let object = match &spec.route_ref {
                    Some(r) => format!("{:?} {}", r.kind, r.name_or(&spec.service)),
                    None => format!("TrafficSplit {}", spec.service),
                };
                let message = format!(
                    "{object} was changed outside this Canary ({what}); shifter will not overwrite it. \
                     Run `kubectl shift resume {}` to restore {}% to {} and continue, or `kubectl shift abort {}` to roll back",
                    self.name(),
                    self.status.canary_weight,
                    target,
                    self.name()
                );
                self.status.phase = CanaryPhase::Paused;
                self.set_progressing(false, "ManualOverride", message.clone());
                self.event("ManualOverride", message, true);
            }
            return;
        }
        if spec.paused {
            // Waiting for a person already holds everything; the phase keeps saying what it waits for.
            if self.status.phase != CanaryPhase::Paused && self.status.phase != CanaryPhase::WaitingConfirmation {
                self.status.phase = CanaryPhase::Paused;
                let msg = format!("paused by spec.paused at {}%", self.status.canary_weight);
                self.set_progressing(false, "Paused", msg.clone());
                self.event("Paused", msg, false);
            }
            return;
        }
        if self.status.phase == CanaryPhase::Paused {
            if self.paused_for_edit() {
                return;
            }
            self.status.phase = CanaryPhase::Progressing;
            self.status.last_progress_at = Some(rfc3339(self.now()));
            self.event("Resumed", format!("resumed at {}%", self.status.canary_weight), false);
        }
        if self.status.phase == CanaryPhase::Promoting {
            self.succeed();
            return;
        }
        self.judge();
    }

    fn name(&self) -> String {
        self.spec().service.clone()
    }

    fn paused_for_edit(&self) -> bool {
        self.status.conditions.iter().any(|c| c.type_ == "Progressing" && c.reason == "ManualOverride")
    }

    fn start(&mut self, target: &str, stable: &str) {
        let restarted = self.status.canary.is_some() && is_active(self.status.phase);
        self.status.canary = Some(target.into());
        self.status.phase = CanaryPhase::Progressing;
        self.status.current_step = 0;
        self.status.failed_checks = 0;
        self.status.completed_webhooks.clear();
        self.status.analysis = None;
        self.status.rollout_started_at = Some(rfc3339(self.now()));
        self.status.step_started_at = Some(rfc3339(self.now()));
        self.status.last_progress_at = Some(rfc3339(self.now()));
        self.status.canary_weight = 0;
        self.weight = Some(0);
        let why = if restarted { "spec.canary changed during a rollout; starting over" } else { "new canary" };
        let msg = format!("rolling out {target} in place of {stable} ({why})");
        self.set_progressing(true, "RolloutStarted", msg.clone());
        self.clear_terminal_conditions();
        self.event("RolloutStarted", msg, false);
        if pre_rollout_done(self.spec(), &self.status) {
            self.enter_step(0);
        }
    }

    fn steps_len(&self) -> usize {
        effective_steps(self.spec()).len()
    }

    fn enter_step(&mut self, index: usize) {
        let steps = effective_steps(self.spec());
        let Some(step) = steps.get(index) else { return };
        self.status.current_step = index as u32;
        self.status.canary_weight = step.weight;
        self.status.failed_checks = 0;
        self.status.step_started_at = Some(rfc3339(self.now()));
        self.status.last_progress_at = Some(rfc3339(self.now()));
        self.weight = Some(step.weight);
        let msg = format!("step {}/{}: {}% to {}", index + 1, steps.len(), step.weight, self.spec().canary);
        self.set_progressing(true, "StepStarted", msg.clone());
        self.event("StepStarted", msg, false);
    }

    /// Applies webhook outcomes: successes are remembered; pre-rollout and rollout failures count
    /// as failed checks; a rollback webhook answering 2xx rolls back.
    fn record_webhooks(&mut self) -> bool {
        let mut failed = Vec::new();
        for w in &self.tick.webhooks {
            let spec_hook = self.spec().webhooks.iter().find(|h| h.name == w.name);
            let key = spec_hook.map(|h| webhook_key(h, self.status.current_step)).unwrap_or_else(|| w.name.clone());
            match (w.kind, w.ok) {
                (WebhookKind::Rollback, true) => {
                    self.roll_back(
                        "RollbackWebhook",
                        format!("rollback webhook {} asked to roll back: {}", w.name, w.message),
                    );
                    return true;
                }
                (WebhookKind::Rollback, false) | (WebhookKind::Rollout, true) => {}
                (_, true) => {
                    if !self.status.completed_webhooks.contains(&key) {
                        self.status.completed_webhooks.push(key);
                    }
                }
                (WebhookKind::PreRollout | WebhookKind::Rollout, false) => {
                    failed.push(format!("{}: {}", w.name, w.message))
                }
                (WebhookKind::ConfirmPromotion | WebhookKind::PostRollout, false) => {}
            }
        }
        if !failed.is_empty() {
            self.status.failed_checks += 1;
            self.event("WebhookFailed", format!("webhook failed: {}", failed.join("; ")), true);
            return self.check_failure_limit(&format!("webhook failed: {}", failed.join("; ")));
        }
        false
    }

    fn failure_limit(&self) -> u32 {
        self.spec().analysis.failure_limit.unwrap_or(1).max(1)
    }

    fn check_failure_limit(&mut self, reason: &str) -> bool {
        if self.status.failed_checks >= self.failure_limit() {
            let msg = format!(
                "{} failed check(s) at step {} (limit {}): {reason}",
                self.status.failed_checks,
                self.status.current_step + 1,
                self.failure_limit()
            );
            self.roll_back("AnalysisFailed", msg);
            return true;
        }
        false
    }

    fn judge(&mut self) {
        if self.record_webhooks() {
            return;
        }
        if !pre_rollout_done(self.spec(), &self.status) {
            return self.check_deadline();
        }
        if self.status.canary_weight == 0 && self.status.current_step == 0 && self.weight.is_none() {
            // Pre-rollout hooks just completed: traffic moves to the first step.
            let first = effective_steps(self.spec()).first().map_or(0, |s| s.weight);
            if first > 0 {
                self.enter_step(0);
                return;
            }
        }
        let Some(verdict) = self.tick.verdict.clone() else { return self.check_deadline() };
        let record = VerdictRecord {
            result: verdict.result,
            reason: verdict.reason.clone(),
            time: rfc3339(self.now()),
            step: self.status.current_step,
            weight: self.status.canary_weight,
        };
        self.status.last_verdict = Some(record.clone());
        self.status.history.push(record);
        let excess = self.status.history.len().saturating_sub(HISTORY);
        self.status.history.drain(..excess);
        match verdict.result {
            VerdictResult::Fail | VerdictResult::Error => {
                self.status.failed_checks += 1;
                if !self.check_failure_limit(&verdict.reason) {
                    self.check_deadline();
                }
            }
            VerdictResult::Inconclusive => self.check_deadline(),
            VerdictResult::Pass => {
                if self.status.phase == CanaryPhase::WaitingConfirmation {
                    return self.confirm();
                }
                let steps = effective_steps(self.spec());
                let step = &steps[(self.status.current_step as usize).min(steps.len() - 1)];
                let held = self.now() - parse_time(self.status.step_started_at.as_ref()).unwrap_or(self.now());
                let pause = step.pause.as_deref().and_then(|p| parse_duration(p).ok()).unwrap_or_default();
                if (held as u64) < pause.as_secs() {
                    return;
                }
                if step.gate {
                    self.status.phase = CanaryPhase::WaitingConfirmation;
                    let msg = format!(
                        "step {} passed; waiting for `kubectl shift promote {}`",
                        self.status.current_step + 1,
                        self.name()
                    );
                    self.set_progressing(true, "WaitingConfirmation", msg.clone());
                    self.event("WaitingConfirmation", msg, false);
                    return;
                }
                self.next_step(verdict.reason);
            }
        }
    }

    fn next_step(&mut self, why: String) {
        let next = self.status.current_step as usize + 1;
        self.status.phase = CanaryPhase::Progressing;
        if next < self.steps_len() {
            self.enter_step(next);
        } else {
            self.confirm_or_promote(why);
        }
    }

    fn confirm_or_promote(&mut self, why: String) {
        let confirm_hooks = self.spec().webhooks.iter().any(|w| w.kind == WebhookKind::ConfirmPromotion);
        if confirm_hooks {
            self.status.phase = CanaryPhase::WaitingConfirmation;
            let msg = "every step passed; waiting for the confirm-promotion webhook".to_string();
            self.set_progressing(true, "WaitingConfirmation", msg.clone());
            self.event("WaitingConfirmation", msg, false);
        } else {
            self.promote(why);
        }
    }

    fn confirm(&mut self) {
        let hooks: Vec<&Webhook> =
            self.spec().webhooks.iter().filter(|w| w.kind == WebhookKind::ConfirmPromotion).collect();
        let all_ok =
            hooks.iter().all(|w| self.status.completed_webhooks.contains(&webhook_key(w, self.status.current_step)));
        let last_step = self.status.current_step as usize + 1 >= self.steps_len();
        if !hooks.is_empty() && last_step && all_ok {
            self.promote("confirm-promotion webhooks approved".into());
        }
    }

    fn check_deadline(&mut self) {
        if self.status.phase == CanaryPhase::WaitingConfirmation {
            return;
        }
        let deadline =
            self.spec().progress_deadline.as_deref().and_then(|d| parse_duration(d).ok()).unwrap_or(DEFAULT_DEADLINE);
        let since = parse_time(self.status.last_progress_at.as_ref()).unwrap_or(self.now());
        if self.now() - since > deadline.as_secs() as i64 {
            let last = self
                .status
                .last_verdict
                .as_ref()
                .map_or("no verdict yet".to_string(), |v| format!("last verdict {:?}: {}", v.result, v.reason));
            let msg = format!(
                "no progress for {} at step {} ({}%): {last}",
                humanize(deadline),
                self.status.current_step + 1,
                self.status.canary_weight
            );
            self.roll_back("ProgressDeadlineExceeded", msg);
        }
    }

    fn promote(&mut self, why: String) {
        self.status.phase = CanaryPhase::Promoting;
        self.status.canary_weight = 100;
        self.weight = Some(100);
        let msg = format!("promoting {}: {why}", self.spec().canary);
        self.set_progressing(true, "Promoting", msg.clone());
        self.event("Promoting", msg, false);
    }

    fn succeed(&mut self) {
        let canary = self.status.canary.clone().unwrap_or_else(|| self.spec().canary.clone());
        let old = stable_of(self.spec(), &self.status);
        self.status.phase = CanaryPhase::Succeeded;
        self.status.stable = Some(canary.clone());
        self.status.canary_weight = 100;
        self.weight = Some(100);
        let msg = format!("{canary} now serves 100% in place of {old}");
        self.set_progressing(false, "Succeeded", msg.clone());
        let generation = self.tick.generation;
        set_condition(&mut self.status.conditions, condition("Promoted", true, "Promoted", msg.clone(), generation));
        set_condition(&mut self.status.conditions, condition("RolledBack", false, "Promoted", msg.clone(), generation));
        self.event("Promoted", msg, false);
    }

    fn roll_back(&mut self, reason: &str, message: String) {
        self.status.phase = CanaryPhase::RolledBack;
        self.status.canary_weight = 0;
        self.weight = Some(0);
        let generation = self.tick.generation;
        let stable = stable_of(self.spec(), &self.status);
        let full = format!("{message}; {stable} serves 100%");
        self.set_progressing(false, reason, full.clone());
        set_condition(&mut self.status.conditions, condition("RolledBack", true, reason, full.clone(), generation));
        set_condition(&mut self.status.conditions, condition("Promoted", false, reason, full.clone(), generation));
        self.event("RolledBack", full, true);
    }

    fn set_progressing(&mut self, on: bool, reason: &str, message: String) {
        let generation = self.tick.generation;
        set_condition(&mut self.status.conditions, condition("Progressing", on, reason, message, generation));
    }

    fn clear_terminal_conditions(&mut self) {
        let generation = self.tick.generation;
        for type_ in ["Promoted", "RolledBack"] {
            set_condition(
                &mut self.status.conditions,
                condition(type_, false, "RolloutInProgress", "a rollout is in progress", generation),
            );
        }
    }

    fn finish(mut self) -> Outcome {
        self.status.observed_generation = self.tick.generation;
        // The split always carries the weight status records while a rollout is active, so a
        // restart never jumps: it rewrites exactly what status says.
        let weight = self.weight.or_else(|| {
            (is_active(self.status.phase) && self.tick.split == SplitObservation::Missing)
                .then_some(self.status.canary_weight)
        });
        Outcome { status: self.status, canary_weight: weight, events: self.events }
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
