//! The refund policy: a deterministic rule that says what a customer's claim
//! should get. It only proposes; the refund envelope (`envelope::refund`)
//! decides how much, if anything, may go back, and to where.
//!
//! Claims: damaged, wrong item, did not arrive, return received. What
//! tracking says decides "did not arrive": delivered means evidence first
//! (the most common abuse, money.md), lost or expired means refund, still
//! moving means wait.

use serde::{Deserialize, Serialize};

use crate::money::Money;

pub use crate::sense::claims::{Claim, Tracking};

/// One claim on one order, as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundCase {
    pub claim: Claim,
    /// The value of the items the claim is about (not the whole order).
    pub claimed: Money,
    pub tracking: Tracking,
    /// Days since the order shipped (for "did not arrive" while moving).
    pub days_since_shipped: u32,
}

/// The policy's settings (a policy file may set them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPolicy {
    /// Share of the claimed value refunded for a damaged item without a
    /// return, in basis points (a partial refund keeps the item).
    pub damaged_share_bp: u32,
    /// A parcel still moving after this many days counts as lost.
    pub lost_after_days: u32,
}

impl Default for RefundPolicy {
    fn default() -> Self {
        RefundPolicy { damaged_share_bp: 10_000, lost_after_days: 21 }
    }
}

/// What the policy proposes for a case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "proposal")]
pub enum RefundProposal {
    /// Refund this much (to the original payment method; the envelope
    /// decides the amount that may go).
    Refund { amount: Money, why: String },
    /// Ask the customer for evidence first (photos, a police report).
    AskEvidence { why: String },
    /// Nothing to refund (yet).
    Decline { why: String },
}

/// The policy's proposal for `case`.
pub fn propose(case: &RefundCase, policy: &RefundPolicy) -> RefundProposal {
    let full = case.claimed;
    if full.minor <= 0 {
        return RefundProposal::Decline { why: format!("nothing claimed ({full})") };
    }
    match (case.claim, case.tracking) {
        (Claim::ReturnReceived, _) => RefundProposal::Refund { amount: full, why: "the return was received".into() },
        (Claim::WrongItem, _) => RefundProposal::Refund { amount: full, why: "the wrong item was sent".into() },
        (Claim::Damaged, _) => {
            let amount = Money::new(share(full.minor, policy.damaged_share_bp), full.currency);
            RefundProposal::Refund {
                amount,
                why: format!(
                    "damaged: {}.{:02}% of the item",
                    policy.damaged_share_bp / 100,
                    policy.damaged_share_bp % 100
                ),
            }
        }
        (Claim::DidNotArrive, Tracking::Delivered) => {
            RefundProposal::AskEvidence { why: "did not arrive, but tracking says delivered".into() }
        }
        (Claim::DidNotArrive, Tracking::Lost) => {
            RefundProposal::Refund { amount: full, why: "tracking shows the parcel lost".into() }
        }
        (Claim::DidNotArrive, Tracking::Moving) if case.days_since_shipped >= policy.lost_after_days => {
            RefundProposal::Refund {
                amount: full,
                why: format!("still in transit after {} days: lost", case.days_since_shipped),
            }
        }
        (Claim::DidNotArrive, Tracking::Moving) => RefundProposal::Decline {
            why: format!("in transit for {} days of {}: wait", case.days_since_shipped, policy.lost_after_days),
        },
        (Claim::DidNotArrive, Tracking::Unknown) => {
            RefundProposal::AskEvidence { why: "did not arrive, and no tracking is known".into() }
        }
    }
}

/// `minor × bp / 10,000`, rounded down (never more than asked).
fn share(minor: i64, bp: u32) -> i64 {
    let v = i128::from(minor) * i128::from(bp.min(10_000)) / 10_000;
    i64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn case(claim: Claim, tracking: Tracking, days: u32) -> RefundCase {
        RefundCase { claim, claimed: Money::new(4_999, Currency::EUR), tracking, days_since_shipped: days }
    }

    fn amount(p: RefundProposal) -> Option<i64> {
        match p {
            RefundProposal::Refund { amount, .. } => Some(amount.minor),
            _ => None,
        }
    }

    #[test]
    fn the_policy_table() {
        let p = RefundPolicy::default();
        assert_eq!(amount(propose(&case(Claim::ReturnReceived, Tracking::Delivered, 3), &p)), Some(4_999));
        assert_eq!(amount(propose(&case(Claim::WrongItem, Tracking::Delivered, 3), &p)), Some(4_999));
        assert_eq!(amount(propose(&case(Claim::DidNotArrive, Tracking::Lost, 9), &p)), Some(4_999));
        assert_eq!(amount(propose(&case(Claim::DidNotArrive, Tracking::Moving, 21), &p)), Some(4_999));
        assert!(matches!(
            propose(&case(Claim::DidNotArrive, Tracking::Delivered, 3), &p),
            RefundProposal::AskEvidence { .. }
        ));
        assert!(matches!(
            propose(&case(Claim::DidNotArrive, Tracking::Moving, 20), &p),
            RefundProposal::Decline { .. }
        ));
        assert!(matches!(
            propose(&case(Claim::DidNotArrive, Tracking::Unknown, 30), &p),
            RefundProposal::AskEvidence { .. }
        ));
        let half = RefundPolicy { damaged_share_bp: 5_000, ..p.clone() };
        assert_eq!(amount(propose(&case(Claim::Damaged, Tracking::Delivered, 3), &half)), Some(2_499), "rounded down");
        let mut nothing = case(Claim::WrongItem, Tracking::Delivered, 3);
        nothing.claimed = Money::new(0, Currency::EUR);
        assert!(matches!(propose(&nothing, &p), RefundProposal::Decline { .. }));
    }

    #[test]
    fn a_share_never_exceeds_what_was_claimed() {
        assert_eq!(share(4_999, 20_000), 4_999, "over 100% is 100%");
        assert_eq!(share(i64::MAX, 10_000), i64::MAX);
        assert_eq!(share(1, 9_999), 0);
    }
}
