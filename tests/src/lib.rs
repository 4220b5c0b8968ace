//! Harness for shifter's end-to-end tests: builds and runs the real `shifter` binary (API server,
//! controller, proxies), real HTTP backends on loopback, and the real kubectl.
//!
//! Everything binds 127.0.0.1 on free ports and lives in a temporary directory, so tests run in
//! parallel; every process is killed when its handle drops, so a failed test leaves nothing behind.

pub mod backend;
pub mod backend_process;
pub mod bin;
pub mod cluster;
pub mod exporter;
pub mod grpc;
pub mod live;
pub mod load;
pub mod netns;
pub mod process;
pub mod prometheus;

pub use backend::Backend;
pub use bin::{kubectl_shift_bin, shifter_bin};
pub use cluster::{Cluster, free_port};
pub use exporter::Exporter;
pub use process::Proc;
pub use prometheus::Prometheus;
