//! Propose: rules (and, later, models) that say what should happen. A
//! proposal is never an action: the envelope judges it first.

pub mod allocation;
pub mod kill_rule;
pub mod refund;
pub mod router;
pub mod support;
