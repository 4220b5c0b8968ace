//! The controller client: one `Destinations.Watch` stream per authority, reconnected with
//! exponential backoff and jitter. While a stream is down the last applied snapshot keeps serving
//! (fail-static); every snapshot received, including the first after reconnecting, replaces the
//! authority's whole table. A watch for an outbound authority ends once the controller says the
//! authority does not exist (a snapshot with `exists: false`, or `INVALID_ARGUMENT` for a name
//! that cannot be a Service): it is remembered as unknown instead (see `crate::authorities`).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rand::Rng;
use shifter_proto::v1::destinations_client::DestinationsClient;
use shifter_proto::v1::{ProxyIdentity, WatchRequest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tracing::{debug, info, warn};

use super::{ControllerConfig, Settings};
use crate::destinations::{Destination, Destinations};
use crate::error::ConfigError;

/// A lazily connected channel to the controller, shared by every watch and by telemetry.
#[derive(Clone)]
pub(crate) struct Controller {
    pub channel: Channel,
    pub identity: ProxyIdentity,
    pub auth: BearerToken,
}

/// Adds `authorization: Bearer <token>` to every call when a token is configured.
#[derive(Clone)]
pub(crate) struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Controller {
    pub fn new(cfg: &ControllerConfig, settings: &Settings) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Controller { uri: cfg.uri.clone(), reason };
        let mut endpoint = Endpoint::from_shared(cfg.uri.clone())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        if cfg.uri.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &cfg.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| invalid(e.to_string()))?;
        } else if cfg.ca_pem.is_some() {
            return Err(invalid("a CA file needs an https:// controller address".into()));
        }
        let auth = match &cfg.token {
            Some(token) => Some(
                MetadataValue::try_from(format!("Bearer {}", token.trim()))
                    .map_err(|_| invalid("the token must be printable ASCII".into()))?,
            ),
            None => None,
        };
        Ok(Self { channel: endpoint.connect_lazy(), identity: cfg.identity.clone(), auth: BearerToken(auth) })
    }
}

/// Exponential backoff with equal jitter: between half and all of `base * 2^attempt`, capped.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(max);
    let half = ceiling / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

/// Keeps `dest` fed with snapshots for as long as the proxy runs.
pub(crate) async fn watch_authority(dests: Arc<Destinations>, dest: Arc<Destination>, controller: Controller) {
    let settings = dests.settings().clone();
    let mut client = DestinationsClient::with_interceptor(controller.channel.clone(), controller.auth.clone());
    let mut attempt = 0;
    loop {
        let request = WatchRequest {
            authority: dest.authority.clone(),
            proxy: Some(controller.identity.clone()),
            applied_version: dest.current().map_or(0, |t| t.version()),
        };
        match client.watch(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(snapshot)) => {
                            attempt = 0;
                            dest.streaming.store(true, Relaxed);
                            let version = snapshot.version;
                            match dests.apply(&dest, snapshot) {
                                Ok(()) => info!(authority = %dest.authority, version, "applied snapshot"),
                                Err(error) => {
                                    warn!(%error, authority = %dest.authority, version, "rejected snapshot; keeping the previous one")
                                }
                            }
                            if dests.settle_unknown(&dest) {
                                debug!(authority = %dest.authority, "no such service; stopped watching");
                                return;
                            }
                        }
                        Ok(None) => {
                            debug!(authority = %dest.authority, "controller closed the watch");
                            break;
                        }
                        Err(status) => {
                            warn!(code = ?status.code(), message = status.message(), authority = %dest.authority, "watch broke; serving the last snapshot");
                            break;
                        }
                    }
                }
            }
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                // The controller cannot route this name at all; asking again will not change that.
                debug!(message = status.message(), authority = %dest.authority, "not a routable authority");
                if dests.settle_refused(&dest) {
                    return;
                }
                warn!(message = status.message(), authority = %dest.authority, "the controller refuses this authority");
            }
            Err(status) => {
                debug!(code = ?status.code(), message = status.message(), authority = %dest.authority, "controller unavailable");
            }
        }
        dest.streaming.store(false, Relaxed);
        tokio::time::sleep(backoff(settings.backoff_base, settings.backoff_max, attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let d0 = backoff(base, max, 0);
        assert!(d0 >= Duration::from_millis(50) && d0 <= base);
        let d3 = backoff(base, max, 3);
        assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
        for _ in 0..50 {
            let d = backoff(base, max, 40);
            assert!(d >= Duration::from_secs(1) && d <= max);
        }
    }
}
