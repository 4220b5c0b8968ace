//! Arguments of every verb, with the parsing and validation that clap cannot express alone. Every
//! message names the argument and says how to fix it.

use std::path::PathBuf;
use std::time::Duration;

use shifter_crds::duration::parse_duration;

/// Where to talk to: kubeconfig, context and namespace, as kubectl spells them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Namespace (default: the kubeconfig context's namespace, else `default`).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long, value_name = "CONTEXT")]
    pub context: Option<String>,
}

/// `-o json|yaml`: print the objects themselves instead of the human view.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Json,
    Yaml,
}

/// A verb that acts on one Canary.
#[derive(clap::Args, Debug, Clone)]
pub struct CanaryArgs {
    /// Name of the Canary.
    #[arg(value_name = "CANARY", value_parser = parse_name)]
    pub name: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PromoteArgs {
    /// Name of the Canary.
    #[arg(value_name = "CANARY", value_parser = parse_name)]
    pub name: String,
    /// Skip the remaining steps and send 100% to the canary now.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct StartArgs {
    /// Name of the Canary.
    #[arg(value_name = "CANARY", value_parser = parse_name)]
    pub name: String,
    /// The Service of the new version; setting it starts a rollout from the first step.
    #[arg(long, value_name = "SERVICE", value_parser = parse_name)]
    pub canary: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct WeightArgs {
    /// Name of the TrafficSplit.
    #[arg(value_name = "SPLIT", value_parser = parse_name)]
    pub split: String,
    /// New weights, e.g. `web-v1=80 web-v2=20`. Each BACKEND must already be in the split (add
    /// backends with `kubectl edit`); backends not listed keep their weight.
    #[arg(value_name = "BACKEND=WEIGHT", required = true, num_args = 1.., value_parser = parse_assignment)]
    pub weights: Vec<WeightAssignment>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// Name of the Canary.
    #[arg(value_name = "CANARY", value_parser = parse_name)]
    pub name: String,
    /// Give up (exit 2) after this long, e.g. `90s`, `10m`, `1h`.
    #[arg(long, default_value = "10m", value_parser = parse_timeout)]
    pub timeout: Duration,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct GetArgs {
    /// List across every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print the objects as JSON or YAML instead of one line each.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// Name of the Canary.
    #[arg(value_name = "CANARY", value_parser = parse_name)]
    pub name: String,
    /// Keep running and redraw on every change (Ctrl-C to stop).
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Print the Canary as JSON or YAML instead of the view.
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `BACKEND=WEIGHT` from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightAssignment {
    pub backend: String,
    pub weight: i64,
}

/// A Kubernetes object name (DNS-1123 subdomain), checked before any request is sent.
pub fn parse_name(raw: &str) -> Result<String, String> {
    let ok_chars = raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ok_ends =
        raw.starts_with(|c: char| c.is_ascii_alphanumeric()) && raw.ends_with(|c: char| c.is_ascii_alphanumeric());
    if raw.is_empty() {
        return Err("a name is required, e.g. web".into());
    }
    if !ok_chars || !ok_ends || raw.len() > 253 {
        return Err(format!(
            "{raw:?} is not a Kubernetes name: use lowercase letters, digits and '-', starting and ending with a letter or digit (e.g. web-v2)"
        ));
    }
    Ok(raw.to_string())
}

/// `web-v1=80`: a backend name and a non-negative integer weight.
pub fn parse_assignment(raw: &str) -> Result<WeightAssignment, String> {
    let Some((backend, weight)) = raw.split_once('=') else {
        return Err(format!("{raw:?} is not BACKEND=WEIGHT; write e.g. web-v1=80"));
    };
    let backend = parse_name(backend).map_err(|e| format!("backend in {raw:?}: {e}"))?;
    let weight = weight.trim();
    let weight: i64 = match weight.parse::<u64>() {
        Ok(w) if w <= i64::MAX as u64 => w as i64,
        _ => {
            return Err(format!(
                "weight {weight:?} for {backend} is not a non-negative integer; write e.g. {backend}=80 (0 sends no traffic)"
            ));
        }
    };
    Ok(WeightAssignment { backend, weight })
}

/// `--timeout`: a Go-style duration with its unit.
pub fn parse_timeout(raw: &str) -> Result<Duration, String> {
    let d = parse_duration(raw)?;
    if d.is_zero() {
        return Err("must be longer than 0s, e.g. 10m".into());
    }
    Ok(d)
}

/// Rejects the same backend given twice, which would otherwise silently keep the last one.
pub fn check_unique(weights: &[WeightAssignment]) -> Result<(), String> {
    for (i, a) in weights.iter().enumerate() {
        if weights[..i].iter().any(|b| b.backend == a.backend) {
            return Err(format!("backend {} is given twice; give each backend once", a.backend));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_parse_and_bad_ones_name_the_problem() {
        assert_eq!(parse_assignment("web-v1=80").unwrap(), WeightAssignment { backend: "web-v1".into(), weight: 80 });
        assert_eq!(parse_assignment("web-v2=0").unwrap().weight, 0);
        let e = parse_assignment("web-v1=abc").unwrap_err();
        assert!(e.contains("\"abc\"") && e.contains("non-negative integer") && e.contains("web-v1=80"), "{e}");
        let e = parse_assignment("web-v1=-5").unwrap_err();
        assert!(e.contains("\"-5\""), "{e}");
        let e = parse_assignment("web-v1=1.5").unwrap_err();
        assert!(e.contains("non-negative integer"), "{e}");
        let e = parse_assignment("web-v1").unwrap_err();
        assert!(e.contains("BACKEND=WEIGHT"), "{e}");
        let e = parse_assignment("Web_V1=3").unwrap_err();
        assert!(e.contains("not a Kubernetes name"), "{e}");
    }

    #[test]
    fn names_and_timeouts_are_checked() {
        assert_eq!(parse_name("web-v2").unwrap(), "web-v2");
        assert!(parse_name("-web").is_err());
        assert!(parse_name("").unwrap_err().contains("required"));
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_timeout("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_timeout("10").is_err());
        assert!(parse_timeout("0s").is_err());
    }

    #[test]
    fn a_backend_given_twice_is_rejected() {
        let w = vec![parse_assignment("a=1").unwrap(), parse_assignment("b=2").unwrap()];
        assert!(check_unique(&w).is_ok());
        let w = vec![parse_assignment("a=1").unwrap(), parse_assignment("a=2").unwrap()];
        assert!(check_unique(&w).unwrap_err().contains("backend a is given twice"));
    }
}
