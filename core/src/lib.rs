//! # dlft-core
//!
//! The DLFT control loop with no I/O: domain types, ports (traits), the
//! sensor/estimator/policy/envelope/actuator blocks, the scheduler and
//! telemetry. The sim, the backtester and the live runner all drive this
//! same crate; what differs is only what implements the ports.
//!
//! Invariants (see ARCHITECTURE.md): no network, files, wall clock, OS
//! entropy or environment variables here; no `HashMap` iteration; money is
//! [`money::Money`] (integer minor units); decisions are pure functions.

pub mod actuator;
pub mod ads;
pub mod backtest;
pub mod bandit;
pub mod cadence;
pub mod config;
pub mod envelope;
pub mod estimator;
pub mod ids;
pub mod models;
pub mod money;
pub mod ope;
pub mod policy;
pub mod probe;
pub mod reroll;
pub mod scan;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod tick;
pub mod time;
pub mod webhook;
pub mod wire;
pub mod worker;
