//! Wiring: open the store, restore the CRDs it holds, prepare TLS and credentials, bind, write
//! the kubeconfig, and serve until shut down. Used by `shifter apiserver`, by commands that embed
//! the server, and by tests (which bind port 0).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::admission::AdmissionChain;
use crate::app::{App, Query, Scope};
use crate::conn::{self, ConnectionLimits, Serving};
use crate::http::HttpSettings;
use crate::resources::{self, Registry};
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsError};

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Holds the database, the CA, the token and (by default) the kubeconfig.
    pub data_dir: PathBuf,
    /// Where to write the kubeconfig; default `<data_dir>/kubeconfig`.
    pub kubeconfig_out: Option<PathBuf>,
    /// Largest request body accepted (Kubernetes' default is 3 MiB).
    pub max_body_bytes: usize,
    /// Fixed bearer token; by default one is generated and kept in the data directory.
    pub token: Option<String>,
    /// Validating admission beyond the CRD schemas: shifter's own rules by default,
    /// [`AdmissionChain::none`] to enforce the schemas alone, as a bare cluster would.
    pub admission: AdmissionChain,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_every: Duration,
    /// Extra names or IPs the serving certificate is valid for (loopback always is).
    pub tls_sans: Vec<String>,
    /// How many past changes are kept, durably, for watches to resume from; older
    /// resourceVersions get 410 Gone and clients relist.
    pub watch_history: usize,
    /// How long a client has to complete the TLS handshake before the connection is closed.
    pub tls_handshake_timeout: Duration,
    /// How long a client has to send a complete request head (headers) before the connection is
    /// closed; an idle HTTP/1.1 keep-alive connection is closed after this long too.
    pub header_read_timeout: Duration,
    /// Most connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

/// Defaults for the connection limits: time enough for a slow client on a loaded machine, short
/// enough that idle or stalling clients cannot pile up.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            data_dir: data_dir.into(),
            kubeconfig_out: None,
            max_body_bytes: 3 * 1024 * 1024,
            token: None,
            admission: AdmissionChain::shifter(),
            bookmark_every: Duration::from_secs(30),
            tls_sans: Vec::new(),
            watch_history: crate::store::HISTORY,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// Loopback on a free port: what tests and embedding commands use.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Config {
        Config { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..Config::new(data_dir) }
    }

    /// Settings that would make the server useless are refused before anything starts.
    fn check(&self) -> Result<(), StartError> {
        let mut problems = Vec::new();
        if self.tls_handshake_timeout.is_zero() {
            problems.push("tls_handshake_timeout must be more than zero");
        }
        if self.header_read_timeout.is_zero() {
            problems.push("header_read_timeout must be more than zero");
        }
        if self.max_connections == 0 {
            problems.push("max_connections must be at least 1");
        }
        if self.max_body_bytes == 0 {
            problems.push("max_body_bytes must be at least 1");
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(StartError::Config(problems.join("; "))),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("listening on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("creating built-in namespaces: {0}")]
    Bootstrap(String),
    #[error("invalid API server configuration: {0}")]
    Config(String),
}

/// A running server. Dropping it without [`ApiServer::shutdown`] stops accepting connections too.
pub struct ApiServer {
    addr: SocketAddr,
    kubeconfig: PathBuf,
    token: String,
    ca_pem: String,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    app: Option<Arc<App>>,
}

impl ApiServer {
    pub async fn start(config: Config) -> Result<ApiServer, StartError> {
        config.check()?;
        let dir = config.data_dir.clone();
        create_private_dir(&dir).map_err(|source| StartError::DataDir { path: dir.clone(), source })?;
        let store = Store::open(&dir.join("state.redb"), config.watch_history)?;
        let registry = Registry::default();
        let (crds, _) = store.list("apiextensions.k8s.io/customresourcedefinitions", None);
        for crd in crds {
            match resources::from_crd(&crd) {
                Ok(info) => {
                    registry.register(info);
                }
                Err(errs) => {
                    tracing::warn!(crd = ?crd.pointer("/metadata/name"), ?errs, "stored CRD no longer valid; not served")
                }
            }
        }
        let app = Arc::new(App { registry, store, admission: config.admission.clone() });
        bootstrap(&app)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        if !addr.ip().is_unspecified() && !hosts.contains(&addr.ip().to_string()) {
            hosts.push(addr.ip().to_string());
        }
        hosts.extend(config.tls_sans.iter().filter(|s| !s.is_empty()).cloned());
        let certs = tls::certificates(&dir, &hosts)?;
        let token = match &config.token {
            Some(t) => t.clone(),
            None => tls::token(&dir)?,
        };
        let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let address = format!("{host}:{}", addr.port());
        let kubeconfig = config.kubeconfig_out.clone().unwrap_or_else(|| dir.join("kubeconfig"));
        tls::write_private(&kubeconfig, &tls::kubeconfig(&format!("https://{address}"), &certs.ca_pem, &token))?;
        let settings = Arc::new(HttpSettings {
            token: token.clone(),
            max_body_bytes: config.max_body_bytes,
            address: address.clone(),
            bookmark_every: config.bookmark_every,
        });
        let (stop, stopped) = watch::channel(false);
        let serving = Serving {
            acceptor: tokio_rustls::TlsAcceptor::from(certs.server_config.clone()),
            app: app.clone(),
            settings,
            limits: ConnectionLimits {
                tls_handshake_timeout: config.tls_handshake_timeout,
                header_read_timeout: config.header_read_timeout,
                max_connections: config.max_connections,
            },
        };
        let span = tracing::info_span!("apiserver", %addr);
        let task = tokio::spawn(conn::accept_loop(listener, serving, stopped).instrument(span));
        tracing::info!(%addr, kubeconfig = %kubeconfig.display(), "API server listening");
        Ok(ApiServer { addr, kubeconfig, token, ca_pem: certs.ca_pem, stop, task: Some(task), app: Some(app) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Stops serving, ends every connection and watch, and closes the database (so the same data
    /// directory can be opened again in this process).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(app) = self.app.take() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while Arc::strong_count(&app) > 1 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    /// Waits until the server stops (after [`ApiServer::shutdown`] from elsewhere, or forever).
    pub async fn wait(&mut self) {
        if let Some(task) = self.task.as_mut() {
            let _ = task.await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Creates the data directory (and missing parents) owner-only; an existing one is left as is.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The namespaces every cluster has.
fn bootstrap(app: &App) -> Result<(), StartError> {
    let res = app.registry.get("", "namespaces").expect("namespaces are built in");
    let query = Query::default();
    let scope =
        Scope { res, version: "v1".into(), namespace: None, query: &query, manager: "shifter-apiserver".into() };
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        if app.store.get(&scope.key(name)).is_none() {
            let ns: Value = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            app.create(&scope, ns).map_err(|e| StartError::Bootstrap(e.to_string()))?;
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn a_new_data_directory_and_its_secrets_are_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state").join("apiserver");
        let server = ApiServer::start(Config::ephemeral(&dir)).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for secret in ["ca.key", "token", "kubeconfig"] {
            assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
        }
        server.shutdown().await;
    }
}
