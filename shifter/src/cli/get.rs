//! `get`: every TrafficSplit and Canary in a namespace (or all), one line each.

use kube::Api;
use kube::api::ListParams;
use shifter_crds::canary::{Canary, effective_steps};
use shifter_crds::traffic_split::TrafficSplit;

use super::args::GetArgs;
use super::commands::weights_line;
use super::connect::connect;
use super::error::{CliError, request_error};
use super::output::{list, print_object};
use super::render::{Colour, Style, paint, phase_colour, table, truncate, verdict_colour};

/// Longest verdict reason shown on one line; `status` shows it whole.
const REASON_WIDTH: usize = 80;

pub async fn get(args: GetArgs) -> Result<(), CliError> {
    let target = connect(&args.connect).await?;
    let (splits, canaries): (Api<TrafficSplit>, Api<Canary>) = if args.all_namespaces {
        (Api::all(target.client.clone()), Api::all(target.client))
    } else {
        (Api::namespaced(target.client.clone(), &target.namespace), Api::namespaced(target.client, &target.namespace))
    };
    let lp = ListParams::default();
    let splits = splits
        .list(&lp)
        .await
        .map_err(|e| request_error("listing trafficsplits", "TrafficSplit (split.smi-spec.io)", e))?
        .items;
    let canaries =
        canaries.list(&lp).await.map_err(|e| request_error("listing canaries", "Canary (shifter.dev)", e))?.items;

    if let Some(format) = args.output {
        let mut items = Vec::new();
        for s in &splits {
            items.push(serde_json::to_value(s).map_err(|e| CliError::Output(e.to_string()))?);
        }
        for c in &canaries {
            items.push(serde_json::to_value(c).map_err(|e| CliError::Output(e.to_string()))?);
        }
        return print_object(format, &list(items));
    }
    if splits.is_empty() && canaries.is_empty() {
        let place =
            if args.all_namespaces { "any namespace".into() } else { format!("namespace {}", target.namespace) };
        eprintln!("No TrafficSplits or Canaries found in {place}.");
        return Ok(());
    }
    print!("{}", render_table(&splits, &canaries, args.all_namespaces, Style::for_stdout()));
    Ok(())
}

pub fn render_table(splits: &[TrafficSplit], canaries: &[Canary], namespaces: bool, style: Style) -> String {
    let mut rows = vec![header(namespaces)];
    rows.extend(splits.iter().map(|s| with_namespace(namespaces, s.metadata.namespace.as_deref(), split_row(s))));
    rows.extend(
        canaries.iter().map(|c| with_namespace(namespaces, c.metadata.namespace.as_deref(), canary_row(c, style))),
    );
    table(&rows)
}

fn header(namespaces: bool) -> Vec<String> {
    let cols = ["NAME", "SERVICE", "STATE", "DETAIL"];
    with_namespace(namespaces, Some("NAMESPACE"), cols.iter().map(|c| c.to_string()).collect())
}

fn with_namespace(namespaces: bool, ns: Option<&str>, mut row: Vec<String>) -> Vec<String> {
    if namespaces {
        row.insert(0, ns.unwrap_or("").to_string());
    }
    row
}

/// `trafficsplit/web  web  web-v1=90 web-v2=10  proxies 2/2, driven by canary/web`.
pub fn split_row(split: &TrafficSplit) -> Vec<String> {
    let name = split.metadata.name.as_deref().unwrap_or("?");
    let mut detail = Vec::new();
    if let Some(proxies) = split.status.as_ref().and_then(|s| s.proxies.as_deref()) {
        detail.push(format!("proxies {proxies}"));
    }
    if let Some(owner) = split.metadata.owner_references.iter().flatten().find(|o| o.kind == "Canary") {
        detail.push(format!("driven by canary/{}", owner.name));
    }
    vec![
        format!("trafficsplit/{name}"),
        split.spec.service.clone(),
        weights_line(&split.spec.backends),
        detail.join(", "),
    ]
}

/// `canary/web  web  Progressing web-v2 at 20% (step 2/3)  Pass: reason`.
pub fn canary_row(canary: &Canary, style: Style) -> Vec<String> {
    let name = canary.metadata.name.as_deref().unwrap_or("?");
    let status = canary.status.clone().unwrap_or_default();
    let phase = paint(style, phase_colour(status.phase), &format!("{:?}", status.phase));
    let steps = effective_steps(&canary.spec).len();
    let subject = status.canary.as_deref().unwrap_or(&canary.spec.canary);
    let state = match status.phase {
        shifter_crds::CanaryPhase::Idle => {
            format!("{phase} {} serving", status.stable.as_deref().unwrap_or(&canary.spec.stable))
        }
        shifter_crds::CanaryPhase::Succeeded => format!("{phase} {subject} promoted"),
        shifter_crds::CanaryPhase::RolledBack => format!("{phase} {subject} rolled back"),
        _ => format!("{phase} {subject} at {}% (step {}/{steps})", status.canary_weight, status.current_step + 1),
    };
    let detail = match &status.last_verdict {
        Some(v) => format!(
            "{}: {}",
            paint(style, verdict_colour(v.result), &format!("{:?}", v.result)),
            truncate(&v.reason, REASON_WIDTH)
        ),
        None if canary.spec.paused => paint(style, Colour::Yellow, "paused (spec.paused)"),
        None => String::new(),
    };
    vec![format!("canary/{name}"), canary.spec.service.clone(), state, detail]
}

#[cfg(test)]
mod tests {
    use super::*;
    use shifter_crds::canary::{CanaryStatus, VerdictRecord, VerdictResult};
    use shifter_crds::traffic_split::{Backend, TrafficSplitSpec};

    fn mk_split(name: &str, backends: &[(&str, i64)]) -> TrafficSplit {
        let backends = backends.iter().map(|(s, w)| Backend { service: s.to_string(), weight: *w }).collect();
        let mut s = TrafficSplit::new(name, TrafficSplitSpec { service: name.into(), matches: vec![], backends });
        s.metadata.namespace = Some("shop".into());
        s
    }

    fn mk_canary(phase: shifter_crds::CanaryPhase, weight: u32, step: u32) -> Canary {
        let mut c = crate::cli::test_canary();
        c.status = Some(CanaryStatus {
            phase,
            canary: Some("web-v2".into()),
            stable: Some("web-v1".into()),
            canary_weight: weight,
            current_step: step,
            last_verdict: Some(VerdictRecord {
                result: VerdictResult::Pass,
                reason: "canary 100.00% vs stable 99.90% success".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    #[test]
    fn one_line_per_object_with_weights_phase_and_verdict() {
        let out = render_table(
            &[mk_split("web", &[("web-v1", 90), ("web-v2", 10)])],
            &[mk_canary(shifter_crds::CanaryPhase::Progressing, 20, 1)],
            false,
            Style::PLAIN,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("NAME") && lines[0].contains("STATE"), "{out}");
        assert!(lines[1].starts_with("trafficsplit/web") && lines[1].contains("web-v1=90 web-v2=10"), "{out}");
        assert!(lines[2].starts_with("canary/web"), "{out}");
        assert!(lines[2].contains("Progressing web-v2 at 20% (step 2/3)"), "{out}");
        assert!(lines[2].contains("Pass: canary 100.00% vs stable"), "{out}");
    }

    #[test]
    fn all_namespaces_adds_the_namespace_and_finished_rollouts_say_how() {
        let out = render_table(&[], &[mk_canary(shifter_crds::CanaryPhase::RolledBack, 0, 1)], true, Style::PLAIN);
        let line = out.lines().nth(1).unwrap();
        assert!(line.starts_with("shop") && line.contains("RolledBack web-v2 rolled back"), "{out}");
    }
}
