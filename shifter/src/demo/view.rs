//! What the demo prints: a banner with the addresses to poke at, a live line per moment of each
//! rollout, and a summary.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use shifter::cli::render::{Colour, Style, paint, phase_colour, verdict_colour, weight_bar};
use shifter_crds::canary::Canary;

use super::load::{Load, VersionView};

/// How a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Promoted,
    RolledBack,
    /// Neither within the demo's limit.
    Stuck,
}

impl Outcome {
    fn text(self) -> &'static str {
        match self {
            Outcome::Promoted => "promoted",
            Outcome::RolledBack => "rolled back",
            Outcome::Stuck => "did not finish",
        }
    }
}

/// One rollout, for the summary.
#[derive(Debug, Clone)]
pub struct RolloutReport {
    pub from: String,
    pub to: String,
    pub outcome: Outcome,
    pub expected: Outcome,
    pub took: Duration,
    /// Requests the new version answered during its rollout, and how many of them failed.
    pub canary_requests: u64,
    pub canary_failures: u64,
    pub why: String,
}

pub struct View {
    style: Style,
}

impl View {
    pub fn for_stdout() -> View {
        View { style: Style::for_stdout() }
    }

    fn bold(&self, text: &str) -> String {
        paint(self.style, Colour::Bold, text)
    }

    pub fn banner(
        &self,
        kubeconfig: &Path,
        gateway: SocketAddr,
        proxy_admin: Option<SocketAddr>,
        prometheus: Option<&str>,
        releases: &str,
    ) {
        println!("{}", self.bold("shifter demo"));
        println!("  An API server, the controller, a gateway proxy, versions of a web service and its users,");
        println!("  all in this process. web-v1 serves today; the demo rolls out {releases}.");
        println!();
        println!("  watch it with kubectl:  kubectl --kubeconfig {} get ts,canary -n demo", kubeconfig.display());
        println!("  or the live view:       shifter status web -n demo --watch --kubeconfig {}", kubeconfig.display());
        println!("  send a request:         curl -i http://{gateway}/");
        if let Some(admin) = proxy_admin {
            println!("  proxy metrics:          http://{admin}/metrics");
        }
        match prometheus {
            Some(url) => {
                println!("  analysis:               Prometheus at {url} (it must scrape the proxy metrics above)")
            }
            None => println!("  analysis:               the mesh's own telemetry (no Prometheus needed)"),
        }
        println!("  Ctrl-C stops everything and removes what the demo wrote.");
        println!();
    }

    pub fn rollout_header(&self, stable: &str, canary: &str, describe: &str) {
        println!("{}", self.bold(&format!("Rolling out {canary} ({describe}) in place of {stable}")));
    }

    /// One moment of a rollout: phase, weights, what users see per version, the last verdict.
    pub fn progress(&self, elapsed: Duration, canary: &Canary, traffic: &[VersionView]) {
        let status = canary.status.clone().unwrap_or_default();
        let stable = status.stable.as_deref().unwrap_or(&canary.spec.stable);
        let bar = weight_bar(stable, &canary.spec.canary, status.canary_weight, 20, self.style);
        let phase = paint(self.style, phase_colour(status.phase), &format!("{:?}", status.phase));
        println!("  {:>4}s  {phase:<12} {bar}", elapsed.as_secs());
        let shown: Vec<String> = traffic
            .iter()
            .filter(|v| v.version == stable || v.version == canary.spec.canary)
            .map(|v| format!("{} {:.1}% ok, p99 {:.0} ms, {:.0} req/s", v.version, v.success_percent, v.p99_ms, v.rps))
            .collect();
        if !shown.is_empty() {
            println!("         users see: {}", shown.join(" | "));
        }
        if let Some(verdict) = &status.last_verdict {
            let result = paint(self.style, verdict_colour(verdict.result), &format!("{:?}", verdict.result));
            println!("         verdict:   {result} — {}", verdict.reason);
        }
    }

    pub fn rollout_end(&self, report: &RolloutReport) {
        let colour = match report.outcome {
            Outcome::Promoted => Colour::Green,
            Outcome::RolledBack | Outcome::Stuck => Colour::Red,
        };
        let what = paint(self.style, colour, &format!("{} {}", report.to, report.outcome.text()));
        println!("  => {what} after {}s: {}", report.took.as_secs(), report.why);
        println!();
    }

    /// Prints the summary; true when every rollout ended as its release deserved.
    pub fn summary(&self, reports: &[RolloutReport], load: &Load, total: Duration) -> bool {
        println!("{}", self.bold("Summary"));
        let mut all_expected = true;
        for r in reports {
            let ok = r.outcome == r.expected;
            all_expected &= ok;
            let mark = if ok {
                paint(self.style, Colour::Green, "as expected")
            } else {
                paint(self.style, Colour::Red, &format!("UNEXPECTED (should be {})", r.expected.text()))
            };
            println!(
                "  {} -> {}: {} in {}s, {mark}; {} served {} requests during it, {} failed",
                r.from,
                r.to,
                r.outcome.text(),
                r.took.as_secs(),
                r.to,
                r.canary_requests,
                r.canary_failures
            );
            println!("      {}", r.why);
        }
        let (totals, unanswered) = load.totals();
        let requests: u64 = totals.values().map(|t| t.0).sum::<u64>() + unanswered;
        let failed: u64 = totals.values().map(|t| t.1).sum::<u64>() + unanswered;
        println!(
            "  users sent {requests} requests in {}s; {failed} failed ({:.2}%), {unanswered} of them without an answer",
            total.as_secs(),
            100.0 * failed as f64 / requests.max(1) as f64
        );
        all_expected
    }
}

/// The sentence the controller wrote when it promoted the canary (the Promoted condition).
pub fn promoted_message(canary: &Canary) -> String {
    let status = canary.status.as_ref();
    let promoted = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Promoted" && c.status == "True"));
    promoted.map_or_else(|| "promoted".into(), |c| c.message.clone())
}
