//! # dlft-sim
//!
//! The seeded world DLFT is tested against: a turmoil simulation with a
//! database host, an ads-platform host and a worker host running
//! `dlft-core`'s loop; fault injection (container loss at random instants and
//! at probe sites, partitions, API timeouts and storms); an invariant checker
//! that measures leaked money in integer cents against world truth; and MTTR
//! in virtual time.
//!
//! Determinism: everything random is drawn from per-component ChaCha streams
//! derived from the one `u64` seed; turmoil's own RNG is seeded from it too;
//! no wall clock, no `HashMap`.

pub mod bank;
pub mod checker;
pub mod conductor;
pub mod event;
pub mod faults;
pub mod hosts;
pub mod inbox;
pub mod inproc;
pub mod payouts;
pub mod refunds;
pub mod report;
pub mod rpc;
pub mod run;
pub mod scenario;
pub mod shop;
pub mod shrink;
pub mod support;
pub mod track17;
pub mod world;
