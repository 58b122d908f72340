//! The safety envelope: deterministic interlocks between what the policy
//! proposes and what the actuator may do. Every verdict is logged.
//!
//! Interlocks for the ad kill: an idempotency key per ad (one kill intent,
//! ever), the envelope's own kill threshold (a policy bug cannot kill a
//! winner), the learning-phase guard, a blast-radius cap per tick, and the
//! attempt cap on external calls per intent.
//!
//! Interlocks for money: [`budget`], caps as ledger accounts that a
//! reservation may not overdraw, checked in the same atomic write that
//! opens the intent.

pub mod budget;
pub mod gate;
pub mod payout;
pub mod refund;
pub mod scan;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::estimate::estimator::AdEstimate;
use crate::ids::{AdId, IdempotencyKey};
use crate::money::Money;
use crate::propose::kill_rule::{Proposal, clears_kill_threshold};
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeConfig {
    /// The envelope's own floor: a kill whose evidence does not clear it is refused.
    pub kill_cpa_floor: Money,
    /// External calls per intent before it is abandoned for an operator.
    pub max_attempts: u32,
    /// At most this share of the ads seen in one tick may be killed in it.
    pub max_kill_share_pct: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny(DenyReason),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// An intent with this key exists: the kill is already under way or done.
    Duplicate,
    BelowThreshold,
    InLearning,
    BlastRadius,
    /// The reservation would overdraw a budget cap, or no cap covers it.
    OverBudget,
    /// A payout to a counterparty off the brand's allow-list.
    UnknownPayee,
    /// An invoice whose bank details differ from the payee's on record
    /// (or are malformed): flagged, never paid.
    BankDetailsChanged,
    /// Input that cannot be used (a payables file with a bad row): refused
    /// whole, naming the row and the field.
    Malformed,
    /// No refund without a person: the identity's tier is blocked (a
    /// chargeback open or lost), or the policy proposed none.
    NoAutomaticRefund,
    /// The refund's ceiling is zero: nothing left to refund.
    NothingRefundable,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub ad: AdId,
    pub key: IdempotencyKey,
    pub decision: Decision,
    pub at: Timestamp,
    pub reason: String,
}

impl Verdict {
    pub fn approved(&self) -> bool {
        self.decision == Decision::Approve
    }
}

/// The idempotency key of the kill of `ad`: one kill per ad, ever.
pub fn kill_key(ad: &AdId) -> IdempotencyKey {
    IdempotencyKey::new(format!("kill/{ad}"))
}

/// Judges proposals in order. `opened` holds the key of every intent ever opened;
/// `ads_seen` is how many ads the tick estimated (for the blast radius).
pub fn judge(
    proposals: &[Proposal],
    opened: &BTreeSet<IdempotencyKey>,
    ads_seen: usize,
    cfg: &EnvelopeConfig,
    now: Timestamp,
) -> Vec<Verdict> {
    let cap = (ads_seen as u64 * u64::from(cfg.max_kill_share_pct) / 100).max(1);
    let mut approved = 0u64;
    let mut seen: BTreeSet<&AdId> = BTreeSet::new();
    proposals
        .iter()
        .map(|p| {
            let key = kill_key(&p.ad);
            let first_in_tick = seen.insert(&p.ad);
            let decision = if opened.contains(&key) || !first_in_tick {
                Decision::Deny(DenyReason::Duplicate)
            } else if p.evidence.in_learning {
                Decision::Deny(DenyReason::InLearning)
            } else if !clears_kill_threshold(&p.evidence, cfg.kill_cpa_floor) {
                Decision::Deny(DenyReason::BelowThreshold)
            } else if approved >= cap {
                Decision::Deny(DenyReason::BlastRadius)
            } else {
                approved += 1;
                Decision::Approve
            };
            Verdict { ad: p.ad.clone(), key, decision, at: now, reason: reason_of(&p.evidence, cfg) }
        })
        .collect()
}

fn reason_of(e: &AdEstimate, cfg: &EnvelopeConfig) -> String {
    format!(
        "matured spend {} / {} purchases vs floor {} per purchase",
        e.matured_spend, e.matured_purchases, cfg.kill_cpa_floor
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn proposal(ad: &str, spend: i64, learning: bool) -> Proposal {
        let evidence = AdEstimate {
            ad: AdId::new(ad),
            first_bucket: Timestamp(0),
            matured_until: Timestamp(0),
            matured_spend: Money::new(spend, Currency::EUR),
            matured_purchases: 0,
            matured_revenue: Money::zero(Currency::EUR),
            in_learning: learning,
        };
        Proposal { ad: AdId::new(ad), evidence, reason: String::new() }
    }

    const CFG: EnvelopeConfig =
        EnvelopeConfig { kill_cpa_floor: Money::new(5000, Currency::EUR), max_attempts: 3, max_kill_share_pct: 50 };

    #[test]
    fn verdict_table() {
        let proposals = vec![
            proposal("a", 6000, false), // approve
            proposal("b", 100, false),  // a policy bug: below the envelope's floor
            proposal("c", 6000, true),  // in learning
            proposal("a", 6000, false), // same ad twice in one tick
            proposal("d", 6000, false), // over the blast radius (2 of 4 ads)
            proposal("e", 6000, false),
        ];
        let got: Vec<_> =
            judge(&proposals, &BTreeSet::new(), 4, &CFG, Timestamp(1)).into_iter().map(|v| v.decision).collect();
        use Decision::*;
        use DenyReason::*;
        assert_eq!(
            got,
            vec![Approve, Deny(BelowThreshold), Deny(InLearning), Deny(Duplicate), Approve, Deny(BlastRadius)]
        );
    }
}
