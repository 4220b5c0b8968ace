//! `status NAME [--watch]`: one Canary at a glance — the weight bar, traffic per version, the last
//! verdict and why, recent history and progress through the steps. `--watch` redraws on every
//! change (the watch API); on a terminal it redraws in place, elsewhere it appends.

use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::watch_object;
use shifter_crds::canary::{Canary, CanaryPhase, effective_steps};

use super::args::StatusArgs;
use super::commands::get_canary;
use super::connect::connect;
use super::error::CliError;
use super::output::print_object;
use super::render::{
    Colour, Style, age, millis, paint, percent, phase_colour, step_progress, table, verdict_colour, weight_bar,
};

/// Width of the weight bar in cells.
const BAR_WIDTH: usize = 40;
/// Verdicts shown from `status.history`, newest last.
const HISTORY_SHOWN: usize = 5;

pub async fn status(args: StatusArgs) -> Result<(), CliError> {
    let target = connect(&args.connect).await?;
    let api: Api<Canary> = Api::namespaced(target.client, &target.namespace);
    let canary = get_canary(&api, &args.name, &target.namespace).await?;
    let style = Style::for_stdout();
    let show = |c: &Canary| -> Result<(), CliError> {
        match args.output {
            Some(format) => print_object(format, c),
            None => {
                let view = render(c, Timestamp::now(), style);
                if style.unicode && args.watch {
                    // Home, then overwrite each line and clear what is left: a live view without flicker.
                    print!("\x1b[H{}\x1b[J", view.replace('\n', "\x1b[K\n"));
                } else {
                    print!("{view}");
                    if args.watch {
                        println!();
                    }
                }
                std::io::stdout().flush().map_err(|e| CliError::Output(e.to_string()))
            }
        }
    };
    if !args.watch {
        return show(&canary);
    }
    let mut last = Some(canary);
    let mut changes = watch_object(api, &args.name).default_backoff().boxed();
    // On a terminal the ages tick once a second; elsewhere only changes are printed.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut drawn_version = None;
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(Some(c))) => last = Some(c),
                Some(Ok(None)) => {
                    eprintln!("canary {} was deleted", args.name);
                    return Ok(());
                }
                Some(Err(e)) => {
                    eprintln!("warning: watching canary {}: {e}; retrying", args.name);
                    continue;
                }
                None => return Ok(()),
            },
            _ = tick.tick(), if style.unicode && args.output.is_none() => {
                drawn_version = None;
            }
        }
        if let Some(c) = &last {
            let version = c.metadata.resource_version.clone();
            if drawn_version != Some(version.clone()) {
                show(c)?;
                drawn_version = Some(version);
            }
        }
    }
}

fn line(out: &mut String, text: String) {
    out.push_str(&text);
    out.push('\n');
}

/// The whole view as text.
pub fn render(canary: &Canary, now: Timestamp, style: Style) -> String {
    let spec = &canary.spec;
    let status = canary.status.clone().unwrap_or_default();
    let name = canary.metadata.name.as_deref().unwrap_or("?");
    let namespace = canary.metadata.namespace.as_deref().unwrap_or("?");
    let stable = status.stable.as_deref().unwrap_or(&spec.stable);
    let subject = status.canary.as_deref().unwrap_or(&spec.canary);
    let steps: Vec<u32> = effective_steps(spec).iter().map(|s| s.weight).collect();
    let mut out = String::new();

    line(
        &mut out,
        format!("{} in {namespace}: service {}", paint(style, Colour::Bold, &format!("canary/{name}")), spec.service),
    );
    let mut phase = paint(style, phase_colour(status.phase), &format!("{:?}", status.phase));
    if spec.paused {
        phase.push_str(&paint(style, Colour::Yellow, " (spec.paused: `kubectl shift resume` continues)"));
    }
    let in_rollout = !matches!(status.phase, CanaryPhase::Idle);
    let mut summary = format!("phase:   {phase}");
    if in_rollout {
        summary.push_str(&format!(", {subject} at {}%", status.canary_weight));
        if matches!(status.phase, CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::WaitingConfirmation) {
            summary.push_str(&format!(", step {}/{}", status.current_step + 1, steps.len()));
            summary.push_str(&format!(", failed checks {}", status.failed_checks));
        }
        if let Some(started) = &status.rollout_started_at {
            summary.push_str(&format!(", started {} ago", age(started, now)));
        }
    }
    line(&mut out, summary);
    line(&mut out, format!("traffic: {}", weight_bar(stable, subject, status.canary_weight, BAR_WIDTH, style)));
    line(&mut out, format!("steps:   {}", step_progress(&steps, status.phase, status.current_step, style)));

    if status.backends.is_empty()
        && matches!(status.phase, CanaryPhase::Progressing | CanaryPhase::Paused | CanaryPhase::WaitingConfirmation)
    {
        line(&mut out, String::new());
        line(&mut out, "no traffic reported yet: analysis needs requests through the mesh to judge the canary".into());
    }
    if !status.backends.is_empty() {
        let window = status.backends.iter().map(|b| b.window_seconds).max().unwrap_or(0);
        line(&mut out, String::new());
        let mut rows = vec![vec![
            "  VERSION".to_string(),
            "WEIGHT".into(),
            "RPS".into(),
            "SUCCESS".into(),
            format!("P99   (last {window}s)"),
        ]];
        for b in &status.backends {
            rows.push(vec![
                format!("  {}", b.service),
                format!("{}%", b.weight),
                format!("{:.1}", b.rps),
                percent(b.success_rate),
                millis(b.p99_ms),
            ]);
        }
        out.push_str(&table(&rows));
    }

    if let Some(v) = &status.last_verdict {
        line(&mut out, String::new());
        line(
            &mut out,
            format!(
                "verdict: {} at step {} ({}%), {} ago",
                paint(style, verdict_colour(v.result), &format!("{:?}", v.result)),
                v.step + 1,
                v.weight,
                age(&v.time, now)
            ),
        );
        line(&mut out, format!("         {}", v.reason));
    }
    let history: Vec<_> = status
        .history
        .iter()
        .rev()
        .take(HISTORY_SHOWN)
        .rev()
        .filter(|h| Some(*h) != status.last_verdict.as_ref())
        .collect();
    if !history.is_empty() {
        line(&mut out, "history:".into());
        for h in history {
            line(
                &mut out,
                format!(
                    "  {:>4} ago  {}  step {} ({}%)  {}",
                    age(&h.time, now),
                    paint(style, verdict_colour(h.result), &format!("{:<12}", format!("{:?}", h.result))),
                    h.step + 1,
                    h.weight,
                    h.reason
                ),
            );
        }
    }
    let conditions: Vec<_> = status.conditions.iter().filter(|c| !c.message.is_empty()).collect();
    if !conditions.is_empty() {
        line(&mut out, "conditions:".into());
        for c in conditions {
            line(&mut out, format!("  {}={} {}: {}", c.type_, c.status, c.reason, c.message));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shifter_crds::canary::{BackendStats, CanaryStatus, VerdictRecord, VerdictResult};

    fn canary() -> Canary {
        let mut c = crate::cli::test_canary();
        let verdict = |result, reason: &str, time: &str| VerdictRecord {
            result,
            reason: reason.into(),
            time: time.into(),
            step: 1,
            weight: 20,
        };
        c.status = Some(CanaryStatus {
            phase: CanaryPhase::Progressing,
            stable: Some("web-v1".into()),
            canary: Some("web-v2".into()),
            current_step: 1,
            canary_weight: 20,
            last_verdict: Some(verdict(VerdictResult::Pass, "canary 100.00% vs stable 99.95%", "2026-01-01T11:59:58Z")),
            history: vec![
                verdict(VerdictResult::Inconclusive, "only 12 canary requests", "2026-01-01T11:59:48Z"),
                verdict(VerdictResult::Pass, "canary 100.00% vs stable 99.95%", "2026-01-01T11:59:58Z"),
            ],
            backends: vec![
                BackendStats {
                    service: "web-v1".into(),
                    weight: 80,
                    rps: 40.25,
                    success_rate: Some(99.95),
                    p99_ms: Some(25.0),
                    window_seconds: 60,
                },
                BackendStats {
                    service: "web-v2".into(),
                    weight: 20,
                    rps: 10.0,
                    success_rate: None,
                    p99_ms: None,
                    window_seconds: 60,
                },
            ],
            ..Default::default()
        });
        c
    }

    #[test]
    fn the_view_shows_bar_steps_traffic_and_verdicts() {
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let view = render(&canary(), now, Style::PLAIN);
        assert!(view.starts_with("canary/web in shop: service web\n"), "{view}");
        assert!(view.contains("phase:   Progressing, web-v2 at 20%, step 2/3, failed checks 0"), "{view}");
        assert!(view.contains("traffic: web-v1 80% ################################........ 20% web-v2"), "{view}");
        assert!(view.contains("steps:   10 -> [20] -> 50 -> 100"), "{view}");
        assert!(view.contains("P99   (last 60s)"), "{view}");
        let v1 = view.lines().find(|l| l.trim_start().starts_with("web-v1 ")).unwrap();
        assert!(v1.contains("80%") && v1.contains("40.2") && v1.contains("99.95%") && v1.contains("25ms"), "{v1}");
        let v2 = view.lines().find(|l| l.trim_start().starts_with("web-v2 ")).unwrap();
        assert!(v2.contains("20%") && v2.contains("10.0") && v2.ends_with('-'), "{v2}");
        assert!(
            view.contains("verdict: Pass at step 2 (20%), 2s ago\n         canary 100.00% vs stable 99.95%"),
            "{view}"
        );
        assert!(view.contains("12s ago  Inconclusive  step 2 (20%)  only 12 canary requests"), "{view}");
    }

    #[test]
    fn a_rollout_without_traffic_says_so() {
        let mut c = canary();
        c.status.as_mut().unwrap().backends.clear();
        let view = render(&c, Timestamp::now(), Style::PLAIN);
        assert!(view.contains("no traffic reported yet"), "{view}");
        assert!(!view.contains("VERSION"), "{view}");
    }

    #[test]
    fn a_paused_canary_says_how_to_continue() {
        let mut c = canary();
        c.spec.paused = true;
        let view = render(&c, Timestamp::now(), Style::PLAIN);
        assert!(view.contains("Progressing (spec.paused: `kubectl shift resume` continues)"), "{view}");
    }
}
