//! shifter's embedded Kubernetes-compatible API server. No cluster runs on one machine, yet users
//! drive shifter with kubectl and the controller is a kube-rs controller; this crate speaks the
//! Kubernetes API on the wire (discovery, OpenAPI, CRUD, patch and server-side apply, watch,
//! tables, CRDs with schema enforcement) over TLS with a bearer token, backed by a durable store.
//!
//! It is not a cluster and must never pretend to be one: no scheduler, no kubelet, no pods, no
//! RBAC beyond the one token. It must never acknowledge a write before it is durable, never leave
//! a rejected write half-applied, and never listen beyond loopback unless asked to.

pub mod admission;
pub mod app;
pub mod apply;
pub mod builtin;
pub mod builtin_schema;
pub mod changelog;
pub mod cli;
pub mod conn;
pub mod crd_schema;
pub mod delete;
pub mod discovery;
pub mod error;
pub mod events;
pub mod fields;
pub mod http;
pub mod openapi;
pub mod params;
pub mod patch;
pub mod proto;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod store;
pub mod table;
pub mod tls;
pub mod watch;
pub mod write;

pub use admission::{Admission, AdmissionChain};
pub use cli::{Args, run, run_blocking};
pub use error::{ApiError, FieldError};
pub use server::{ApiServer, Config, StartError};
