//! Act: the only block that changes the world, and it does so only through
//! the write-ahead machine.
//!
//! - [`intent`]: the typed [`intent::Action`] (one variant per actuator),
//!   its intent, phases and the action ledger's row;
//! - [`machine`]: the pure state machine (next step, what a call's result
//!   and a read-back mean) and the [`machine::Effect`] an actuator
//!   implements: its call under the intent's idempotency key, its
//!   read-back, its probe sites;
//! - one file per actuator's effect: [`kill`] (pause an ad), [`payout`]
//!   (pay a supplier's invoice through the bank), [`refund`] (refund a
//!   customer's order), [`escalate`] (pause and resume an ad's ad set or
//!   campaign when the ad's own pause does not take effect in time),
//!   [`reply`] (send a support reply the gate let out, at most once per
//!   inbound message).
//!
//! A new actuator adds a variant to `Action`, an `Effect` file here, and
//! one arm in `jobs::drive::run`; the machine, the store's rules and the
//! event rows are shared.

pub mod escalate;
pub mod intent;
pub mod kill;
pub mod machine;
pub mod payout;
pub mod refund;
pub mod reply;
