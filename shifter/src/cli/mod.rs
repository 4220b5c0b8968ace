//! The verbs people and pipelines type: `get`, `status`, `promote`, `abort`, `pause`, `resume`,
//! `weight`, `start`, `wait` (and `crds`). They run as `shifter VERB` and, through the
//! `kubectl-shift` executable, as `kubectl shift VERB`.
//!
//! Exit codes: 0 success; 2 for bad arguments and API errors; `wait` exits 1 when the rollout was
//! rolled back. Colour and live redraws only when stdout is a terminal.

pub mod args;
pub mod commands;
pub mod connect;
pub mod error;
pub mod get;
pub mod output;
pub mod render;
pub mod status;
pub mod wait;

/// The Canary unit tests start from: `shop/web`, rolling `web-v2` out in place of `web-v1`.
#[cfg(test)]
pub(crate) fn test_canary() -> shifter_crds::Canary {
    let spec = shifter_crds::CanarySpec {
        service: "web".into(),
        stable: "web-v1".into(),
        canary: "web-v2".into(),
        ..Default::default()
    };
    let mut c = shifter_crds::Canary::new("web", spec);
    c.metadata.namespace = Some("shop".into());
    c
}

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// The verbs shared by `shifter` and `kubectl shift`.
#[derive(Subcommand, Debug, Clone)]
pub enum Verb {
    /// List every TrafficSplit and Canary, one line each (weights, phase, last verdict).
    Get(args::GetArgs),
    /// Show a Canary: weight bar, traffic per version, verdicts, progress through the steps.
    Status(args::StatusArgs),
    /// Move a Canary to its next step now (or, with --full, to 100%), e.g. past a confirmation gate.
    Promote(args::PromoteArgs),
    /// Roll a Canary back now: all traffic returns to the stable version.
    Abort(args::CanaryArgs),
    /// Hold a Canary where it is (sets spec.paused).
    Pause(args::CanaryArgs),
    /// Continue a paused Canary, also after a pause caused by a manual edit of its TrafficSplit.
    Resume(args::CanaryArgs),
    /// Set backend weights on a TrafficSplit, e.g. `weight web web-v1=80 web-v2=20`.
    ///
    /// Every backend named must already be in the split (an unknown one is an error; add backends
    /// with `kubectl edit`); backends not named keep their weight. Written with field manager
    /// `kubectl-shift`, so the controller's Event says who changed the weights.
    Weight(args::WeightArgs),
    /// Start rolling out a new version: sets the Canary's spec.canary to SERVICE.
    Start(args::StartArgs),
    /// Wait for the rollout of the Canary's current spec.canary to end (exit 0 promoted, 1 rolled back).
    ///
    /// Exit 2 on timeout, a missing Canary or an API error. A finished rollout of an earlier
    /// version does not count. Progress lines go to stderr.
    Wait(args::WaitArgs),
}

/// `kubectl shift ...`: the verbs plus `crds`.
#[derive(Parser, Debug)]
#[command(
    name = "kubectl-shift",
    bin_name = "kubectl shift",
    version,
    about = "Traffic shifting and canaries with shifter",
    after_help = "Exit codes: 0 success, 1 `wait` saw a rollback, 2 bad arguments, API errors or a `wait` timeout.\n\
                  Install: put `kubectl-shift` on PATH (`cargo install --path shifter` installs it), or link the \
                  shifter binary under that name: ln -s \"$(command -v shifter)\" ~/.local/bin/kubectl-shift"
)]
pub struct Plugin {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Print every CustomResourceDefinition shifter serves, as YAML (pipe it to `kubectl apply -f -`).
    Crds,
    #[command(flatten)]
    Verb(Verb),
}

/// Runs a verb to completion on its own runtime and maps the outcome to an exit code, printing any
/// error on stderr.
pub fn run_blocking(verb: Verb) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(verb)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs a verb; the exit code is 0 except for `wait`.
pub async fn run(verb: Verb) -> Result<u8, CliError> {
    match verb {
        Verb::Get(a) => get::get(a).await.map(|()| 0),
        Verb::Status(a) => status::status(a).await.map(|()| 0),
        Verb::Promote(a) => commands::promote(a).await.map(|()| 0),
        Verb::Abort(a) => commands::abort(a).await.map(|()| 0),
        Verb::Pause(a) => commands::pause(a).await.map(|()| 0),
        Verb::Resume(a) => commands::resume(a).await.map(|()| 0),
        Verb::Weight(a) => commands::weight(a).await.map(|()| 0),
        Verb::Start(a) => commands::start(a).await.map(|()| 0),
        Verb::Wait(a) => wait::wait(a).await,
    }
}

/// Connection flags that take a value; `kubectl shift -n shop get` may give them before the verb.
const LEADING_FLAGS: [&str; 4] = ["-n", "--namespace", "--kubeconfig", "--context"];

/// Moves connection flags written before the verb (`kubectl shift -n shop wait web`, as people
/// type with kubectl) to after it, where each verb declares them.
pub fn hoist_leading_flags(args: Vec<String>) -> Vec<String> {
    let mut leading = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let arg = &args[i];
        let joined = LEADING_FLAGS.iter().any(|f| f.starts_with("--") && arg.starts_with(&format!("{f}=")))
            || (arg.starts_with("-n") && arg.len() > 2 && !arg.starts_with("--"));
        if joined {
            leading.push(arg.clone());
            i += 1;
        } else if LEADING_FLAGS.contains(&arg.as_str()) && i + 1 < args.len() {
            leading.extend([arg.clone(), args[i + 1].clone()]);
            i += 2;
        } else {
            break;
        }
    }
    if leading.is_empty() || i >= args.len() {
        return args;
    }
    let mut out = vec![args[0].clone(), args[i].clone()];
    out.extend(leading);
    out.extend(args[i + 1..].iter().cloned());
    out
}

/// True when this process was started as `kubectl-shift` (e.g. through a symlink to `shifter`).
pub fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .and_then(|arg0| std::path::Path::new(&arg0).file_stem().map(|s| s == "kubectl-shift"))
        .unwrap_or(false)
}

/// The `kubectl-shift` executable's main.
pub fn plugin_main() -> ExitCode {
    match Plugin::parse_from(hoist_leading_flags(std::env::args().collect())).command {
        PluginCommand::Crds => {
            print!("{}", shifter_crds::crds_yaml());
            ExitCode::SUCCESS
        }
        PluginCommand::Verb(verb) => run_blocking(verb),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Plugin, clap::Error> {
        Plugin::try_parse_from(std::iter::once("kubectl-shift").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Plugin::command().debug_assert();
    }

    #[test]
    fn verbs_parse_with_kubectl_style_flags() {
        let p = parse(&["weight", "web", "web-v1=80", "web-v2=20", "-n", "shop", "--context", "kind"]).unwrap();
        let PluginCommand::Verb(Verb::Weight(w)) = p.command else { panic!("not weight") };
        assert_eq!(w.weights.len(), 2);
        assert_eq!(w.connect.namespace.as_deref(), Some("shop"));
        assert_eq!(w.connect.context.as_deref(), Some("kind"));

        let p = parse(&["wait", "web", "--timeout", "90s"]).unwrap();
        let PluginCommand::Verb(Verb::Wait(w)) = p.command else { panic!("not wait") };
        assert_eq!(w.timeout.as_secs(), 90);
        let p = parse(&["wait", "web"]).unwrap();
        let PluginCommand::Verb(Verb::Wait(w)) = p.command else { panic!("not wait") };
        assert_eq!(w.timeout.as_secs(), 600, "default 10m");

        let p = parse(&["get", "-A", "-o", "yaml"]).unwrap();
        let PluginCommand::Verb(Verb::Get(g)) = p.command else { panic!("not get") };
        assert!(g.all_namespaces && g.output == Some(args::OutputFormat::Yaml));
        assert!(
            matches!(parse(&["promote", "web", "--full"]).unwrap().command, PluginCommand::Verb(Verb::Promote(p)) if p.full)
        );
        assert!(matches!(parse(&["crds"]).unwrap().command, PluginCommand::Crds));
    }

    #[test]
    fn connection_flags_may_come_before_the_verb() {
        let hoist = |args: &[&str]| {
            hoist_leading_flags(
                std::iter::once("kubectl-shift").chain(args.iter().copied()).map(String::from).collect(),
            )
        };
        assert_eq!(hoist(&["-n", "shop", "wait", "web"]), ["kubectl-shift", "wait", "-n", "shop", "web"]);
        assert_eq!(
            hoist(&["--context=kind", "-nshop", "get", "-A"]),
            ["kubectl-shift", "get", "--context=kind", "-nshop", "-A"]
        );
        assert_eq!(hoist(&["get", "-n", "shop"]), ["kubectl-shift", "get", "-n", "shop"]);
        assert_eq!(hoist(&["-n", "shop"]), ["kubectl-shift", "-n", "shop"], "no verb: clap explains");
        let p = Plugin::try_parse_from(hoist(&["-n", "shop", "crds"]));
        assert!(p.is_err(), "crds takes no namespace, and clap says so");
        let p = Plugin::try_parse_from(hoist(&["--kubeconfig", "/k", "status", "web"])).unwrap();
        let PluginCommand::Verb(Verb::Status(s)) = p.command else { panic!("not status") };
        assert_eq!(s.connect.kubeconfig.as_deref(), Some(std::path::Path::new("/k")));
    }

    #[test]
    fn bad_input_is_a_usage_error_naming_the_argument() {
        let e = parse(&["weight", "web", "web-v1=abc"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let msg = e.to_string();
        assert!(msg.contains("web-v1=abc") && msg.contains("not a non-negative integer"), "{msg}");
        let e = parse(&["weight", "web"]).unwrap_err().to_string();
        assert!(e.contains("BACKEND=WEIGHT"), "{e}");
        let e = parse(&["start", "web"]).unwrap_err().to_string();
        assert!(e.contains("--canary"), "{e}");
        let e = parse(&["wait", "web", "--timeout", "ten"]).unwrap_err().to_string();
        assert!(e.contains("--timeout") && e.contains("not a duration"), "{e}");
        let e = parse(&["status", "web", "-o", "xml"]).unwrap_err().to_string();
        assert!(e.contains("json") && e.contains("yaml"), "{e}");
    }
}
