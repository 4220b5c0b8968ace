//! Canary automation: the pure state machine ([`machine`]) and, around it, the leader-only
//! reconciler that reads the Canary and its TrafficSplit, calls webhooks and the analysis engine,
//! and writes the split and status.

pub mod machine;

#[cfg(test)]
mod tests;
