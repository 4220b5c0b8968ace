//! The analysis engine reads the proxies' telemetry through this adapter.

use shifter_analysis::{BackendCounts, MeshSource};

use crate::telemetry::TelemetryStore;

impl MeshSource for TelemetryStore {
    fn counts(&self, namespace: &str, service: &str, backend: &str, from_unix_s: i64, to_unix_s: i64) -> BackendCounts {
        let c =
            TelemetryStore::counts(self, &(namespace.into(), service.into(), backend.into()), from_unix_s, to_unix_s);
        BackendCounts {
            requests: c.requests,
            failures: c.failures,
            latency_counts: c.latency_counts,
            failed_attempts: c.failed_attempts,
            seconds: Vec::new(),
        }
    }
}
