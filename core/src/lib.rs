//! # dlft-core
//!
//! The DLFT control loop with no I/O. Its layout is the loop's blocks:
//!
//! ```text
//! sense → estimate → propose → envelope → act → (the world)
//!        schedule + jobs + worker move the data; store keeps it; telemetry logs it
//! ```
//!
//! - [`sense`]: the ports to the outside (ads platform, model vendor), the
//!   vendors' wire shapes, webhook hints.
//! - [`estimate`]: cost per purchase on matured data, the bandit's
//!   posteriors, activity and scan cadence, off-policy evaluation.
//! - [`propose`]: rules that propose (the kill rule, the budget split);
//!   they never act.
//! - [`envelope`]: deterministic interlocks; every proposal gets a logged
//!   verdict.
//! - [`act`]: the write-ahead machine every irreversible action goes through
//!   (intent → call under an idempotency key → read-back → commit), and
//!   each actuator's effect (its call and its read-back).
//! - [`store`]: the durable state's port and its reference semantics.
//! - [`schedule`]: the job vocabulary and the pure scheduling rules
//!   (backoff, the circuit breaker, schedule slots).
//! - [`jobs`]: one file per job kind (async orchestration only) and the
//!   registry that runs a claimed job; [`worker`]: boot, schedules, pools.
//! - [`telemetry`]: event rows, cost rows, digest, replay.
//! - [`decide`]: the tick's pure decision chain (estimate → propose →
//!   judge), shared by the tick job and the [`backtest`]er.
//!
//! Each module imports only from the blocks before it in this list (plus
//! the foundations `money`, `time`, `ids`, `probe`, `config`);
//! `tests/core_deps.rs` fails on an import that goes the other way.
//!
//! Invariants (see ARCHITECTURE.md): no network, files, wall clock, OS
//! entropy or environment variables here; no `HashMap` iteration; money is
//! [`money::Money`] (integer minor units); decisions are pure functions.

pub mod ids;
pub mod money;
pub mod probe;
pub mod time;

pub mod telemetry;

pub mod sense;

pub mod estimate;

pub mod propose;

pub mod envelope;

pub mod act;

pub mod schedule;

pub mod store;

pub mod config;

pub mod decide;

pub mod jobs;

pub mod backtest;

pub mod worker;

/// Whether this build of core runs its debug assertions (the workspace's
/// release profile keeps them on; `tests/core_deps.rs` checks it).
pub const ASSERTIONS_ON: bool = cfg!(debug_assertions);
