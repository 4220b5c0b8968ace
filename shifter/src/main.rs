//! The `shifter` binary: parses the command line and hands off to library code.

use clap::{Parser, Subcommand};

mod demo;
mod serve;

/// Traffic shifting and automated canaries for Kubernetes.
#[derive(Parser)]
#[command(name = "shifter", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition shifter serves, as YAML (pipe it to `kubectl apply -f -`).
    Crds {
        /// Print the Gateway API HTTPRoute and GRPCRoute CRDs (Standard channel) instead, for a
        /// cluster without them. Prefer upstream's own release where you can.
        #[arg(long)]
        gateway_api: bool,
    },
    /// Run a data-plane proxy: route requests by the weights a controller (or a static file) gives.
    Proxy(Box<shifter_proxy::Args>),
    /// Run the controller: watch TrafficSplits and Services and program proxies over gRPC.
    Controller(Box<shifter_controller::runtime::Args>),
    /// Redirect a meshed pod's TCP traffic through its sidecar proxy with iptables (the init container's job).
    Init(Box<shifter::init::Args>),
    /// Run the embedded Kubernetes-compatible API server (prints the kubeconfig path to use).
    Apiserver(Box<shifter_apiserver::Args>),
    /// Run the embedded API server and the controller in one process (one machine, no cluster).
    Serve(Box<serve::Args>),
    /// See it work on this machine, nothing else needed: a healthy release promoted, a bad one rolled back.
    Demo(Box<demo::Args>),
    /// The `kubectl shift` verbs (also installed as the `kubectl-shift` plugin).
    #[command(flatten)]
    Shift(shifter::cli::Verb),
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    // Installed under the plugin's name (`ln -s shifter kubectl-shift`), it is `kubectl shift`.
    if shifter::cli::invoked_as_plugin() {
        return Ok(shifter::cli::plugin_main());
    }
    match Cli::parse().command {
        Command::Crds { gateway_api: false } => print!("{}", shifter_crds::crds_yaml()),
        Command::Crds { gateway_api: true } => print!("{}", shifter_crds::gateway_crds_yaml()),
        Command::Proxy(args) => shifter_proxy::run_blocking(*args)?,
        Command::Controller(args) => shifter_controller::runtime::run_blocking(*args)?,
        Command::Init(args) => shifter::init::run(&args)?,
        Command::Apiserver(args) => shifter_apiserver::run_blocking(*args)?,
        Command::Serve(args) => serve::run_blocking(*args)?,
        Command::Demo(args) => return demo::run_blocking(*args),
        Command::Shift(verb) => return Ok(shifter::cli::run_blocking(verb)),
    }
    Ok(std::process::ExitCode::SUCCESS)
}
