//! A refund as a write-ahead action (issue 14): `refundCreate` under
//! `@idempotent(key)` and its read-back through `order.refunds`. The machine
//! does the rest; the amount is reserved against the brand's refund caps
//! when the intent opens and posted (the amount the shop shows refunded)
//! when it commits.
//!
//! The read-back finds the refund by the marker its note carries
//! (`dlft:{intent key}`) and its amount: the machine keeps no reply, so a
//! refund whose reply was lost is found the same way as any other. What
//! the shop's states mean here: every transaction `SUCCESS` is the effect;
//! pending ones are on their way (wait, never refund again); a failed one
//! is refused for good (abandon: the reservation is voided); no refund
//! under the marker means none was made (call again, under the same key,
//! which the shop deduplicates for about 24 h).

use serde::{Deserialize, Serialize};

use crate::envelope::refund::ApprovedRefund;
use crate::ids::IdempotencyKey;
use crate::money::{Currency, Money};
use crate::probe::Site;
use crate::sense::shop::{RefundRequest, RefundStatus, Shop, ShopError, ShopRefund};
use crate::time::Millis;

use super::machine::{CallError, Effect, Found, Seen, Sites};

/// What a refund pays back, and to where (the order's original payment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundOrder {
    pub store: String,
    pub order_id: String,
    pub amount: Money,
    pub parent_transaction_id: String,
    pub gateway: String,
}

impl RefundOrder {
    /// The order an approved refund pays.
    pub fn of(approved: &ApprovedRefund) -> RefundOrder {
        RefundOrder {
            store: approved.store.clone(),
            order_id: approved.order_id.clone(),
            amount: approved.amount,
            parent_transaction_id: approved.payment.transaction_id.clone(),
            gateway: approved.payment.gateway.clone(),
        }
    }
}

/// The intent an approved refund opens: paid back to the order's original
/// payment, reserving the amount against the brand's refund caps.
pub fn refund_intent(
    approved: &ApprovedRefund,
    order: &crate::envelope::refund::OrderFacts,
    proposal: &crate::propose::refund::RefundProposal,
) -> crate::act::intent::NewIntent {
    use crate::act::intent::{Action, Evidence, NewIntent};
    use crate::envelope::budget::{Purpose, Reserve};
    NewIntent {
        key: approved.key.clone(),
        action: Action::Refund { order: RefundOrder::of(approved) },
        evidence: Evidence::Refund { order: order.clone(), proposal: proposal.clone() },
        verdict: approved.verdict.clone(),
        reserve: Some(Reserve { purpose: Purpose::Refund, amount: approved.amount, counterparty: None }),
    }
}

/// What open refund intents of `order_id` reserve, in `currency`: the part
/// of the order's refundable amount already on its way.
pub fn in_flight_on<'a>(
    order_id: &str,
    currency: Currency,
    intents: impl IntoIterator<Item = &'a crate::act::intent::Intent>,
) -> Money {
    let minor = intents
        .into_iter()
        .filter(|i| !i.phase.is_final())
        .filter_map(|i| match &i.action {
            crate::act::intent::Action::Refund { order } if order.order_id == order_id => Some(order.amount),
            _ => None,
        })
        .filter(|m| m.currency == currency)
        .map(|m| m.minor)
        .sum();
    Money::new(minor, currency)
}

/// The marker a refund's note carries: how a read-back finds it.
pub fn marker(key: &IdempotencyKey) -> String {
    format!("dlft:{key}")
}

/// Refunds one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundEffect {
    /// The idempotency key the shop deduplicates on (the intent's).
    pub key: IdempotencyKey,
    pub request: RefundRequest,
    pub marker: String,
}

impl RefundEffect {
    pub fn new(key: &IdempotencyKey, order: &RefundOrder) -> RefundEffect {
        let marker = marker(key);
        RefundEffect {
            key: key.clone(),
            request: RefundRequest {
                order_id: order.order_id.clone(),
                amount: order.amount,
                parent_transaction_id: order.parent_transaction_id.clone(),
                gateway: order.gateway.clone(),
                note: marker.clone(),
            },
            marker,
        }
    }
}

/// What an order's refunds mean for the refund marked `marker` of `amount`.
pub fn seen(refunds: &[ShopRefund], marker: &str, amount: Money) -> Seen {
    let ours: Vec<&ShopRefund> =
        refunds.iter().filter(|r| r.note.as_deref() == Some(marker) && r.amount == amount).collect();
    let Some(first) = ours.first() else {
        let others = refunds.iter().filter(|r| r.note.as_deref() == Some(marker)).count();
        let detail = if others > 0 {
            format!("no refund of {amount} under {marker} ({others} of another amount)")
        } else {
            format!("no refund under {marker}")
        };
        return Seen { found: Found::Absent, detail, amount: None };
    };
    let found = match first.status {
        RefundStatus::Success => Found::Effected,
        RefundStatus::Pending => Found::InFlight,
        RefundStatus::Failure => Found::Failed,
    };
    // More than one refund under one key never happens (the machine reads
    // back before it calls again); if it did, every one is booked.
    let total: i64 = ours.iter().map(|r| r.amount.minor).sum();
    let detail = if ours.len() > 1 {
        format!(
            "{} refunds under {marker}, {} in all: {}",
            ours.len(),
            Money::new(total, amount.currency),
            first.status
        )
    } else {
        format!("{} {} {}", first.id, first.status, first.amount)
    };
    Seen { found, detail, amount: Some(Money::new(total, amount.currency)) }
}

impl CallError for ShopError {
    fn outcome_unknown(&self) -> bool {
        ShopError::outcome_unknown(self)
    }
    fn retry_after(&self) -> Option<Millis> {
        match self {
            ShopError::Throttled { retry_after } => Some(*retry_after),
            // Not made: a token put right, or the shop back, may succeed; no
            // attempt is spent on it.
            ShopError::Unauthorized(_) | ShopError::Unreachable(_) => Some(Millis(0)),
            _ => None,
        }
    }
}

impl<S: Shop> Effect<S> for RefundEffect {
    type Error = ShopError;
    const VENDOR: &'static str = "shopify";
    const CALL: &'static str = "refundCreate";
    const READ: &'static str = "order.refunds";
    const SITES: Sites = Sites {
        before_call: Site::RefundBeforeCall,
        after_call: Site::RefundAfterCall,
        after_applied: Site::RefundAfterApplied,
        after_read_back: Site::RefundAfterReadBack,
    };

    fn subject(&self) -> &str {
        &self.request.order_id
    }

    async fn call(&self, shop: &S, _key: &IdempotencyKey) -> Result<(), ShopError> {
        shop.refund(&self.request, self.key.as_str()).await.map(|_| ())
    }

    async fn read_back(&self, shop: &S) -> Result<Seen, ShopError> {
        let refunds = shop.order_refunds(&self.request.order_id).await?;
        Ok(seen(&refunds, &self.marker, self.request.amount))
    }

    fn unconfirmed() -> ShopError {
        ShopError::Timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::intent::IntentPhase;
    use crate::act::machine::{CallOutcome, after_call, after_read_back};
    use crate::money::Currency;
    use crate::time::Timestamp;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::EUR)
    }

    fn refund(note: &str, minor: i64, status: RefundStatus) -> ShopRefund {
        ShopRefund {
            id: format!("gid://shopify/Refund/{minor}"),
            note: Some(note.into()),
            amount: eur(minor),
            status,
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn the_effect_refunds_to_the_original_payment_under_its_marker() {
        let key = IdempotencyKey::new("refund/north/s/1001/t-7");
        let order = RefundOrder {
            store: "s".into(),
            order_id: "gid://shopify/Order/1001".into(),
            amount: eur(1_250),
            parent_transaction_id: "gid://shopify/OrderTransaction/55".into(),
            gateway: "shopify_payments".into(),
        };
        let e = RefundEffect::new(&key, &order);
        assert_eq!(e.request.note, "dlft:refund/north/s/1001/t-7");
        assert_eq!(e.request.parent_transaction_id, order.parent_transaction_id);
        assert_eq!(e.request.amount, eur(1_250));
    }

    #[test]
    fn facts_come_from_the_shop_and_the_open_intents() {
        use crate::act::intent::{Action, Intent, NewIntent, fresh_intent};
        use crate::envelope::refund::{OrderFacts, OriginalPayment, RefundJudged, TierCaps, judge_refund};
        use crate::estimate::risk::RiskTier;
        use crate::ids::BrandId;
        use crate::propose::refund::RefundProposal;
        use crate::sense::shop::ShopOrder;
        let shop = ShopOrder {
            id: "gid://shopify/Order/1001".into(),
            total: eur(10_000),
            max_refundable: eur(10_000),
            payment: Some(("gid://shopify/OrderTransaction/55".into(), "shopify_payments".into())),
            tracking_numbers: Vec::new(),
        };
        let brand = BrandId::new("north");
        let facts = OrderFacts::of(&brand, "north-eu", "thread-7", &shop, eur(0), RiskTier::Trusted, vec![]).unwrap();
        assert_eq!(
            facts.payment,
            OriginalPayment {
                transaction_id: "gid://shopify/OrderTransaction/55".into(),
                gateway: "shopify_payments".into()
            }
        );
        // One open refund of 30.00 on this order, one committed, one on another order.
        let proposal = RefundProposal::Refund { amount: eur(3_000), why: "x".into() };
        let caps = TierCaps { currency: Currency::EUR, trusted: None, watch: 1, high: 1 };
        let RefundJudged::Approved(approved) =
            judge_refund(&facts, &proposal, &caps, &Default::default(), Timestamp(0))
        else {
            panic!("refused")
        };
        let open = refund_intent(&approved, &facts, &proposal);
        let intent = |new: &NewIntent, phase| Intent { phase, ..fresh_intent(new, &brand, Timestamp(0)) };
        let mut other = open.clone();
        if let Action::Refund { order } = &mut other.action {
            order.order_id = "gid://shopify/Order/2".into();
        }
        let intents = [
            intent(&open, IntentPhase::Applied),
            intent(&open, IntentPhase::Committed),
            intent(&other, IntentPhase::Intended),
        ];
        assert_eq!(in_flight_on(&shop.id, Currency::EUR, &intents), eur(3_000), "only the open one, on this order");
        let unpaid = ShopOrder { payment: None, ..shop.clone() };
        let e = OrderFacts::of(&brand, "north-eu", "t", &unpaid, eur(0), RiskTier::Trusted, vec![]).unwrap_err();
        assert!(e.contains("no successful payment"), "{e}");
        assert!(
            OrderFacts::of(&brand, "s", "t", &shop, Money::new(0, Currency::USD), RiskTier::Trusted, vec![]).is_err()
        );
    }

    #[test]
    fn read_back_table() {
        let m = "dlft:refund/a";
        let phase = |rs: Vec<ShopRefund>| after_read_back(&seen(&rs, m, eur(500)));
        assert_eq!(phase(vec![refund(m, 500, RefundStatus::Success)]), Some(IntentPhase::Committed));
        assert_eq!(phase(vec![refund(m, 500, RefundStatus::Pending)]), None, "on its way: wait, never refund again");
        assert_eq!(phase(vec![refund(m, 500, RefundStatus::Failure)]), Some(IntentPhase::Abandoned));
        assert_eq!(phase(vec![]), Some(IntentPhase::Intended), "never made: call again, same key");
        // Another intent's refund, or another amount, is not ours.
        assert_eq!(phase(vec![refund("dlft:refund/b", 500, RefundStatus::Success)]), Some(IntentPhase::Intended));
        let other = seen(&[refund(m, 499, RefundStatus::Success)], m, eur(500));
        assert_eq!((other.found, other.detail.contains("1 of another amount")), (Found::Absent, true));
        // What is posted is what the shop shows.
        let s = seen(&[refund(m, 500, RefundStatus::Success)], m, eur(500));
        assert_eq!(s.amount, Some(eur(500)));
    }

    #[test]
    fn call_outcomes_follow_the_error_classes() {
        let outcome = |e: ShopError| after_call::<ShopError>(Err(e));
        assert!(matches!(outcome(ShopError::Timeout), CallOutcome::Unknown(_)));
        assert!(matches!(outcome(ShopError::ConcurrentRequest), CallOutcome::Unknown(_)), "in progress: read back");
        assert!(matches!(outcome(ShopError::ParameterMismatch("x".into())), CallOutcome::Unknown(_)));
        assert!(matches!(outcome(ShopError::Server(503)), CallOutcome::Unknown(_)));
        assert!(matches!(outcome(ShopError::Throttled { retry_after: Millis(200) }), CallOutcome::Throttled(_)));
        assert!(matches!(outcome(ShopError::Rejected(vec!["too much".into()])), CallOutcome::Failed(_)));
        assert_eq!(after_call::<ShopError>(Ok(())), CallOutcome::Applied);
    }
}
