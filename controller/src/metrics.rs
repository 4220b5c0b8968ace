//! The controller's own Prometheus metrics: reconciles and their duration, connected proxy streams,
//! snapshot pushes and push latency.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use shifter_crds::canary::{CanaryPhase, VerdictResult};
use std::time::Duration;

/// Bucket bounds in seconds for push and reconcile latency.
const BOUNDS_S: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A fixed-bucket histogram safe to update from many tasks.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BOUNDS_S.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BOUNDS_S.iter().position(|b| s <= *b).unwrap_or(BOUNDS_S.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BOUNDS_S.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[BOUNDS_S.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Every metric the controller exports.
#[derive(Default)]
pub struct ControllerMetrics {
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
    pub reconcile_duration: Histogram,
    pub watch_streams: AtomicI64,
    pub snapshot_pushes: AtomicU64,
    pub push_latency: Histogram,
    pub telemetry_windows: AtomicU64,
    pub status_writes: AtomicU64,
    pub events: AtomicU64,
    pub leader: AtomicI64,
    /// Per Canary (namespace, name): weight, phase and verdict counts.
    canaries: Mutex<BTreeMap<(String, String), CanaryGauges>>,
    /// Telemetry windows refused, by reason.
    telemetry_rejected: Mutex<BTreeMap<&'static str, u64>>,
}

#[derive(Default)]
struct CanaryGauges {
    weight: u32,
    phase: CanaryPhase,
    verdicts: BTreeMap<&'static str, u64>,
}

impl ControllerMetrics {
    /// Records a Canary's state after a tick.
    pub fn record_canary(
        &self,
        key: &(String, String),
        weight: u32,
        phase: CanaryPhase,
        verdict: Option<VerdictResult>,
    ) {
        let mut all = self.canaries.lock().unwrap_or_else(|p| p.into_inner());
        let g = all.entry(key.clone()).or_default();
        g.weight = weight;
        g.phase = phase;
        if let Some(v) = verdict {
            let name = match v {
                VerdictResult::Pass => "Pass",
                VerdictResult::Fail => "Fail",
                VerdictResult::Inconclusive => "Inconclusive",
                VerdictResult::Error => "Error",
            };
            *g.verdicts.entry(name).or_default() += 1;
        }
    }

    /// Counts a telemetry window refused for `reason`.
    pub fn record_rejected_window(&self, reason: &'static str) {
        *self.telemetry_rejected.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_default() += 1;
    }

    fn render_rejected_windows(&self, out: &mut String) {
        let name = "shifter_controller_telemetry_rejected_windows_total";
        let _ = writeln!(out, "# HELP {name} Telemetry windows refused as invalid, by reason.\n# TYPE {name} counter");
        for (reason, n) in self.telemetry_rejected.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
        }
    }

    /// Forgets Canaries that no longer exist.
    pub fn retain_canaries(&self, live: &[(String, String)]) {
        self.canaries.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| live.contains(k));
    }

    fn render_canaries(&self, out: &mut String) {
        let all = self.canaries.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP shifter_canary_weight Percent of traffic on the canary.\n# TYPE shifter_canary_weight gauge"
        );
        for ((ns, name), g) in all.iter() {
            let _ = writeln!(out, "shifter_canary_weight{{namespace=\"{ns}\",name=\"{name}\"}} {}", g.weight);
        }
        let _ = writeln!(
            out,
            "# HELP shifter_canary_phase 1 for the phase each Canary is in.\n# TYPE shifter_canary_phase gauge"
        );
        for ((ns, name), g) in all.iter() {
            let _ =
                writeln!(out, "shifter_canary_phase{{namespace=\"{ns}\",name=\"{name}\",phase=\"{:?}\"}} 1", g.phase);
        }
        let _ = writeln!(
            out,
            "# HELP shifter_canary_verdicts_total Analysis verdicts per result.\n# TYPE shifter_canary_verdicts_total counter"
        );
        for ((ns, name), g) in all.iter() {
            for (result, n) in &g.verdicts {
                let _ = writeln!(
                    out,
                    "shifter_canary_verdicts_total{{namespace=\"{ns}\",name=\"{name}\",result=\"{result}\"}} {n}"
                );
            }
        }
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(
            &mut out,
            "shifter_controller_reconciles_total",
            "Status reconciles run.",
            self.reconciles.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "shifter_controller_reconcile_errors_total",
            "Status reconciles that failed.",
            self.reconcile_errors.load(Ordering::Relaxed),
        );
        self.reconcile_duration.render(
            "shifter_controller_reconcile_duration_seconds",
            "Time to reconcile one object.",
            &mut out,
        );
        gauge(
            &mut out,
            "shifter_controller_connected_proxies",
            "Open Destinations.Watch streams.",
            self.watch_streams.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "shifter_controller_snapshot_pushes_total",
            "Snapshots sent to proxies.",
            self.snapshot_pushes.load(Ordering::Relaxed),
        );
        self.push_latency.render(
            "shifter_controller_push_latency_seconds",
            "Time from an index change to its snapshot being handed to a proxy stream.",
            &mut out,
        );
        counter(
            &mut out,
            "shifter_controller_telemetry_windows_total",
            "Telemetry windows received from proxies.",
            self.telemetry_windows.load(Ordering::Relaxed),
        );
        self.render_rejected_windows(&mut out);
        counter(
            &mut out,
            "shifter_controller_status_writes_total",
            "Status patches written.",
            self.status_writes.load(Ordering::Relaxed),
        );
        counter(&mut out, "shifter_controller_events_total", "Events recorded.", self.events.load(Ordering::Relaxed));
        gauge(
            &mut out,
            "shifter_controller_leader",
            "1 while this replica holds the leader lease.",
            self.leader.load(Ordering::Relaxed),
        );
        self.render_canaries(&mut out);
        out
    }
}
