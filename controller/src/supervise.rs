//! Supervision for every long-running task of the controller (watchers, the lease elector, the
//! status writer, the Canary dispatcher, the telemetry relay, the servers).
//!
//! A task that panics or returns an error is logged with what went wrong, counted in `/metrics`,
//! and started again after an exponential backoff; a task that keeps failing makes `/healthz` fail,
//! so Kubernetes restarts the whole process instead of leaving it half-alive. A task that returns
//! `Ok(())` has finished its job (one-shot work) and is not restarted.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{Instrument, Span, error, info};

/// When to restart and when to call a task unhealthy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The first restart waits this long; each further failure in a row doubles it.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A run this long counts as healthy: the next failure starts the backoff afresh.
    pub stable_after: Duration,
    /// Failures in a row after which `/healthz` fails (until a run lasts `stable_after`).
    pub unhealthy_after: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            unhealthy_after: 5,
        }
    }
}

impl Policy {
    /// The pause before restart number `failures_in_a_row` (1-based).
    pub fn backoff(&self, failures_in_a_row: u32) -> Duration {
        let doublings = failures_in_a_row.saturating_sub(1).min(16);
        self.backoff_base.saturating_mul(1 << doublings).min(self.backoff_max)
    }
}

#[derive(Debug, Default, Clone)]
struct TaskRecord {
    restarts: u64,
    panics: u64,
    failures_in_a_row: u32,
    last_error: Option<String>,
    /// When the current run started; `None` while waiting to restart or after finishing.
    running_since: Option<Instant>,
}

/// A task `/healthz` reports as failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    pub task: String,
    pub failures_in_a_row: u32,
    pub last_error: String,
}

/// Starts tasks and keeps them running; cheap to clone.
#[derive(Clone, Default)]
pub struct Supervisor {
    tasks: Arc<Mutex<BTreeMap<String, TaskRecord>>>,
    policy: Policy,
}

impl Supervisor {
    pub fn new(policy: Policy) -> Self {
        Supervisor { tasks: Arc::default(), policy }
    }

    /// Runs `make()` as task `name` inside `span`, again after every failure. `make` builds a fresh
    /// future each time, from whatever state survives a restart (channels, shared stores).
    pub fn spawn<F, Fut>(&self, name: &str, span: Span, mut make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.to_string();
        let this = self.clone();
        this.update(&name, |_| {});
        tokio::spawn(async move {
            loop {
                let started = Instant::now();
                this.update(&name, |r| r.running_since = Some(started));
                let run = tokio::spawn(make().instrument(span.clone())).await;
                let (failure, panicked) = match run {
                    Ok(Ok(())) => {
                        this.update(&name, |r| r.running_since = None);
                        return;
                    }
                    Ok(Err(e)) => (format!("{e:#}"), false),
                    Err(join) if join.is_panic() => (format!("panicked: {}", panic_message(join.into_panic())), true),
                    // Cancelled: the runtime is shutting down.
                    Err(_) => return,
                };
                let mut wait = Duration::ZERO;
                this.update(&name, |r| {
                    if started.elapsed() >= this.policy.stable_after {
                        r.failures_in_a_row = 0;
                    }
                    r.failures_in_a_row = r.failures_in_a_row.saturating_add(1);
                    r.restarts += 1;
                    r.panics += u64::from(panicked);
                    r.last_error = Some(failure.clone());
                    r.running_since = None;
                    wait = this.policy.backoff(r.failures_in_a_row);
                });
                error!(task = %name, error = %failure, restart_in = ?wait, "task failed; restarting");
                tokio::time::sleep(wait).await;
                info!(task = %name, "task restarting");
            }
        });
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut TaskRecord)) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        f(tasks.entry(name.to_string()).or_default());
    }

    /// Tasks that failed `unhealthy_after` times in a row and have not run stably since.
    pub fn unhealthy(&self) -> Vec<Unhealthy> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks
            .iter()
            .filter(|(_, r)| {
                r.failures_in_a_row >= self.policy.unhealthy_after
                    && r.running_since.is_none_or(|t| t.elapsed() < self.policy.stable_after)
            })
            .map(|(task, r)| Unhealthy {
                task: task.clone(),
                failures_in_a_row: r.failures_in_a_row,
                last_error: r.last_error.clone().unwrap_or_default(),
            })
            .collect()
    }

    /// Restarts per task, panics among them, and health, in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let unhealthy: Vec<String> = self.unhealthy().into_iter().map(|u| u.task).collect();
        let _ = writeln!(
            out,
            "# HELP shifter_controller_task_restarts_total Times a supervised task failed and was restarted.\n\
             # TYPE shifter_controller_task_restarts_total counter"
        );
        for (task, r) in &tasks {
            let _ = writeln!(out, "shifter_controller_task_restarts_total{{task=\"{task}\"}} {}", r.restarts);
        }
        let _ = writeln!(
            out,
            "# HELP shifter_controller_task_panics_total Restarts of a supervised task caused by a panic.\n\
             # TYPE shifter_controller_task_panics_total counter"
        );
        for (task, r) in &tasks {
            let _ = writeln!(out, "shifter_controller_task_panics_total{{task=\"{task}\"}} {}", r.panics);
        }
        let _ = writeln!(
            out,
            "# HELP shifter_controller_task_healthy 0 while a supervised task keeps failing.\n\
             # TYPE shifter_controller_task_healthy gauge"
        );
        for task in tasks.keys() {
            let healthy = i32::from(!unhealthy.contains(task));
            let _ = writeln!(out, "shifter_controller_task_healthy{{task=\"{task}\"}} {healthy}");
        }
    }
}

/// The text a panic carried, when it carried text.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => {
            payload.downcast_ref::<&str>().map_or_else(|| "a panic without a message".into(), |s| s.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fast() -> Policy {
        Policy {
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(4),
            stable_after: Duration::from_secs(3600),
            unhealthy_after: 3,
        }
    }

    async fn until(mut ready: impl FnMut() -> bool) {
        for _ in 0..2000 {
            if ready() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn a_panicking_task_is_restarted_counted_and_reported_unhealthy() {
        let supervisor = Supervisor::new(fast());
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        supervisor.spawn("canaries", Span::none(), move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    panic!("cannot convert float seconds to Duration");
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        until(|| runs.load(Ordering::SeqCst) == 4).await;
        let mut metrics = String::new();
        supervisor.render(&mut metrics);
        assert!(metrics.contains("shifter_controller_task_restarts_total{task=\"canaries\"} 3"), "{metrics}");
        assert!(metrics.contains("shifter_controller_task_panics_total{task=\"canaries\"} 3"), "{metrics}");
        let unhealthy = supervisor.unhealthy();
        assert_eq!(unhealthy.len(), 1, "three failures in a row and no stable run since");
        assert!(unhealthy[0].last_error.contains("cannot convert float seconds"), "{unhealthy:?}");
    }

    #[tokio::test]
    async fn an_error_exit_is_restarted_and_a_finished_task_is_not() {
        let supervisor = Supervisor::new(fast());
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        supervisor.spawn("relay", Span::none(), move || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move { if n == 0 { Err(anyhow::anyhow!("stream ended")) } else { Ok(()) } }
        });
        until(|| runs.load(Ordering::SeqCst) == 2).await;
        // The supervisor marks a finished task as not running, then stops looking after it.
        until(|| supervisor.tasks.lock().unwrap()["relay"].running_since.is_none()).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "a task that finished is not started again");
        assert!(supervisor.unhealthy().is_empty(), "one failure is not a failing task");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = Policy { backoff_base: Duration::from_millis(250), backoff_max: Duration::from_secs(30), ..fast() };
        assert_eq!(p.backoff(1), Duration::from_millis(250));
        assert_eq!(p.backoff(2), Duration::from_millis(500));
        assert_eq!(p.backoff(4), Duration::from_secs(2));
        assert_eq!(p.backoff(60), Duration::from_secs(30));
    }
}
