//! Estimate: what the loop believes about the world, from what it sensed.
//! Pure functions of the ledger and the clock.

pub mod bandit;
pub mod cadence;
pub mod estimator;
pub mod identity;
pub mod ope;
pub mod risk;
