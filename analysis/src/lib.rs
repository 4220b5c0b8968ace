//! shifter's analysis engine: each tick it compares the canary with the stable version over the
//! same window and answers Pass, Fail, Inconclusive or Error, with a sentence naming the numbers.
//! It exists so that rollouts are judged by an anytime-valid sequential test on counts — checking
//! every few seconds does not inflate false rollbacks, shared incidents do not blame the canary,
//! weight changes are accounted for — instead of fixed thresholds once a minute.
//!
//! It must never call a canary healthy without traffic (no traffic is Inconclusive, never Pass),
//! never turn a failed metrics source into a Pass or a Fail (that is Error), and never depend on the
//! controller: the controller implements [`MeshSource`] over its telemetry store and calls
//! [`Analyzer::tick`].

pub mod analyzer;
pub mod config;
pub mod counts;
pub mod dispersion;
pub mod eprocess;
pub mod error;
pub mod judge;
pub mod latency;
pub mod provider;
pub mod simulate;
pub mod verdict;

pub use analyzer::{Analyzer, AnalyzerState, FailedAttempts, MetricState};
pub use config::{AnalyzerConfig, Judge, MetricConfig, Target};
pub use counts::{BackendCounts, LATENCY_BUCKETS, WindowCounts};
pub use error::{ConfigError, ProviderError};
pub use provider::mesh::{MeshProvider, MeshSource};
pub use provider::prometheus::{PrometheusConfig, PrometheusProvider};
pub use provider::{AnyProvider, MetricsProvider};
pub use verdict::{MetricVerdict, Verdict, VerdictResult};
