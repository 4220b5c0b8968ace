//! The default provider: the per-backend windows the controller aggregates from its proxies'
//! telemetry. Needs nothing else installed, and sees a backend's first request (a Prometheus counter
//! that appears for the first time hides its first increment).

use std::sync::Arc;

use crate::config::Target;
use crate::counts::BackendCounts;
use crate::error::ProviderError;
use crate::provider::MetricsProvider;

/// What the controller's telemetry store offers the analysis engine. Implemented by the
/// controller; this crate never depends on it.
pub trait MeshSource: Send + Sync {
    /// Summed counts for `backend` behind the apex `service` over one-second buckets in `[from, to)`.
    fn counts(&self, namespace: &str, service: &str, backend: &str, from_unix_s: i64, to_unix_s: i64) -> BackendCounts;
}

impl<T: MeshSource + ?Sized> MeshSource for Arc<T> {
    fn counts(&self, namespace: &str, service: &str, backend: &str, from_unix_s: i64, to_unix_s: i64) -> BackendCounts {
        (**self).counts(namespace, service, backend, from_unix_s, to_unix_s)
    }
}

/// The longest window kept second by second; a longer one (a controller that was away for hours)
/// is read as one total.
pub const MAX_SECONDS: i64 = 3600;

/// Reads windows from a [`MeshSource`], second by second, so clustering can be measured.
pub struct MeshProvider<M> {
    source: M,
}

impl<M: MeshSource> MeshProvider<M> {
    pub fn new(source: M) -> Self {
        MeshProvider { source }
    }
}

impl<M: MeshSource> MetricsProvider for MeshProvider<M> {
    async fn counts(
        &self,
        target: &Target,
        backend: &str,
        from_unix_s: i64,
        to_unix_s: i64,
    ) -> Result<BackendCounts, ProviderError> {
        let read = |from, to| self.source.counts(&target.namespace, &target.service, backend, from, to);
        if to_unix_s - from_unix_s > MAX_SECONDS {
            return Ok(read(from_unix_s, to_unix_s));
        }
        let mut counts = BackendCounts::default();
        for t in from_unix_s..to_unix_s {
            counts.push_second(read(t, t + 1));
        }
        Ok(counts)
    }

    async fn custom(&self, _query: &str, _target: &Target, _from: i64, _to: i64) -> Result<f64, ProviderError> {
        Err(ProviderError::Unsupported(
            "custom queries need provider type prometheus; the mesh provider has only success and latency".into(),
        ))
    }
}
