//! Canary automation: the pure state machine ([`machine`]) and, around it, the leader-only tick
//! ([`reconcile`]) that reads the Canary and its TrafficSplit (or Gateway API route, [`route`]), calls webhooks and the analysis
//! engine, and writes status and the split; one [`worker`] per Canary schedules its ticks, and the
//! [`dispatch`]er keeps a worker for every Canary that exists.

pub mod dispatch;
pub mod machine;
mod mesh;
pub mod reconcile;
pub mod route;
pub mod webhooks;
pub mod worker;

pub use dispatch::CanaryController;

#[cfg(test)]
mod tests;
