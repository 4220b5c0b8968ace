//! The gRPC side: `Destinations.Watch` streams snapshots from a [`DestinationIndex`];
//! `Telemetry.Report` feeds the [`TelemetryStore`], which refuses a window that breaks its rules
//! (the stream then ends with `INVALID_ARGUMENT` naming the field). Requests in, protobuf out — no
//! cluster access.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{Stream, StreamExt};
use shifter_proto::v1 as pb;
use shifter_proto::v1::destinations_server::{Destinations, DestinationsServer};
use shifter_proto::v1::telemetry_server::{Telemetry, TelemetryServer};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use crate::Authority;
use crate::index::DestinationIndex;
use crate::lease::Leadership;
use crate::metrics::ControllerMetrics;
use crate::telemetry::TelemetryStore;

/// Serves `Destinations` from an index.
pub struct DestinationService<I> {
    index: Arc<I>,
    metrics: Arc<ControllerMetrics>,
}

impl<I: DestinationIndex> DestinationService<I> {
    pub fn new(index: Arc<I>, metrics: Arc<ControllerMetrics>) -> DestinationsServer<Self> {
        DestinationsServer::new(DestinationService { index, metrics })
    }
}

/// Counts an open stream for as long as it lives.
struct StreamGuard(Arc<ControllerMetrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.watch_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::Snapshot, Status>> + Send>>;

#[tonic::async_trait]
impl<I: DestinationIndex> Destinations for DestinationService<I> {
    type WatchStream = SnapshotStream;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<SnapshotStream>, Status> {
        let req = request.into_inner();
        let authority: Authority = match req.authority.parse::<std::net::SocketAddr>() {
            // A sidecar asks by a redirected connection's original destination.
            Ok(addr) => match self.index.authority_at(addr) {
                Some(authority) => authority,
                None => {
                    debug!(%addr, "no Service at this address; the sidecar passes it through");
                    let unknown = pb::Snapshot { authority: req.authority, exists: false, ..Default::default() };
                    return Ok(Response::new(Box::pin(futures::stream::iter([Ok(unknown)]))));
                }
            },
            Err(_) => {
                req.authority.parse().map_err(|e: crate::AuthorityError| Status::invalid_argument(e.to_string()))?
            }
        };
        let (proxy, namespace) = req.proxy.map(|p| (p.id, p.namespace)).unwrap_or_default();
        debug!(%authority, %proxy, %namespace, "proxy watching");
        // Each stream reads its own watch channel: a slow proxy only ever misses intermediate
        // snapshots (it gets the newest), and never delays another proxy. The proxy's namespace
        // picks the Gateway API consumer routes that apply to it.
        let rx = self.index.watch_from(&authority, &namespace);
        self.metrics.watch_streams.fetch_add(1, Ordering::Relaxed);
        let guard = StreamGuard(self.metrics.clone());
        let metrics = self.metrics.clone();
        let mut first = true;
        let stream = WatchStream::new(rx).map(move |published| {
            let _alive = &guard;
            metrics.snapshot_pushes.fetch_add(1, Ordering::Relaxed);
            if !std::mem::take(&mut first) {
                metrics.push_latency.observe(published.at.elapsed());
            }
            Ok(published.snapshot.clone())
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Receives `Telemetry.Report` streams into a store, and relays them to the leader when this
/// replica is not the leader (see [`crate::relay`]).
pub struct TelemetryService {
    store: Arc<TelemetryStore>,
    metrics: Arc<ControllerMetrics>,
    relay: Option<(mpsc::Sender<pb::TelemetryWindow>, watch::Receiver<Leadership>)>,
}

impl TelemetryService {
    pub fn new(store: Arc<TelemetryStore>, metrics: Arc<ControllerMetrics>) -> TelemetryServer<Self> {
        TelemetryServer::new(TelemetryService { store, metrics, relay: None })
    }

    /// A service that also forwards windows to the leader while this replica follows.
    pub fn with_relay(
        store: Arc<TelemetryStore>,
        metrics: Arc<ControllerMetrics>,
        relay: mpsc::Sender<pb::TelemetryWindow>,
        leadership: watch::Receiver<Leadership>,
    ) -> TelemetryServer<Self> {
        TelemetryServer::new(TelemetryService { store, metrics, relay: Some((relay, leadership)) })
    }
}

#[tonic::async_trait]
impl Telemetry for TelemetryService {
    async fn report(
        &self,
        request: Request<Streaming<pb::TelemetryWindow>>,
    ) -> Result<Response<pb::ReportAck>, Status> {
        let mut stream = request.into_inner();
        let mut received = 0;
        while let Some(window) = stream.message().await? {
            // A window that breaks a rule ends the stream: the proxy learns why, and nothing of
            // the window is kept or relayed.
            if let Err(invalid) = self.store.record(&window) {
                self.metrics.record_rejected_window(invalid.reason.as_str());
                let proxy = window.proxy.as_ref().map(|p| p.id.as_str()).unwrap_or_default();
                warn!(%proxy, field = %invalid.field, problem = %invalid.problem, "rejected a telemetry window");
                return Err(Status::invalid_argument(invalid.to_string()));
            }
            if let Some((relay, leadership)) = &self.relay
                && !leadership.borrow().is_leader
            {
                // Full queue: drop rather than slow the proxy down.
                let _ = relay.try_send(window);
            }
            self.metrics.telemetry_windows.fetch_add(1, Ordering::Relaxed);
            received += 1;
        }
        Ok(Response::new(pb::ReportAck { windows_received: received }))
    }
}
