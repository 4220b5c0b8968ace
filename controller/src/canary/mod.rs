//! Canary automation: the pure state machine ([`machine`]) and, around it, the leader-only
//! reconciler ([`reconcile`]) that reads the Canary and its TrafficSplit, calls webhooks and the
//! analysis engine, and writes status and the split.

pub mod machine;
mod mesh;
pub mod reconcile;
pub mod webhooks;

#[cfg(test)]
mod tests;
