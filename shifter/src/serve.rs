//! `shifter serve`: the embedded API server and the controller in one process, for one machine
//! (VMs, laptops, CI). Proxies on this or other hosts connect to its gRPC port; kubectl uses the
//! kubeconfig it prints.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use shifter_apiserver::{ApiServer, Config};
use shifter_controller::runtime::{Controller, client_from};

/// Run the embedded API server and the controller together.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Where the API server's database, credentials and kubeconfig live.
    #[arg(long, env = "SHIFTER_DATA_DIR", default_value = ".shifter")]
    pub data_dir: PathBuf,
    /// Kubernetes API address (loopback by default).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub api_listen: SocketAddr,
    /// Address proxies connect to (gRPC over TLS with a bearer token).
    #[arg(long, default_value = "127.0.0.1:8086")]
    pub grpc_listen: SocketAddr,
    /// Controller /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:9990")]
    pub admin_listen: SocketAddr,
}

/// Everything `serve` started, for `demo` and tests to build on.
pub struct Served {
    pub api: ApiServer,
    pub controller: Controller,
}

/// Starts the API server, installs shifter's CRDs (and the Gateway API route CRDs where absent),
/// and starts the controller against it.
pub async fn start(args: &Args) -> anyhow::Result<Served> {
    let mut config = Config::new(args.data_dir.join("apiserver"));
    config.listen = args.api_listen;
    let api = ApiServer::start(config).await.context("starting the embedded API server")?;
    let kubeconfig = api.kubeconfig_path().to_path_buf();
    let client = client_from(Some(&kubeconfig)).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in shifter_crds::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &PatchParams::apply("shifter-serve").force(), &Patch::Apply(&crd))
            .await
            .with_context(|| format!("installing CRD {name}"))?;
    }
    for crd in shifter_crds::gateway_crds() {
        install_if_absent(&crds, &crd).await?;
    }
    let controller_args = shifter_controller::runtime::Args {
        kubeconfig: Some(kubeconfig),
        grpc_listen: args.grpc_listen,
        admin_listen: args.admin_listen,
        tls_cert: None,
        tls_key: None,
        tls_ca: None,
        token_file: None,
        state_dir: args.data_dir.join("controller"),
        lease_namespace: "default".into(),
        identity: Some(format!("serve-{}", hostname())),
        advertise: None,
    };
    let controller = Controller::start(controller_args, client).await?;
    Ok(Served { api, controller })
}

/// Creates `crd` unless a CRD of that name exists. The Gateway API CRDs belong to whoever
/// installed them (a cluster may carry upstream's, of another release or channel), so an existing
/// one is never replaced.
async fn install_if_absent(crds: &Api<CustomResourceDefinition>, crd: &CustomResourceDefinition) -> anyhow::Result<()> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    if crds.get_opt(&name).await.with_context(|| format!("looking up CRD {name}"))?.is_some() {
        return Ok(());
    }
    match crds.create(&PostParams { field_manager: Some("shifter-serve".into()), ..Default::default() }, crd).await {
        Ok(_) => Ok(()),
        // Someone else created it in the meantime: theirs stands.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error).with_context(|| format!("installing CRD {name}")),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// Serves until SIGINT or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let served = start(&args).await?;
    let c = &served.controller;
    println!("shifter is serving");
    println!("  kubeconfig:  {}", served.api.kubeconfig_path().display());
    println!("  try:         kubectl --kubeconfig {} get ts,canary -A", served.api.kubeconfig_path().display());
    println!(
        "  proxies:     shifter proxy --controller https://localhost:{} --controller-ca {} --controller-token-file {} --gateway 127.0.0.1:8080=web.default.svc.cluster.local:80",
        c.grpc_addr.port(),
        c.ca_path.display(),
        c.token_path.display()
    );
    println!("  metrics:     http://{}/metrics", c.admin_addr);
    shifter_controller::runtime::shutdown_signal().await;
    served.controller.shutdown().await;
    served.api.shutdown().await;
    Ok(())
}

/// [`run`] with logging on a multi-threaded runtime.
pub fn run_blocking(args: Args) -> anyhow::Result<()> {
    shifter_controller::runtime::init_logging();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gateway_api_crds_already_present_are_left_as_they_are() {
        let dir = std::env::temp_dir().join(format!("shifter-serve-test-{}", std::process::id()));
        let api = ApiServer::start(Config::ephemeral(&dir)).await.expect("API server starts");
        let client = client_from(Some(&api.kubeconfig_path().to_path_buf())).await.expect("client");
        let crds: Api<CustomResourceDefinition> = Api::all(client);
        let mut theirs = shifter_crds::gateway_crds().remove(0);
        let annotations = theirs.metadata.annotations.get_or_insert_with(Default::default);
        annotations.insert("gateway.networking.k8s.io/bundle-version".into(), "v9.9.9".into());
        crds.create(&PostParams::default(), &theirs).await.expect("their HTTPRoute CRD");

        for crd in shifter_crds::gateway_crds() {
            install_if_absent(&crds, &crd).await.expect("installed where absent");
        }
        install_if_absent(&crds, &shifter_crds::gateway_crds()[1]).await.expect("a second run changes nothing");

        let http = crds.get("httproutes.gateway.networking.k8s.io").await.unwrap();
        let bundle = http.metadata.annotations.unwrap()["gateway.networking.k8s.io/bundle-version"].clone();
        assert_eq!(bundle, "v9.9.9", "the cluster's copy stands");
        let grpc = crds.get("grpcroutes.gateway.networking.k8s.io").await.unwrap();
        let bundle = grpc.metadata.annotations.unwrap()["gateway.networking.k8s.io/bundle-version"].clone();
        assert_eq!(bundle, shifter_crds::gateway::BUNDLE_VERSION, "the missing one is installed");
        api.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
