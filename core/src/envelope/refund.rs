//! The refund envelope: how much of what the policy proposes may go back,
//! and to where (issue 14). Deterministic; every verdict names its facts.
//!
//! - The ceiling is the least of: the policy's proposal, the order's
//!   `maximumRefundableSet` (Shopify's hard bound) minus what open refund
//!   intents of the order already reserve, and the risk tier's cap. A
//!   proposal above the ceiling is clamped to it, and the verdict says which
//!   bound clamped it.
//! - An identity with a chargeback open or lost (tier `blocked`) gets no
//!   automatic refund: a person decides.
//! - The money goes back to the order's original payment only: the
//!   approved refund's parent transaction and gateway come from the order,
//!   never from the proposal (or a customer's message).
//! - One refund per claim, ever: the key is `refund/{brand}/{store}/{order}/{claim}`.
//!
//! The budget caps (`budget`, purpose `refund`) are checked by the store
//! when the intent opens, as for every action that moves money.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::estimate::risk::RiskTier;
use crate::ids::{AdId, BrandId, IdempotencyKey};
use crate::money::{Currency, Money};
use crate::propose::refund::RefundProposal;
use crate::time::Timestamp;

use super::{Decision, DenyReason, Verdict};

/// The order's original payment: the only place a refund may go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalPayment {
    /// The sale or capture transaction the refund's transaction is parented to.
    pub transaction_id: String,
    pub gateway: String,
}

/// What the envelope knows of the order a claim is on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    pub brand: BrandId,
    pub store: String,
    pub order_id: String,
    /// The claim's own id (a support thread, a return): one refund per claim.
    pub claim_id: String,
    /// `suggestedRefund.maximumRefundableSet`, in the shop's currency.
    pub max_refundable: Money,
    /// What open refund intents of this order reserve (not yet read back).
    pub in_flight: Money,
    pub tier: RiskTier,
    /// The facts that set the tier (`estimate::risk::tier_of`).
    pub tier_facts: Vec<String>,
    pub payment: OriginalPayment,
}

impl OrderFacts {
    /// The facts of a claim on `order` as the shop shows it, with what open
    /// refund intents of it reserve and the identity's tier. Refused (a
    /// clear reason, nothing judged) when the order has no payment to refund
    /// to, or the reservations are in another currency.
    #[allow(clippy::too_many_arguments, reason = "each is one named fact of the case")]
    pub fn of(
        brand: &BrandId,
        store: &str,
        claim_id: &str,
        order: &crate::sense::shop::ShopOrder,
        in_flight: Money,
        tier: RiskTier,
        tier_facts: Vec<String>,
    ) -> Result<OrderFacts, String> {
        let Some((transaction_id, gateway)) = order.payment.clone() else {
            return Err(format!("order {} has no successful payment to refund to", order.id));
        };
        if in_flight.currency != order.max_refundable.currency {
            return Err(format!(
                "order {}: in-flight refunds in {}, the order in {}",
                order.id, in_flight.currency, order.max_refundable.currency
            ));
        }
        Ok(OrderFacts {
            brand: brand.clone(),
            store: store.to_string(),
            order_id: order.id.clone(),
            claim_id: claim_id.to_string(),
            max_refundable: order.max_refundable,
            in_flight,
            tier,
            tier_facts,
            payment: OriginalPayment { transaction_id, gateway },
        })
    }
}

/// What each tier may get back without a person, in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierCaps {
    pub currency: Currency,
    /// `None`: no cap beyond the policy's and the order's.
    pub trusted: Option<i64>,
    pub watch: i64,
    pub high: i64,
}

impl TierCaps {
    /// The tier's cap in minor units; `None` for no cap; blocked: 0.
    pub fn cap(&self, tier: RiskTier) -> Option<i64> {
        match tier {
            RiskTier::Trusted => self.trusted,
            RiskTier::Watch => Some(self.watch),
            RiskTier::High => Some(self.high),
            RiskTier::Blocked => Some(0),
        }
    }
}

/// A refund the envelope approved: the intent the refund actuator opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovedRefund {
    pub key: IdempotencyKey,
    pub verdict: Verdict,
    pub store: String,
    pub order_id: String,
    /// At most the ceiling; positive.
    pub amount: Money,
    /// The original payment (never the proposal's choice).
    pub payment: OriginalPayment,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundJudged {
    Approved(ApprovedRefund),
    Refused(Verdict),
}

/// The key of the refund of one claim: one refund per claim, ever.
pub fn refund_key(order: &OrderFacts) -> IdempotencyKey {
    IdempotencyKey::new(format!("refund/{}/{}/{}/{}", order.brand, order.store, order.order_id, order.claim_id))
}

/// Judges a proposal for the claim on `order`. `opened` holds every refund
/// key ever opened.
pub fn judge_refund(
    order: &OrderFacts,
    proposal: &RefundProposal,
    caps: &TierCaps,
    opened: &BTreeSet<IdempotencyKey>,
    now: Timestamp,
) -> RefundJudged {
    let key = refund_key(order);
    let verdict = |decision: Decision, reason: String| Verdict {
        ad: AdId::new(order.order_id.clone()),
        key: key.clone(),
        decision,
        at: now,
        reason,
    };
    let deny = |r: DenyReason, reason: String| RefundJudged::Refused(verdict(Decision::Deny(r), reason));
    if opened.contains(&key) {
        return deny(
            DenyReason::Duplicate,
            format!("claim {} on order {}: refunded once already", order.claim_id, order.order_id),
        );
    }
    let (asked, why) = match proposal {
        RefundProposal::Refund { amount, why } => (*amount, why.as_str()),
        RefundProposal::AskEvidence { why } | RefundProposal::Decline { why } => {
            return deny(DenyReason::NoAutomaticRefund, format!("the policy proposes no refund: {why}"));
        }
    };
    let currency = order.max_refundable.currency;
    if asked.currency != currency || order.in_flight.currency != currency || caps.currency != currency {
        return deny(
            DenyReason::Malformed,
            format!(
                "currencies differ: proposal {}, order {}, in flight {}, tier caps {}",
                asked.currency, currency, order.in_flight.currency, caps.currency
            ),
        );
    }
    if asked.minor <= 0 {
        return deny(DenyReason::Malformed, format!("a refund of {asked} is not positive"));
    }
    if order.tier == RiskTier::Blocked {
        return deny(
            DenyReason::NoAutomaticRefund,
            format!("tier blocked ({}): a person decides", order.tier_facts.join("; ")),
        );
    }
    // The bounds, each named; the least is the ceiling.
    let left = order.max_refundable.minor.saturating_sub(order.in_flight.minor);
    let mut bounds =
        vec![("the policy's proposal", asked.minor), ("the order's refundable amount less what is in flight", left)];
    if let Some(cap) = caps.cap(order.tier) {
        bounds.push(("the tier's cap", cap));
    }
    let (bound, ceiling) = bounds.iter().copied().min_by_key(|(_, v)| *v).expect("two bounds at least");
    let m = |minor| Money::new(minor, currency);
    let facts = format!(
        "proposed {asked} ({why}); refundable {} less {} in flight; tier {}{}",
        order.max_refundable,
        order.in_flight,
        order.tier.as_str(),
        if order.tier_facts.is_empty() { String::new() } else { format!(" ({})", order.tier_facts.join("; ")) }
    );
    if ceiling <= 0 {
        return deny(DenyReason::NothingRefundable, format!("ceiling {} set by {bound}: {facts}", m(ceiling.max(0))));
    }
    let reason = if ceiling < asked.minor {
        format!("clamped to {} by {bound}: {facts}", m(ceiling))
    } else {
        format!("{} within every bound: {facts}", m(ceiling))
    };
    RefundJudged::Approved(ApprovedRefund {
        key: key.clone(),
        verdict: verdict(Decision::Approve, reason),
        store: order.store.clone(),
        order_id: order.order_id.clone(),
        amount: m(ceiling),
        payment: order.payment.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EUR: Currency = Currency::EUR;

    fn order(tier: RiskTier) -> OrderFacts {
        OrderFacts {
            brand: BrandId::new("north"),
            store: "north-eu".into(),
            order_id: "gid://shopify/Order/1001".into(),
            claim_id: "thread-7".into(),
            max_refundable: Money::new(10_000, EUR),
            in_flight: Money::new(0, EUR),
            tier,
            tier_facts: vec![],
            payment: OriginalPayment {
                transaction_id: "gid://shopify/OrderTransaction/55".into(),
                gateway: "shopify_payments".into(),
            },
        }
    }

    fn caps() -> TierCaps {
        TierCaps { currency: EUR, trusted: None, watch: 5_000, high: 1_500 }
    }

    fn refund(minor: i64) -> RefundProposal {
        RefundProposal::Refund { amount: Money::new(minor, EUR), why: "wrong item".into() }
    }

    fn judged(o: &OrderFacts, p: &RefundProposal) -> RefundJudged {
        judge_refund(o, p, &caps(), &BTreeSet::new(), Timestamp(0))
    }

    fn approved(j: RefundJudged) -> ApprovedRefund {
        match j {
            RefundJudged::Approved(a) => a,
            RefundJudged::Refused(v) => panic!("refused: {v:?}"),
        }
    }

    fn refused(j: RefundJudged) -> (DenyReason, String) {
        match j {
            RefundJudged::Refused(Verdict { decision: Decision::Deny(r), reason, .. }) => (r, reason),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_ceiling_is_the_least_bound_and_names_it() {
        let a = approved(judged(&order(RiskTier::Trusted), &refund(4_000)));
        assert_eq!(a.amount, Money::new(4_000, EUR));
        assert!(a.verdict.reason.starts_with("40.00 EUR within every bound"), "{}", a.verdict.reason);
        assert_eq!(a.key.as_str(), "refund/north/north-eu/gid://shopify/Order/1001/thread-7");
        // The order's refundable amount less what is in flight.
        let mut o = order(RiskTier::Trusted);
        o.in_flight = Money::new(7_000, EUR);
        let a = approved(judged(&o, &refund(4_000)));
        assert_eq!(a.amount.minor, 3_000);
        assert!(a.verdict.reason.contains("by the order's refundable amount less what is in flight"));
        // The tier's cap.
        let a = approved(judged(&order(RiskTier::High), &refund(4_000)));
        assert_eq!(a.amount.minor, 1_500);
        assert!(a.verdict.reason.contains("clamped to 15.00 EUR by the tier's cap"), "{}", a.verdict.reason);
        // Nothing left to refund.
        o.in_flight = Money::new(10_000, EUR);
        assert_eq!(refused(judged(&o, &refund(1))).0, DenyReason::NothingRefundable);
    }

    #[test]
    fn the_money_goes_back_to_the_original_payment_only() {
        let a = approved(judged(&order(RiskTier::Watch), &refund(100)));
        assert_eq!(a.payment, order(RiskTier::Watch).payment);
    }

    #[test]
    fn a_chargeback_or_a_policy_without_refund_refunds_nothing() {
        let mut o = order(RiskTier::Blocked);
        o.tier_facts = vec!["1 chargeback(s) open".into()];
        let (r, why) = refused(judged(&o, &refund(100)));
        assert_eq!(r, DenyReason::NoAutomaticRefund);
        assert!(why.contains("1 chargeback(s) open"), "{why}");
        let ask = RefundProposal::AskEvidence { why: "tracking says delivered".into() };
        assert_eq!(refused(judged(&order(RiskTier::Trusted), &ask)).0, DenyReason::NoAutomaticRefund);
    }

    #[test]
    fn bad_input_refunds_nothing() {
        let usd = RefundProposal::Refund { amount: Money::new(100, Currency::USD), why: "x".into() };
        assert_eq!(refused(judged(&order(RiskTier::Trusted), &usd)).0, DenyReason::Malformed);
        assert_eq!(refused(judged(&order(RiskTier::Trusted), &refund(0))).0, DenyReason::Malformed);
        assert_eq!(refused(judged(&order(RiskTier::Trusted), &refund(-5))).0, DenyReason::Malformed);
        let o = order(RiskTier::Trusted);
        let opened: BTreeSet<IdempotencyKey> = [refund_key(&o)].into();
        let dup = judge_refund(&o, &refund(100), &caps(), &opened, Timestamp(0));
        assert_eq!(refused(dup).0, DenyReason::Duplicate, "one refund per claim");
    }
}
