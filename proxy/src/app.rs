//! Wiring: build the shared state, bind the listeners, spawn the tasks; plus the `shifter proxy`
//! command line. This is the only place that knows how the pieces fit together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shifter_crds::duration::DurationRange;
use shifter_proto::v1::{ProxyIdentity, Snapshot};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use crate::admin::{self, AdminState};
use crate::balance::EndpointRegistry;
use crate::config::watch::Controller;
use crate::config::{ConfigSource, ControllerConfig, Settings, StaticConfig, normalize_authority};
use crate::destinations::Destinations;
use crate::error::{ConfigError, ProxyError, RouteError};
use crate::listener::{self, Listening, Shared};
use crate::metrics::Metrics;
use crate::route::Compiler;

/// A gateway listener: everything it accepts goes to one apex authority.
#[derive(Debug, Clone)]
pub struct GatewayListener {
    pub listen: SocketAddr,
    pub authority: String,
}

/// Everything needed to start a proxy in-process.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub source: ConfigSource,
    pub gateways: Vec<GatewayListener>,
    /// Routes by `Host`/`:authority`; point `HTTP_PROXY` or clients here.
    pub outbound: Option<SocketAddr>,
    /// A sidecar: the outbound listener takes connections iptables redirected to it and routes
    /// each by its original destination (see `shifter init`).
    pub sidecar: bool,
    /// A sidecar's inbound listener: connections redirected to it go on to the application at
    /// their original destination.
    pub inbound: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub settings: Settings,
}

/// A running proxy. Dropping it leaves the tasks running; call [`Proxy::shutdown`] to drain.
pub struct Proxy {
    gateway_addrs: Vec<SocketAddr>,
    outbound_addr: Option<SocketAddr>,
    inbound_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    destinations: Arc<Destinations>,
    connections: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    settings: Settings,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr).await.map_err(|source| ProxyError::Bind { addr, source })
}

impl Proxy {
    /// Binds every listener (port 0 picks a free port; see the `*_addr` methods) and starts serving.
    pub async fn start(config: ProxyConfig) -> Result<Self, ProxyError> {
        let settings = config.settings.clone();
        let controller = match &config.source {
            ConfigSource::Controller(c) => Some(Controller::new(c, &settings)?),
            ConfigSource::Static(_) => None,
        };
        let compiler = Compiler {
            metrics: Arc::new(Metrics::default()),
            endpoints: EndpointRegistry::default(),
            settings: settings.clone(),
        };
        let destinations = Arc::new(Destinations::new(compiler, controller.clone()));
        if let ConfigSource::Static(s) = &config.source {
            for snapshot in &s.snapshots {
                destinations.apply_by_authority(snapshot.clone())?;
            }
            for g in &config.gateways {
                if !destinations.all_have_tables([&g.authority]) {
                    return Err(ProxyError::MissingGatewayAuthority(g.authority.clone()));
                }
            }
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let connections = Arc::new(Semaphore::new(settings.max_connections));
        let shared = Arc::new(Shared {
            destinations: destinations.clone(),
            connections: connections.clone(),
            shutdown: shutdown_rx.clone(),
        });
        let mut tasks = Vec::new();
        let mut gateway_addrs = Vec::new();
        for g in &config.gateways {
            let listener = bind(g.listen).await?;
            let addr = listener.local_addr().map_err(|source| ProxyError::Bind { addr: g.listen, source })?;
            gateway_addrs.push(addr);
            let authority = normalize_authority(&g.authority);
            if controller.is_some() {
                // Watch eagerly so the gateway is ready before its first request.
                let _ = destinations.watch_pinned(&authority);
            }
            let span = info_span!("gateway", %addr, %authority);
            let listening = Listening::Gateway(authority);
            tasks.push(tokio::spawn(listener::serve(listener, listening, shared.clone()).instrument(span)));
        }
        let mut outbound_addr = None;
        if let Some(listen) = config.outbound {
            let listener = bind(listen).await?;
            let addr = listener.local_addr().map_err(|source| ProxyError::Bind { addr: listen, source })?;
            outbound_addr = Some(addr);
            let listening = if config.sidecar { Listening::Redirected } else { Listening::Outbound };
            tasks.push(tokio::spawn(
                listener::serve(listener, listening, shared.clone()).instrument(info_span!("outbound", %addr)),
            ));
        }
        let mut inbound_addr = None;
        if let Some(listen) = config.inbound {
            let listener = bind(listen).await?;
            let addr = listener.local_addr().map_err(|source| ProxyError::Bind { addr: listen, source })?;
            inbound_addr = Some(addr);
            tasks.push(tokio::spawn(
                listener::serve(listener, Listening::Inbound, shared.clone()).instrument(info_span!("inbound", %addr)),
            ));
        }
        let mut admin_addr = None;
        if let Some(listen) = config.admin {
            let listener = bind(listen).await?;
            admin_addr = Some(listener.local_addr().map_err(|source| ProxyError::Bind { addr: listen, source })?);
            let state = Arc::new(AdminState {
                destinations: destinations.clone(),
                required: config.gateways.iter().map(|g| g.authority.clone()).collect(),
                shutdown: shutdown_rx.clone(),
            });
            tasks.push(tokio::spawn(admin::serve(listener, state).instrument(info_span!("admin"))));
        }
        if let Some(controller) = controller {
            tasks.push(destinations.spawn_expiry());
            let report = crate::telemetry::report(destinations.clone(), controller);
            tasks.push(tokio::spawn(report.instrument(info_span!("telemetry"))));
        }
        Ok(Self {
            gateway_addrs,
            outbound_addr,
            inbound_addr,
            admin_addr,
            destinations,
            connections,
            shutdown,
            tasks,
            settings,
        })
    }

    /// Bound gateway addresses, in the order of [`ProxyConfig::gateways`].
    pub fn gateway_addrs(&self) -> &[SocketAddr] {
        &self.gateway_addrs
    }

    pub fn outbound_addr(&self) -> Option<SocketAddr> {
        self.outbound_addr
    }

    /// The bound inbound address of a sidecar.
    pub fn inbound_addr(&self) -> Option<SocketAddr> {
        self.inbound_addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Replaces the table for the snapshot's authority, as a controller snapshot would.
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> Result<(), RouteError> {
        self.destinations.apply_by_authority(snapshot)
    }

    /// The `/config` document: current snapshots and versions.
    pub fn config_dump(&self) -> serde_json::Value {
        self.destinations.dump()
    }

    /// The `/metrics` document.
    pub fn metrics_text(&self) -> String {
        self.destinations.compiler().metrics.render()
    }

    /// Stops accepting, lets in-flight requests finish (up to `drain_timeout`), then stops.
    /// Returns false when connections were still open at the deadline.
    pub async fn shutdown(self) -> bool {
        let _ = self.shutdown.send(true);
        let all = u32::try_from(self.settings.max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(self.settings.drain_timeout, self.connections.acquire_many(all)).await;
        self.destinations.stop();
        for task in &self.tasks {
            task.abort();
        }
        matches!(drained, Ok(Ok(_)))
    }
}

/// `shifter proxy`: run a data-plane proxy.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Controller to watch for snapshots, `http://host:port` (h2c) or `https://host:port`.
    #[arg(long, env = "SHIFTER_CONTROLLER", conflicts_with = "config", required_unless_present = "config")]
    pub controller: Option<String>,
    /// PEM CA bundle that signs the controller's certificate.
    #[arg(long, value_name = "FILE", requires = "controller")]
    pub controller_ca: Option<PathBuf>,
    /// File holding the bearer token the controller requires (the controller's --token-file).
    #[arg(long, value_name = "FILE", requires = "controller")]
    pub controller_token_file: Option<PathBuf>,
    /// Static snapshots (YAML) to serve with no controller.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Gateway listener fronting one apex service, e.g. `0.0.0.0:8080=web.shop.svc.cluster.local:80`.
    #[arg(long = "gateway", value_name = "LISTEN=AUTHORITY", value_parser = parse_gateway)]
    pub gateways: Vec<GatewayListener>,
    /// Outbound listener routing by Host/:authority (default 127.0.0.1:4140 when no gateway is given).
    #[arg(long, value_name = "LISTEN")]
    pub outbound: Option<SocketAddr>,
    /// Run as a pod's sidecar: the outbound listener takes the connections `shifter init`'s
    /// iptables rules redirect to it and routes each by its original destination (a Service's
    /// ClusterIP), passing anything else through untouched; an inbound listener does the same for
    /// connections to the pod.
    #[arg(long, conflicts_with = "gateways")]
    pub sidecar: bool,
    /// A sidecar's inbound listener.
    #[arg(long, value_name = "LISTEN", default_value = "0.0.0.0:4143", requires = "sidecar")]
    pub inbound: SocketAddr,
    /// Admin listener: /metrics, /ready, /live, /config.
    #[arg(long, default_value = "127.0.0.1:4191")]
    pub admin: SocketAddr,
    /// Proxy id reported to the controller (default: hostname/pid).
    #[arg(long, env = "SHIFTER_PROXY_ID")]
    pub id: Option<String>,
    /// Namespace this proxy runs in.
    #[arg(long, env = "SHIFTER_PROXY_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Dial timeout per upstream endpoint, 1ms to 1m (e.g. `250ms`).
    #[arg(long, default_value = "1s", value_parser = |raw: &str| CONNECT_TIMEOUT.parse(raw))]
    pub connect_timeout: Duration,
    /// Time allowed until response headers, 1ms to 1h.
    #[arg(long, default_value = "30s", value_parser = |raw: &str| REQUEST_TIMEOUT.parse(raw))]
    pub request_timeout: Duration,
    /// How long shutdown waits for in-flight requests, at most 1h.
    #[arg(long, default_value = "30s", value_parser = |raw: &str| DRAIN_TIMEOUT.parse(raw))]
    pub drain_timeout: Duration,
    /// Most downstream connections open at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Worker threads (default: one per core the process may run on; with one, a single-threaded
    /// runtime).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_gateway(s: &str) -> Result<GatewayListener, String> {
    let (listen, authority) = s.split_once('=').ok_or("expected LISTEN=AUTHORITY")?;
    let listen = listen.parse().map_err(|e| format!("{listen:?}: {e}"))?;
    if authority.is_empty() {
        return Err("empty authority".into());
    }
    Ok(GatewayListener { listen, authority: authority.to_string() })
}

/// Bounds of the duration flags, which take shifter's one duration syntax (`250ms`, `30s`, `1m`).
const CONNECT_TIMEOUT: DurationRange = DurationRange::new(Duration::from_millis(1), Duration::from_secs(60));
const REQUEST_TIMEOUT: DurationRange = DurationRange::new(Duration::from_millis(1), Duration::from_secs(3600));
const DRAIN_TIMEOUT: DurationRange = DurationRange::new(Duration::ZERO, Duration::from_secs(3600));

impl Args {
    /// The in-process configuration these flags describe.
    pub fn to_config(&self) -> Result<ProxyConfig, ConfigError> {
        let source = match (&self.controller, &self.config) {
            (Some(uri), _) => {
                let ca_pem = match &self.controller_ca {
                    Some(path) => Some(
                        std::fs::read(path)
                            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?,
                    ),
                    None => None,
                };
                let id = self.id.clone().unwrap_or_else(|| {
                    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "proxy".into());
                    format!("{host}/{}", std::process::id())
                });
                let token = match &self.controller_token_file {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?
                            .trim()
                            .to_string(),
                    ),
                    None => None,
                };
                let kind = match (self.sidecar, self.gateways.is_empty()) {
                    (true, _) => "sidecar",
                    (false, true) => "outbound",
                    (false, false) => "gateway",
                };
                let identity = ProxyIdentity { id, namespace: self.namespace.clone(), kind: kind.into() };
                ConfigSource::Controller(ControllerConfig { uri: uri.clone(), ca_pem, token, identity })
            }
            (None, Some(path)) => ConfigSource::Static(StaticConfig::load(&path.display().to_string())?),
            (None, None) => {
                return Err(ConfigError::Controller {
                    uri: String::new(),
                    reason: "give --controller or --config".into(),
                });
            }
        };
        let outbound =
            self.outbound.or_else(|| self.gateways.is_empty().then(|| SocketAddr::from(([127, 0, 0, 1], 4140))));
        let settings = Settings {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            drain_timeout: self.drain_timeout,
            max_connections: self.max_connections,
            ..Settings::default()
        };
        Ok(ProxyConfig {
            source,
            gateways: self.gateways.clone(),
            outbound,
            sidecar: self.sidecar,
            inbound: self.sidecar.then_some(self.inbound),
            admin: Some(self.admin),
            settings,
        })
    }
}

/// Runs a proxy until SIGTERM or Ctrl-C, then drains.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let proxy = Proxy::start(args.to_config()?).await?;
    for (g, addr) in args.gateways.iter().zip(proxy.gateway_addrs()) {
        info!(%addr, authority = %g.authority, "gateway listening");
    }
    if let Some(addr) = proxy.outbound_addr() {
        info!(%addr, sidecar = args.sidecar, "outbound listening");
    }
    if let Some(addr) = proxy.inbound_addr() {
        info!(%addr, "inbound listening");
    }
    if let Some(addr) = proxy.admin_addr() {
        info!(%addr, "admin listening");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => info!("interrupt: draining"),
    }
    if !proxy.shutdown().await {
        warn!("drain timeout reached with connections still open");
    }
    Ok(())
}

/// [`run`] on a runtime of its own, with logs on stderr (`RUST_LOG` filters, default `info`).
pub fn run_blocking(args: Args) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
    runtime(args.threads)?.block_on(run(args))
}

/// One worker thread per core the process may run on (its CPU affinity or cgroup quota, e.g.
/// under `taskset -c 1`), unless `--threads` says otherwise. With a single one, tokio's
/// current-thread scheduler runs everything on the main thread: no work-stealing queues, no
/// cross-thread wake-ups, no parked second thread, which is what a proxy pinned to one core wants.
fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1);
    let mut rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        rt.worker_threads(threads);
        rt
    };
    rt.enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_values() {
        assert_eq!(CONNECT_TIMEOUT.parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(REQUEST_TIMEOUT.parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(CONNECT_TIMEOUT.parse("2").is_err());
        let g = parse_gateway("127.0.0.1:8080=web.shop.svc.cluster.local:80").unwrap();
        assert_eq!(g.authority, "web.shop.svc.cluster.local:80");
        assert!(parse_gateway("127.0.0.1:8080").is_err());
    }

    #[test]
    fn duration_flags_say_their_range_and_never_overflow() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let parse = |flag: &str, value: &str| Cli::try_parse_from(["proxy", "--config", "f.yaml", flag, value]);
        let cli = parse("--drain-timeout", "0s").unwrap();
        assert_eq!(cli.args.drain_timeout, Duration::ZERO);
        assert_eq!(cli.args.connect_timeout, Duration::from_secs(1), "the default");
        // Minutes used to be multiplied unchecked: `n * 60` overflowed for a large n.
        for (flag, value, says) in [
            ("--connect-timeout", "307445734561825861m", "must be between 1ms and 1m"),
            ("--request-timeout", "9999999999999999999999s", "must be between 1ms and 1h"),
            ("--drain-timeout", "2h", "must be at most 1h, got \"2h\""),
            ("--connect-timeout", "30", "has no unit after 30"),
        ] {
            let message = parse(flag, value).err().unwrap().to_string();
            assert!(message.contains(flag) && message.contains(says), "{flag} {value}: {message}");
        }
    }
}
