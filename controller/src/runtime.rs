//! Wires the controller together: kube client → watchers → index → gRPC server; lease → status
//! writer; admin endpoint. `shifter controller` and `shifter serve` both start it from here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tracing::info;

use crate::Index;
use crate::canary::CanaryController;
use crate::lease::{Election, Leadership, LeaseConfig, spawn_elector};
use crate::metrics::ControllerMetrics;
use crate::relay::{self, RelayConfig};
use crate::server::{DestinationService, TelemetryService};
use crate::status::StatusWriter;
use crate::supervise::{Policy, Supervisor};
use crate::telemetry::TelemetryStore;
use crate::tls::{ServingFiles, bearer_matches, ensure_self_signed, ensure_token};
use crate::watch::{Synced, spawn_watchers};

/// `shifter controller` flags. None is required.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Address proxies connect to for routing and telemetry (gRPC over TLS).
    #[arg(long, default_value = "0.0.0.0:8086")]
    pub grpc_listen: SocketAddr,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9990")]
    pub admin_listen: SocketAddr,
    /// PEM certificate and key to serve gRPC with; when absent, a CA and certificate are generated
    /// once into --state-dir and proxies trust its ca.crt.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA that signed --tls-cert, handed to replicas relaying telemetry (default: the certificate itself).
    #[arg(long, requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// File holding the bearer token proxies must present; generated there when missing.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where generated credentials live.
    #[arg(long, env = "SHIFTER_STATE_DIR", default_value = ".shifter/controller")]
    pub state_dir: PathBuf,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "shifter-system")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (default: $POD_NAME, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// gRPC address other replicas reach this one at, to relay telemetry to the leader
    /// (default: $POD_IP with the gRPC port).
    #[arg(long)]
    pub advertise: Option<String>,
}

/// A running controller.
pub struct Controller {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// CA proxies must trust to reach the gRPC API.
    pub ca_pem: Vec<u8>,
    pub ca_path: PathBuf,
    pub token: String,
    pub token_path: PathBuf,
    pub index: Arc<Index>,
    pub telemetry: Arc<TelemetryStore>,
    pub metrics: Arc<ControllerMetrics>,
    pub leadership: watch::Receiver<Leadership>,
    pub synced: Synced,
    pub lease: LeaseConfig,
    pub client: Client,
    pub election: Election,
    /// Every long-running task, for `/healthz` and `/metrics`.
    pub supervisor: Supervisor,
}

fn default_identity() -> String {
    let host =
        std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "shifter".into());
    format!("{host}-{}", std::process::id())
}

/// Connects to the API named by `kubeconfig` (or the usual places).
pub async fn client_from(kubeconfig: Option<&PathBuf>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.context("loading kubeconfig")?
        }
        None => kube::Config::infer().await.context("no kubeconfig found; pass --kubeconfig or set KUBECONFIG")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

impl Controller {
    /// Starts every part, each long-running one under the supervisor, and returns once the
    /// listeners are bound.
    pub async fn start(args: Args, client: Client) -> anyhow::Result<Controller> {
        let supervisor = Supervisor::new(Policy::default());
        let index = Index::new();
        let metrics = Arc::new(ControllerMetrics::default());
        let telemetry = Arc::new(TelemetryStore::default());
        let synced = spawn_watchers(&supervisor, client.clone(), index.clone());

        let grpc = bind(args.grpc_listen, "gRPC")?;
        let grpc_addr = grpc.local_addr()?;
        let admin = TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| format!("binding admin on {}", args.admin_listen))?;

        let files = serving_files(&args, grpc_addr)?;
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let (cert, key, ca_pem) = (read(&files.cert)?, read(&files.key)?, read(&files.ca)?);
        let token_path = args.token_file.clone().unwrap_or_else(|| args.state_dir.join("token"));
        let token = ensure_token(&token_path)?;

        let identity = args.identity.clone().unwrap_or_else(default_identity);
        let advertise = args
            .advertise
            .clone()
            .or_else(|| std::env::var("POD_IP").ok().map(|ip| format!("{ip}:{}", grpc_addr.port())));
        let mut lease = LeaseConfig::new(&args.lease_namespace, &identity);
        lease.address = advertise.or_else(|| Some(grpc_addr.to_string()));
        let election = spawn_elector(&supervisor, client.clone(), lease.clone());
        let leadership = election.leadership.clone();

        StatusWriter {
            client: client.clone(),
            index: index.clone(),
            telemetry: telemetry.clone(),
            metrics: metrics.clone(),
            leadership: leadership.clone(),
            fence: election.fence.clone(),
            identity: identity.clone(),
        }
        .spawn(&supervisor);
        CanaryController {
            client: client.clone(),
            telemetry: telemetry.clone(),
            metrics: metrics.clone(),
            election: election.clone(),
            identity: identity.clone(),
        }
        .spawn(&supervisor)?;

        let relay_tx = relay::spawn(
            &supervisor,
            RelayConfig { ca_pem: Some(ca_pem.clone()), token: token.clone() },
            leadership.clone(),
        );
        let routes = grpc_routes(&index, &telemetry, &metrics, relay_tx, &leadership, &token);
        let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        supervisor.spawn("grpc", tracing::info_span!("grpc", addr = %grpc_addr), move || {
            let (listener, routes, tls) = (grpc.try_clone(), routes.clone(), tls.clone());
            async move {
                let listener = TcpListener::from_std(listener?)?;
                Server::builder()
                    .tls_config(tls)?
                    .add_routes(routes)
                    .serve_with_incoming(TcpListenerStream::new(listener))
                    .await
                    .context("the gRPC server stopped")
            }
        });
        if args.tls_cert.is_none() {
            spawn_ca_bundle_injection(&supervisor, client.clone(), ca_pem.clone(), election.clone());
        }
        let admin_addr = crate::admin::spawn(admin, metrics.clone(), synced.clone(), supervisor.clone());
        spawn_leader_gauge(&supervisor, metrics.clone(), leadership.clone());
        info!(grpc = %grpc_addr, admin = %admin_addr, ca = %files.ca.display(), token = %token_path.display(), %identity, "controller started");
        Ok(Controller {
            grpc_addr,
            admin_addr,
            ca_pem,
            ca_path: files.ca,
            token,
            token_path,
            index,
            telemetry,
            metrics,
            leadership,
            synced,
            lease,
            client,
            election,
            supervisor,
        })
    }

    /// Gives up the lease so another replica takes over at once.
    pub async fn shutdown(&self) {
        self.election.fence.revoke();
        if self.leadership.borrow().is_leader
            && let Err(error) = crate::lease::release(self.client.clone(), &self.lease).await
        {
            tracing::warn!(%error, "could not release the lease");
        }
    }
}

/// Binds a listener the supervisor can hand to each restart of its server.
fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {what} on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The certificate to serve gRPC with: given, or generated once into the state directory.
fn serving_files(args: &Args, grpc_addr: SocketAddr) -> anyhow::Result<ServingFiles> {
    Ok(match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => ServingFiles {
            ca: args.tls_ca.clone().unwrap_or_else(|| cert.clone()),
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "shifter-controller".into()];
            names.push(format!("shifter-controller.{}.svc", args.lease_namespace));
            names.push(format!("shifter-controller.{}.svc.cluster.local", args.lease_namespace));
            if !grpc_addr.ip().is_unspecified() {
                names.push(grpc_addr.ip().to_string());
            }
            ensure_self_signed(&args.state_dir.join("tls"), &names)?
        }
    })
}

/// gRPC for proxies (behind the bearer token) and, on the same TLS port, the CRD conversion
/// webhook (`POST /convert`, which the cluster's API server calls without a token; it reveals
/// nothing).
fn grpc_routes(
    index: &Arc<Index>,
    telemetry: &Arc<TelemetryStore>,
    metrics: &Arc<ControllerMetrics>,
    relay_tx: tokio::sync::mpsc::Sender<shifter_proto::v1::TelemetryWindow>,
    leadership: &watch::Receiver<Leadership>,
    token: &str,
) -> tonic::service::Routes {
    let auth_token = token.to_string();
    let check = move |req: tonic::Request<()>| {
        let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        if bearer_matches(header, &auth_token) {
            Ok(req)
        } else {
            Err(tonic::Status::unauthenticated("a valid bearer token is required (the controller's --token-file)"))
        }
    };
    let destinations = tonic::service::interceptor::InterceptedService::new(
        DestinationService::new(index.clone(), metrics.clone()),
        check.clone(),
    );
    let reports = tonic::service::interceptor::InterceptedService::new(
        TelemetryService::with_relay(telemetry.clone(), metrics.clone(), relay_tx, leadership.clone()),
        check,
    );
    let router = tonic::service::Routes::new(destinations)
        .add_service(reports)
        .into_axum_router()
        .route("/convert", axum::routing::post(crate::conversion::handler));
    tonic::service::Routes::from(router)
}

/// Keeps `shifter_controller_leader` in step with the election.
fn spawn_leader_gauge(
    supervisor: &Supervisor,
    metrics: Arc<ControllerMetrics>,
    leadership: watch::Receiver<Leadership>,
) {
    supervisor.spawn("leader-gauge", tracing::info_span!("leader_gauge"), move || {
        let (metrics, mut leadership) = (metrics.clone(), leadership.clone());
        async move {
            loop {
                let is_leader = leadership.borrow_and_update().is_leader;
                metrics.leader.store(i64::from(is_leader), std::sync::atomic::Ordering::Relaxed);
                if leadership.changed().await.is_err() {
                    return Ok(());
                }
            }
        }
    });
}

/// `shifter controller`: runs until SIGINT or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = client_from(args.kubeconfig.as_ref()).await?;
    let controller = Controller::start(args, client).await?;
    eprintln!(
        "shifter controller: gRPC on {} (CA {}, token {}), admin on {}",
        controller.grpc_addr,
        controller.ca_path.display(),
        controller.token_path.display(),
        controller.admin_addr
    );
    shutdown_signal().await;
    controller.shutdown().await;
    Ok(())
}

/// With a generated CA, the leader writes it into the TrafficSplit CRD's conversion webhook
/// `caBundle` so the cluster's API server trusts `/convert`. (With --tls-cert, whoever issued the
/// certificate injects its CA, e.g. cert-manager's cainjector.)
fn spawn_ca_bundle_injection(supervisor: &Supervisor, client: Client, ca_pem: Vec<u8>, election: Election) {
    supervisor.spawn("ca-bundle", tracing::info_span!("ca_bundle"), move || {
        let (client, ca_pem, election) = (client.clone(), ca_pem.clone(), election.clone());
        async move { inject_ca_bundle(client, ca_pem, election).await }
    });
}

async fn inject_ca_bundle(client: Client, ca_pem: Vec<u8>, mut election: Election) -> anyhow::Result<()> {
    use base64::Engine;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let bundle = base64::engine::general_purpose::STANDARD.encode(&ca_pem);
    if election.leadership.wait_for(|l| l.is_leader).await.is_err() {
        return Ok(());
    }
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client);
    let name = "trafficsplits.split.smi-spec.io";
    let Some(crd) = crds.get_opt(name).await? else { return Ok(()) };
    let current = crd.spec.conversion.as_ref().and_then(|c| c.webhook.as_ref()).and_then(|w| w.client_config.as_ref());
    if crd.spec.conversion.as_ref().is_none_or(|c| c.strategy != "Webhook")
        || current.and_then(|c| c.ca_bundle.as_ref()).is_some_and(|b| b.0 == ca_pem)
    {
        return Ok(());
    }
    let patch = serde_json::json!({"spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": bundle}}}}});
    let params = kube::api::PatchParams::default();
    election.fence.write(crds.patch(name, &params, &kube::api::Patch::Merge(&patch))).await?;
    info!(crd = name, "conversion webhook caBundle set");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Structured logs on stderr, filtered by `RUST_LOG` (default `info`), coloured only on a terminal.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

/// Starts logging and a multi-threaded runtime, then runs the controller.
pub fn run_blocking(args: Args) -> anyhow::Result<()> {
    init_logging();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
}
