//! A real tonic `Destinations` + `Telemetry` server standing in for the controller: tests set the
//! snapshots it serves, read the telemetry windows it received, and stop and restart it on the same
//! port to simulate the controller dying. Also a gRPC backend built on the same API.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use shifter_proto::v1::destinations_client::DestinationsClient;
use shifter_proto::v1::destinations_server::{Destinations, DestinationsServer};
use shifter_proto::v1::telemetry_server::{Telemetry, TelemetryServer};
use shifter_proto::v1::{ReportAck, Snapshot, TelemetryWindow, WatchRequest};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<Snapshot, Status>> + Send>>;

#[derive(Clone)]
struct State {
    snapshots: watch::Sender<HashMap<String, Snapshot>>,
    kill: watch::Receiver<bool>,
    windows: Arc<Mutex<Vec<TelemetryWindow>>>,
    watched: Arc<Mutex<Vec<String>>>,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// Counts a watch stream as open until its task ends.
struct OpenWatch(Arc<Mutex<HashMap<String, usize>>>, String);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        let mut open = self.0.lock().unwrap();
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

#[tonic::async_trait]
impl Destinations for State {
    type WatchStream = SnapshotStream;

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<SnapshotStream>, Status> {
        let authority = request.into_inner().authority;
        self.watched.lock().unwrap().push(authority.clone());
        // Like shifter's controller, a name with no namespace cannot be a Service.
        if !authority.contains('.') {
            return Err(Status::invalid_argument(format!("authority {authority:?} names no namespace")));
        }
        *self.open.lock().unwrap().entry(authority.clone()).or_default() += 1;
        let open = OpenWatch(self.open.clone(), authority.clone());
        let mut rx = self.snapshots.subscribe();
        let mut kill = self.kill.clone();
        let (tx, out) = mpsc::channel(4);
        tokio::spawn(async move {
            let _open = open;
            let mut last = None;
            loop {
                let current = rx.borrow_and_update().get(&authority).cloned().unwrap_or_else(|| Snapshot {
                    version: 1,
                    authority: authority.clone(),
                    exists: false,
                    ..Default::default()
                });
                if last.as_ref() != Some(&current) {
                    last = Some(current.clone());
                    if tx.send(Ok(current)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = killed(&mut kill) => {
                        let _ = tx.send(Err(Status::unavailable("controller stopping"))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}

#[tonic::async_trait]
impl Telemetry for State {
    async fn report(&self, request: Request<Streaming<TelemetryWindow>>) -> Result<Response<ReportAck>, Status> {
        let mut stream = request.into_inner();
        let mut kill = self.kill.clone();
        let mut received = 0;
        loop {
            tokio::select! {
                next = stream.next() => match next {
                    Some(Ok(window)) => {
                        received += 1;
                        self.windows.lock().unwrap().push(window);
                    }
                    _ => break,
                },
                _ = killed(&mut kill) => return Err(Status::unavailable("controller stopping")),
            }
        }
        Ok(Response::new(ReportAck { windows_received: received }))
    }
}

async fn killed(kill: &mut watch::Receiver<bool>) {
    let _ = kill.wait_for(|k| *k).await;
}

pub struct TestController {
    pub addr: SocketAddr,
    snapshots: watch::Sender<HashMap<String, Snapshot>>,
    windows: Arc<Mutex<Vec<TelemetryWindow>>>,
    watched: Arc<Mutex<Vec<String>>>,
    open: Arc<Mutex<HashMap<String, usize>>>,
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// Server certificate and key (PEM) when serving TLS.
    tls: Option<(String, String)>,
    /// Bearer token every call must present, when set.
    pub token: Option<String>,
}

impl TestController {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Serves TLS with this certificate chain and key (PEM).
    pub async fn start_tls(cert_pem: String, key_pem: String) -> Self {
        Self::start_with(Some((cert_pem, key_pem))).await
    }

    async fn start_with(tls: Option<(String, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = Self {
            addr: listener.local_addr().unwrap(),
            snapshots: watch::Sender::new(HashMap::new()),
            windows: Arc::default(),
            watched: Arc::default(),
            open: Arc::default(),
            running: None,
            tls,
            token: None,
        };
        c.serve(listener);
        c
    }

    pub fn uri(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let (kill_tx, kill) = watch::channel(false);
        let state = State {
            snapshots: self.snapshots.clone(),
            kill: kill.clone(),
            windows: self.windows.clone(),
            watched: self.watched.clone(),
            open: self.open.clone(),
        };
        let mut stop = kill;
        let mut builder = tonic::transport::Server::builder();
        if let Some((cert, key)) = &self.tls {
            let identity = tonic::transport::Identity::from_pem(cert, key);
            builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity)).unwrap();
        }
        let expected = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let auth = move |req: Request<()>| {
            let presented = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
            match &expected {
                Some(want) if presented != Some(want.as_str()) => Err(Status::unauthenticated("bad token")),
                _ => Ok(req),
            }
        };
        let task = tokio::spawn(async move {
            let _ = builder
                .add_service(DestinationsServer::with_interceptor(state.clone(), auth.clone()))
                .add_service(TelemetryServer::with_interceptor(state, auth))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    killed(&mut stop).await;
                })
                .await;
        });
        self.running = Some((kill_tx, task));
    }

    /// Serves `snapshot` for its authority (and pushes it to open watches).
    pub fn set(&self, snapshot: Snapshot) {
        self.snapshots.send_modify(|m| {
            m.insert(snapshot.authority.clone(), snapshot);
        });
    }

    /// Kills every stream and closes the port.
    pub async fn stop(&mut self) {
        if let Some((kill, task)) = self.running.take() {
            let _ = kill.send(true);
            task.await.unwrap();
        }
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub fn windows(&self) -> Vec<TelemetryWindow> {
        self.windows.lock().unwrap().clone()
    }

    /// Every authority a watch was asked for, in order (refused ones too).
    pub fn watched(&self) -> Vec<String> {
        self.watched.lock().unwrap().clone()
    }

    /// Watch streams open now, per authority.
    pub fn open_watches(&self) -> HashMap<String, usize> {
        self.open.lock().unwrap().clone()
    }
}

/// A gRPC backend: `Destinations.Watch` answers with one snapshot whose `service` is the
/// backend's name and ends with `code`: in a trailers-only response (no message at all) or, with
/// `after_message`, in the trailers after one message.
#[derive(Clone)]
struct GrpcBackend {
    name: &'static str,
    code: tonic::Code,
    after_message: bool,
}

#[tonic::async_trait]
impl Destinations for GrpcBackend {
    type WatchStream = SnapshotStream;

    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<SnapshotStream>, Status> {
        let one = Snapshot { service: self.name.into(), ..Default::default() };
        match (self.code, self.after_message) {
            (tonic::Code::Ok, _) => Ok(Response::new(Box::pin(tokio_stream::once(Ok(one))))),
            (code, false) => Err(Status::new(code, "backend failure")),
            (code, true) => {
                let items = vec![Ok(one), Err(Status::new(code, "failed mid-stream"))];
                Ok(Response::new(Box::pin(tokio_stream::iter(items))))
            }
        }
    }
}

pub async fn grpc_backend(name: &'static str, code: tonic::Code) -> SocketAddr {
    grpc_backend_with(name, code, false).await
}

/// A gRPC backend whose non-OK status arrives in trailers after one message.
pub async fn grpc_backend_failing_mid_stream(name: &'static str, code: tonic::Code) -> SocketAddr {
    grpc_backend_with(name, code, true).await
}

async fn grpc_backend_with(name: &'static str, code: tonic::Code, after_message: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DestinationsServer::new(GrpcBackend { name, code, after_message }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

/// One gRPC call through `addr`: the name of the backend that answered, or the status code.
pub async fn grpc_call(addr: SocketAddr) -> Result<String, tonic::Code> {
    let mut client = DestinationsClient::connect(format!("http://{addr}")).await.unwrap();
    call_on(&mut client).await
}

pub async fn call_on(client: &mut DestinationsClient<tonic::transport::Channel>) -> Result<String, tonic::Code> {
    let mut stream = client.watch(WatchRequest::default()).await.map_err(|s| s.code())?.into_inner();
    let first = stream.message().await.map_err(|s| s.code())?.map(|s| s.service).unwrap_or_default();
    while stream.message().await.map_err(|s| s.code())?.is_some() {}
    Ok(first)
}
