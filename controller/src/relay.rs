//! Telemetry with several replicas: proxies report to whichever replica they are connected to;
//! every replica keeps what it receives, and a replica that is not the leader also forwards each
//! window to the leader (whose gRPC address it reads from the Lease) over the same
//! `Telemetry.Report` API. The leader therefore sees every proxy's windows and acknowledgements,
//! and judges Canaries and writes `Programmed` from all of them. The queue to the leader is
//! bounded: when the leader is unreachable the oldest windows are dropped, never memory.

use std::sync::Arc;
use std::time::Duration;

use shifter_proto::v1 as pb;
use shifter_proto::v1::telemetry_client::TelemetryClient;
use tokio::sync::{mpsc, watch};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tracing::{debug, warn};

use crate::lease::Leadership;

/// Windows queued for the leader at most.
pub const QUEUE: usize = 1024;

/// Where relayed windows go, and with what credentials.
#[derive(Clone)]
pub struct RelayConfig {
    pub ca_pem: Option<Vec<u8>>,
    pub token: String,
}

/// Starts the relay under `supervisor` (task `relay`); send windows on the returned channel
/// (non-blocking, drop when full). The queue outlives restarts of the task.
pub fn spawn(
    supervisor: &crate::supervise::Supervisor,
    config: RelayConfig,
    leadership: watch::Receiver<Leadership>,
) -> mpsc::Sender<pb::TelemetryWindow> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    supervisor.spawn("relay", tracing::info_span!("relay"), move || {
        let (config, leadership, rx) = (config.clone(), leadership.clone(), rx.clone());
        async move {
            run(config, leadership, rx).await;
            Ok(())
        }
    });
    tx
}

async fn run(
    config: RelayConfig,
    mut leadership: watch::Receiver<Leadership>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<pb::TelemetryWindow>>>,
) {
    loop {
        let target = {
            let l = leadership.borrow_and_update();
            if l.is_leader { None } else { l.leader_address.clone() }
        };
        let Some(address) = target else {
            // Leading, or no leader known: drain so the queue never holds stale windows.
            tokio::select! {
                _ = leadership.changed() => {}
                _ = async { while rx.lock().await.try_recv().is_ok() {} tokio::time::sleep(Duration::from_secs(1)).await } => {}
            }
            continue;
        };
        match forward(&config, &address, rx.clone(), &mut leadership).await {
            Ok(()) => debug!(%address, "leader changed; relay restarts"),
            Err(error) => {
                warn!(%error, %address, "relay to leader failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn forward(
    config: &RelayConfig,
    address: &str,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<pb::TelemetryWindow>>>,
    leadership: &mut watch::Receiver<Leadership>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let scheme = if config.ca_pem.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{address}"))?.connect_timeout(Duration::from_secs(2));
    if let Some(ca) = &config.ca_pem {
        endpoint = endpoint.tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))?;
    }
    let channel = endpoint.connect().await?;
    let token: tonic::metadata::MetadataValue<_> = format!("Bearer {}", config.token).parse()?;
    let mut client = TelemetryClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", token.clone());
        Ok(req)
    });
    let (tx, out) = mpsc::channel::<pb::TelemetryWindow>(16);
    let call = tokio::spawn(async move { client.report(tokio_stream::wrappers::ReceiverStream::new(out)).await });
    loop {
        let window = tokio::select! {
            _ = leadership.changed() => return Ok(()),
            w = async { rx.lock().await.recv().await } => w,
        };
        let Some(window) = window else { return Ok(()) };
        if tx.send(window).await.is_err() {
            break;
        }
    }
    drop(tx);
    call.await??;
    Ok(())
}
