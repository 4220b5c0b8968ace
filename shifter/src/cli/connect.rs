//! A client for the cluster the user means, chosen the way kubectl chooses it: `--kubeconfig`, else
//! `$KUBECONFIG`, else `~/.kube/config`, else in-cluster credentials; `--context` picks a context;
//! `-n` overrides the context's namespace.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::args::ConnectArgs;
use super::error::CliError;

/// A client and the namespace verbs act in.
pub struct Target {
    pub client: Client,
    pub namespace: String,
}

pub async fn connect(args: &ConnectArgs) -> Result<Target, CliError> {
    let options = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| CliError::Kubeconfig(format!("reading {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| CliError::Kubeconfig(format!("{}: {e}", path.display())))?
        }
        None => match Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            Err(file_error) if args.context.is_none() => Config::incluster().map_err(|_| {
                CliError::Kubeconfig(format!(
                    "{file_error}; pass --kubeconfig PATH or set $KUBECONFIG (not running in a cluster either)"
                ))
            })?,
            Err(e) => return Err(CliError::Kubeconfig(e.to_string())),
        },
    };
    let namespace = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| CliError::Kubeconfig(format!("building a client: {e}")))?;
    Ok(Target { client, namespace })
}
