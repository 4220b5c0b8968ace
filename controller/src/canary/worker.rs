//! One task per Canary: it ticks on that Canary's own schedule (its `analysis.interval`, at once
//! on a spec change or a `kubectl shift` command), only while this replica leads, and never lets a
//! failure escape to other Canaries.
//!
//! A tick that fails — an API error, a tick past [`TICK_BUDGET`], even a panic — is reported on
//! that Canary (a `Reconciled=False` condition and one Warning Event per distinct failure), then
//! retried with backoff; every other Canary keeps its schedule.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kube::ResourceExt;
use shifter_crds::canary::{COMMAND_ANNOTATION, Canary};
use shifter_crds::conditions::{condition, set_condition};
use shifter_crds::duration::parse_duration;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::reconcile::{CanaryContext, Memory, now_s, parse_command, reference, tick, write_status};
use crate::lease::Leadership;
use crate::supervise::panic_message;

/// Interval between ticks when the Canary does not set one (or sets one that cannot be read).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// The longest one tick may take: webhooks (at most a minute), analysis and writes, with room.
pub const TICK_BUDGET: Duration = Duration::from_secs(120);
/// The shortest time between two ticks of one Canary.
pub const MIN_GAP: Duration = Duration::from_millis(500);
/// Retry pauses after failed ticks: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// The condition that reports ticks that failed.
pub const RECONCILED: &str = "Reconciled";

/// When the next tick is due, from the Canary as last seen and the outcome of the last tick.
#[derive(Debug, Default)]
pub(super) struct Schedule {
    last_tick: Option<Instant>,
    failures_in_a_row: u32,
}

impl Schedule {
    /// When the next tick is due: after a retry pause following failures; soon after a spec change
    /// or a new command (never sooner than [`MIN_GAP`] after the last tick, so a tick's own writes
    /// cannot spin it); otherwise one interval after the last tick.
    pub fn next_due(&self, canary: &Canary) -> Option<Instant> {
        let last = self.last_tick?;
        if self.failures_in_a_row > 0 {
            return Some(last + self.retry_pause());
        }
        let status = canary.status.clone().unwrap_or_default();
        let command_pending = canary
            .annotations()
            .get(COMMAND_ANNOTATION)
            .is_some_and(|c| status.last_command.as_ref() != Some(c) && parse_command(c).is_some());
        let spec_changed = status.observed_generation != canary.metadata.generation;
        Some(last + if command_pending || spec_changed { MIN_GAP } else { interval(canary) })
    }

    /// Whether a tick should run at `now`.
    pub fn due(&self, canary: &Canary, now: Instant) -> bool {
        self.next_due(canary).is_none_or(|at| now >= at)
    }

    /// How long from `now` until the next tick is due.
    pub fn wait(&self, canary: &Canary, now: Instant) -> Duration {
        self.next_due(canary).map_or(Duration::ZERO, |at| at.saturating_duration_since(now))
    }

    fn retry_pause(&self) -> Duration {
        RETRY_FIRST.saturating_mul(1 << self.failures_in_a_row.saturating_sub(1).min(10)).min(RETRY_MAX)
    }
}

/// The Canary's analysis interval, or the default when it cannot be read (validation reports it).
pub fn interval(canary: &Canary) -> Duration {
    canary
        .spec
        .analysis
        .interval
        .as_deref()
        .and_then(|i| parse_duration(i).ok())
        .filter(|d| *d >= Duration::from_secs(1))
        .unwrap_or(DEFAULT_INTERVAL)
}

/// Runs the Canary last sent on `canary` until the sender is dropped.
pub(super) async fn run(
    ctx: Arc<CanaryContext>,
    mut canary: watch::Receiver<Arc<Canary>>,
    mut leadership: watch::Receiver<Leadership>,
) {
    let mut memory = Memory::default();
    let mut schedule = Schedule::default();
    let mut reported: Option<String> = None;
    loop {
        let current = canary.borrow_and_update().clone();
        let leading = leadership.borrow_and_update().is_leader;
        let mut wait = None;
        if !leading {
            memory.forget();
            schedule = Schedule::default();
            reported = None;
        } else if schedule.due(&current, Instant::now()) {
            schedule.last_tick = Some(Instant::now());
            match run_tick(&ctx, &current, &mut memory).await {
                Ok(()) => {
                    schedule.failures_in_a_row = 0;
                    if reported.take().is_some() {
                        report(&ctx, &current, None).await;
                    }
                }
                Err(Failure::Fenced) => debug!("tick not written: leadership is not proven"),
                Err(Failure::Object(message)) => {
                    schedule.failures_in_a_row = schedule.failures_in_a_row.saturating_add(1);
                    warn!(canary = %current.name_any(), error = %message, "canary tick failed");
                    if reported.as_deref() != Some(message.as_str()) {
                        report(&ctx, &current, Some(&message)).await;
                        reported = Some(message);
                    }
                }
            }
        } else {
            wait = Some(schedule.wait(&current, Instant::now()));
        }
        let wake = async {
            match wait {
                Some(pause) => tokio::time::sleep(pause).await,
                // Just ticked: look again at the next change of the Canary, or when the next is due.
                None if leading => tokio::time::sleep(schedule.wait(&current, Instant::now())).await,
                // Not leading: only a change of leadership (or of the Canary) matters.
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = canary.changed() => if changed.is_err() { return },
            _ = leadership.changed() => {}
            _ = wake => {}
        }
    }
}

enum Failure {
    /// Nothing was written because leadership is not proven; not the object's fault.
    Fenced,
    /// What to tell the user on the object.
    Object(String),
}

/// One tick, with every way it can go wrong turned into a [`Failure`].
async fn run_tick(ctx: &CanaryContext, canary: &Canary, memory: &mut Memory) -> Result<(), Failure> {
    let ticked = AssertUnwindSafe(tick(ctx, canary, memory, now_s())).catch_unwind();
    match tokio::time::timeout(TICK_BUDGET, ticked).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) if e.is_fenced() => Err(Failure::Fenced),
        Ok(Ok(Err(e))) => Err(Failure::Object(e.to_string())),
        Ok(Err(panic)) => {
            // Whatever the analyzer held may be half-updated; status has the last good evidence.
            memory.forget();
            Err(Failure::Object(format!("the tick panicked ({}); retrying with backoff", panic_message(panic))))
        }
        Err(_) => {
            memory.forget();
            Err(Failure::Object(format!("the tick did not finish within {TICK_BUDGET:?}; retrying with backoff")))
        }
    }
}

/// Sets `Reconciled` on the Canary: False with `failure`, or True again once ticks succeed, plus a
/// Warning Event for each new failure. Best effort: a failed report is logged, never retried here.
async fn report(ctx: &CanaryContext, canary: &Canary, failure: Option<&str>) {
    let mut status = canary.status.clone().unwrap_or_default();
    let generation = canary.metadata.generation;
    let next = match failure {
        Some(message) => condition(RECONCILED, false, "TickFailed", message.to_string(), generation),
        None => condition(RECONCILED, true, "TickSucceeded", "the last tick succeeded".to_string(), generation),
    };
    set_condition(&mut status.conditions, next);
    if let Err(error) = write_status(ctx, canary, &status).await {
        warn!(%error, canary = %canary.name_any(), "could not report the tick's outcome on the Canary");
        return;
    }
    if let Some(message) = failure {
        let regarding = reference(canary);
        let event = ctx.recorder.record(&regarding, true, "TickFailed", "Reconcile", message);
        if let Err(error) = ctx.fence.write(event).await {
            warn!(%error, canary = %canary.name_any(), "could not record the failed tick");
        }
    }
}

#[cfg(test)]
mod tests {
    use shifter_crds::canary::{CanarySpec, CanaryStatus};

    use super::*;

    fn canary(interval: Option<&str>, generation: i64, observed: i64) -> Canary {
        let mut spec =
            CanarySpec { service: "web".into(), stable: "v1".into(), canary: "v2".into(), ..Default::default() };
        spec.analysis.interval = interval.map(str::to_string);
        let mut c = Canary::new("web", spec);
        c.metadata.generation = Some(generation);
        c.status = Some(CanaryStatus { observed_generation: Some(observed), ..Default::default() });
        c
    }

    #[test]
    fn a_canary_ticks_at_once_then_on_its_own_interval() {
        let c = canary(Some("5s"), 1, 1);
        let t0 = Instant::now();
        let mut s = Schedule::default();
        assert!(s.due(&c, t0));
        s.last_tick = Some(t0);
        assert!(!s.due(&c, t0 + Duration::from_secs(4)));
        assert_eq!(s.wait(&c, t0 + Duration::from_secs(4)), Duration::from_secs(1));
        assert!(s.due(&c, t0 + Duration::from_secs(5)));
    }

    #[test]
    fn a_spec_change_or_command_ticks_before_the_interval() {
        let t0 = Instant::now();
        let s = Schedule { last_tick: Some(t0), failures_in_a_row: 0 };
        assert!(s.due(&canary(Some("1h"), 2, 1), t0 + MIN_GAP), "generation 2 not observed yet");
        assert!(!s.due(&canary(Some("1h"), 2, 1), t0), "but not twice within the minimum gap");
        let mut c = canary(Some("1h"), 1, 1);
        c.metadata.annotations = Some([(COMMAND_ANNOTATION.to_string(), "promote@t".to_string())].into());
        assert!(s.due(&c, t0 + MIN_GAP));
        c.metadata.annotations = Some([(COMMAND_ANNOTATION.to_string(), "explode@t".to_string())].into());
        assert!(!s.due(&c, t0 + MIN_GAP), "a command that means nothing does not tick");
    }

    #[test]
    fn failed_ticks_back_off_even_when_the_spec_is_unobserved() {
        let t0 = Instant::now();
        let c = canary(Some("1s"), 2, 1);
        let s = Schedule { last_tick: Some(t0), failures_in_a_row: 3 };
        assert!(!s.due(&c, t0 + Duration::from_secs(3)), "the third failure in a row waits 4 s");
        assert!(s.due(&c, t0 + Duration::from_secs(4)));
        let s = Schedule { last_tick: Some(t0), failures_in_a_row: 40 };
        assert_eq!(s.wait(&c, t0), RETRY_MAX);
    }

    #[test]
    fn an_unreadable_interval_falls_back_to_the_default() {
        assert_eq!(interval(&canary(Some("9999999999999999999999s"), 1, 1)), DEFAULT_INTERVAL);
        assert_eq!(interval(&canary(Some("0s"), 1, 1)), DEFAULT_INTERVAL);
        assert_eq!(interval(&canary(None, 1, 1)), DEFAULT_INTERVAL);
        assert_eq!(interval(&canary(Some("3s"), 1, 1)), Duration::from_secs(3));
    }
}
