//! `shifter apiserver`: the command-line face of [`crate::ApiServer`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::admission::AdmissionChain;
use crate::server::{ApiServer, Config, DEFAULT_MAX_CONNECTIONS};

/// Run the embedded Kubernetes-compatible API server.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443", env = "SHIFTER_APISERVER_LISTEN")]
    pub listen: SocketAddr,
    /// Directory for the database, CA, token and kubeconfig.
    #[arg(long, default_value = ".shifter/apiserver", env = "SHIFTER_APISERVER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where to write the kubeconfig (default: <data-dir>/kubeconfig).
    #[arg(long)]
    pub kubeconfig_out: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 3 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Another DNS name or IP the serving certificate must cover (repeatable), for clients that
    /// reach the server other than over loopback.
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,
    /// Seconds a client has to complete the TLS handshake before its connection is closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tls_handshake_timeout_seconds: u64,
    /// Seconds a client has to send a complete request head before its connection is closed (an
    /// idle HTTP/1.1 keep-alive connection is closed after this long too).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_seconds: u64,
    /// Most client connections served at once; further connections are closed as soon as they
    /// are accepted, without affecting established ones.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Validating admission on writes: `shifter` checks shifter's own cross-field rules for
    /// TrafficSplit and Canary (backends named once, weights not all zero, canary steps
    /// increasing) on top of each CRD's schema; `none` enforces the CRD schemas alone, as a
    /// cluster without shifter's admission would, to see what the schemas by themselves reject.
    #[arg(long, value_enum, default_value_t = AdmissionMode::Shifter)]
    pub admission: AdmissionMode,
}

/// Which validating admission runs on writes, beyond each resource's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdmissionMode {
    /// shifter's own rules for TrafficSplit and Canary, then the schema.
    Shifter,
    /// The schema alone.
    None,
}

impl AdmissionMode {
    pub fn chain(self) -> AdmissionChain {
        match self {
            AdmissionMode::Shifter => AdmissionChain::shifter(),
            AdmissionMode::None => AdmissionChain::none(),
        }
    }
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config::new(args.data_dir);
    config.listen = args.listen;
    config.kubeconfig_out = args.kubeconfig_out;
    config.max_body_bytes = args.max_body_bytes;
    config.tls_sans = args.tls_sans;
    config.tls_handshake_timeout = Duration::from_secs(args.tls_handshake_timeout_seconds);
    config.header_read_timeout = Duration::from_secs(args.header_read_timeout_seconds);
    config.max_connections = args.max_connections as usize;
    config.admission = args.admission.chain();
    let server = ApiServer::start(config).await?;
    println!("shifter API server listening on {}", server.url());
    println!("kubeconfig: {}", server.kubeconfig_path().display());
    println!("try: kubectl --kubeconfig {} get namespaces", server.kubeconfig_path().display());
    wait_for_signal().await?;
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// [`run`] on a fresh multi-threaded runtime, for a synchronous `main`.
pub fn run_blocking(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Another command may have installed a subscriber already; that one wins.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn admission_can_be_turned_off_and_limits_set_from_flags() {
        let cli = Cli::try_parse_from([
            "shifter",
            "--admission=none",
            "--max-connections=8",
            "--header-read-timeout-seconds=5",
        ])
        .unwrap();
        assert_eq!(cli.args.admission, AdmissionMode::None);
        assert!(
            cli.args.admission.chain().validate("split.smi-spec.io", "TrafficSplit", &serde_json::json!({})).is_empty()
        );
        assert_eq!((cli.args.max_connections, cli.args.header_read_timeout_seconds), (8, 5));
        let defaults = Cli::try_parse_from(["shifter"]).unwrap().args;
        assert_eq!(defaults.admission, AdmissionMode::Shifter);
        assert_eq!((defaults.tls_handshake_timeout_seconds, defaults.header_read_timeout_seconds), (10, 30));
        assert!(Cli::try_parse_from(["shifter", "--admission=off"]).is_err());
        assert!(Cli::try_parse_from(["shifter", "--max-connections=0"]).is_err());
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--admission") && help.contains("CRD schemas alone"), "{help}");
    }
}
