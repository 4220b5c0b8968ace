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
use tracing::{Instrument, info};

use crate::Index;
use crate::lease::{Leadership, LeaseConfig, spawn_elector};
use crate::metrics::ControllerMetrics;
use crate::relay::{self, RelayConfig};
use crate::server::{DestinationService, TelemetryService};
use crate::status::StatusWriter;
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
    /// Starts every part and returns once the listeners are bound.
    pub async fn start(args: Args, client: Client) -> anyhow::Result<Controller> {
        let index = Index::new();
        let metrics = Arc::new(ControllerMetrics::default());
        let telemetry = Arc::new(TelemetryStore::default());
        let synced = spawn_watchers(client.clone(), index.clone());

        let grpc = TcpListener::bind(args.grpc_listen)
            .await
            .with_context(|| format!("binding gRPC on {}", args.grpc_listen))?;
        let grpc_addr = grpc.local_addr()?;
        let admin = TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| format!("binding admin on {}", args.admin_listen))?;

        let files = match (&args.tls_cert, &args.tls_key) {
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
        };
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
        let leadership = spawn_elector(client.clone(), lease.clone());

        StatusWriter {
            client: client.clone(),
            index: index.clone(),
            telemetry: telemetry.clone(),
            metrics: metrics.clone(),
            leadership: leadership.clone(),
            identity: identity.clone(),
        }
        .spawn();

        crate::canary::reconcile::CanaryController {
            client: client.clone(),
            telemetry: telemetry.clone(),
            metrics: metrics.clone(),
            leadership: leadership.clone(),
            identity: identity.clone(),
        }
        .spawn();

        let relay_tx =
            relay::spawn(RelayConfig { ca_pem: Some(ca_pem.clone()), token: token.clone() }, leadership.clone());
        let auth_token = token.clone();
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
        // gRPC for proxies and, on the same TLS port, the CRD conversion webhook (`POST /convert`,
        // which the cluster's API server calls without a token; it reveals nothing).
        let routes = tonic::service::Routes::new(destinations)
            .add_service(reports)
            .into_axum_router()
            .route("/convert", axum::routing::post(crate::conversion::handler));
        let router = Server::builder()
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))?
            .add_routes(tonic::service::Routes::from(routes));
        tokio::spawn(
            async move {
                if let Err(error) = router.serve_with_incoming(TcpListenerStream::new(grpc)).await {
                    tracing::error!(%error, "gRPC server stopped");
                }
            }
            .instrument(tracing::info_span!("grpc", addr = %grpc_addr)),
        );
        if args.tls_cert.is_none() {
            spawn_ca_bundle_injection(client.clone(), ca_pem.clone(), leadership.clone());
        }
        let admin_addr = crate::admin::spawn(admin, metrics.clone(), synced.clone());
        let leader_metrics = metrics.clone();
        let mut leader_rx = leadership.clone();
        tokio::spawn(async move {
            loop {
                let is_leader = leader_rx.borrow_and_update().is_leader;
                leader_metrics.leader.store(i64::from(is_leader), std::sync::atomic::Ordering::Relaxed);
                if leader_rx.changed().await.is_err() {
                    break;
                }
            }
        });
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
        })
    }

    /// Gives up the lease so another replica takes over at once.
    pub async fn shutdown(&self) {
        if self.leadership.borrow().is_leader
            && let Err(error) = crate::lease::release(self.client.clone(), &self.lease).await
        {
            tracing::warn!(%error, "could not release the lease");
        }
    }
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
fn spawn_ca_bundle_injection(client: Client, ca_pem: Vec<u8>, mut leadership: watch::Receiver<Leadership>) {
    use base64::Engine;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let bundle = base64::engine::general_purpose::STANDARD.encode(&ca_pem);
    tokio::spawn(async move {
        if leadership.wait_for(|l| l.is_leader).await.is_err() {
            return;
        }
        let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client);
        let name = "trafficsplits.split.smi-spec.io";
        let Ok(Some(crd)) = crds.get_opt(name).await else { return };
        let current =
            crd.spec.conversion.as_ref().and_then(|c| c.webhook.as_ref()).and_then(|w| w.client_config.as_ref());
        if crd.spec.conversion.as_ref().is_none_or(|c| c.strategy != "Webhook")
            || current.and_then(|c| c.ca_bundle.as_ref()).is_some_and(|b| b.0 == ca_pem)
        {
            return;
        }
        let patch = serde_json::json!({"spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": bundle}}}}});
        match crds.patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
            Ok(_) => info!(crd = name, "conversion webhook caBundle set"),
            Err(error) => tracing::warn!(%error, crd = name, "could not set the conversion webhook caBundle"),
        }
    });
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
