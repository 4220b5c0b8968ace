//! Embedded Kubernetes-compatible API server (work in progress).
