//! A shop in the world with Shopify's refund semantics (money.md): orders
//! paid through a gateway, and `refundCreate` under `@idempotent(key)`.
//!
//! - A key seen in the last 24 h with the same request answers with that
//!   refund as it stands now (the answer is rebuilt from current state),
//!   never a second refund; the same key with other details is
//!   `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`.
//! - A refund is refused (`userErrors`, nothing made) when the order is
//!   unknown, the amount is not positive or exceeds what is still
//!   refundable (the order's amount less its refunds that did not fail), the
//!   currency is not the order's, or the parent transaction is not the
//!   order's own payment.
//! - A refund's transaction is pending for `settle_ms`, then succeeds, or
//!   fails for `failure_pct` of refunds (a gateway's refusal).
//!
//! The sandbox serves this world over Shopify's GraphQL shapes; the
//! checker can read every refund the world holds.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use dlft_core::money::{Currency, Money};
use dlft_core::sense::claims::Customer;
use dlft_core::sense::shop::{MirroredOrder, RefundRequest, RefundStatus, RiskLevel, ShopError, ShopOrder, ShopRefund};
use dlft_core::time::{Millis, Timestamp};

/// How long Shopify keeps an idempotency key.
pub const KEY_LIFETIME: Millis = Millis(24 * 3600 * 1000);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopConfig {
    pub orders: u32,
    pub currency: Currency,
    /// Order amounts, in minor units, drawn in `[lo, hi]`.
    pub amount_minor: (i64, i64),
    pub settle_ms: u64,
    pub failure_pct: u32,
}

impl Default for ShopConfig {
    fn default() -> Self {
        ShopConfig {
            orders: 20,
            currency: Currency::EUR,
            amount_minor: (2_000, 20_000),
            settle_ms: 2_500,
            failure_pct: 0,
        }
    }
}

/// An order, as paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub amount: Money,
    /// The sale transaction a refund is parented to.
    pub payment_id: String,
    pub gateway: String,
    /// Its parcels' tracking numbers.
    #[serde(default)]
    pub tracking: Vec<String>,
    /// The store it was placed in (the brand's shop may hold several).
    #[serde(default)]
    pub store: String,
    /// When it was placed: the mirror does not see it before.
    #[serde(default)]
    pub created_at: Timestamp,
    /// Who placed it, as the order shows them.
    #[serde(default)]
    pub customer: Option<Customer>,
}

/// A refund the world holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub order_id: String,
    pub key: String,
    pub note: String,
    pub amount: Money,
    pub parent_id: String,
    pub created_at: Timestamp,
    /// Whether the gateway fails it when it settles.
    pub fails: bool,
}

pub struct ShopWorld {
    cfg: ShopConfig,
    rng: ChaCha8Rng,
    orders: BTreeMap<String, Order>,
    refunds: Vec<Refund>,
    /// Idempotency key → (the request it was first sent with, refund index, when).
    keys: BTreeMap<String, (RefundRequest, usize, Timestamp)>,
    /// Chargebacks on the store's orders (Shopify Payments' disputes).
    pub disputes: Vec<dlft_core::sense::claims::Dispute>,
}

/// The customer of the shop's own order `n` (the sandbox's orders).
pub fn buyer(n: u32) -> Customer {
    Customer {
        email: format!("buyer{n}@shop.example"),
        phone: format!("+49 30 {:07}", 2_000_000 + n),
        address: format!("{n} Market Street, Berlin"),
        card: format!("411111-{:04}-06/30", 2000 + n),
    }
}

/// The id of order `n` (1-based).
pub fn order_id(n: u32) -> String {
    format!("gid://shopify/Order/{}", 1000 + n)
}

impl ShopWorld {
    pub fn new(cfg: ShopConfig, mut rng: ChaCha8Rng) -> ShopWorld {
        let orders = (1..=cfg.orders)
            .map(|n| {
                let minor = rng.random_range(cfg.amount_minor.0..=cfg.amount_minor.1.max(cfg.amount_minor.0));
                let order = Order {
                    id: order_id(n),
                    amount: Money::new(minor, cfg.currency),
                    payment_id: format!("gid://shopify/OrderTransaction/{}", 5000 + n),
                    gateway: "shopify_payments".into(),
                    // Order n ships as parcel n of the parcels' world.
                    tracking: vec![crate::track17::number_of(n)],
                    store: String::new(),
                    created_at: Timestamp(0),
                    customer: Some(buyer(n)),
                };
                (order.id.clone(), order)
            })
            .collect();
        ShopWorld { cfg, rng, orders, refunds: Vec::new(), keys: BTreeMap::new(), disputes: Vec::new() }
    }

    /// Adds a paid order (the sim's claims make their orders as they go).
    pub fn add_order(&mut self, order: Order) {
        self.orders.insert(order.id.clone(), order);
    }

    /// The tracking numbers of `order_id`'s parcels (none for an unknown order).
    pub fn order_tracking(&self, order_id: &str) -> &[String] {
        self.orders.get(order_id).map_or(&[], |o| o.tracking.as_slice())
    }

    /// Whether the shop holds `order_id`.
    pub fn has_order(&self, order_id: &str) -> bool {
        self.orders.contains_key(order_id)
    }

    pub fn orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.values()
    }

    pub fn refunds(&self) -> &[Refund] {
        &self.refunds
    }

    /// A refund's transaction status at `now`.
    pub fn status(&self, r: &Refund, now: Timestamp) -> RefundStatus {
        if now < r.created_at + Millis(self.cfg.settle_ms) {
            RefundStatus::Pending
        } else if r.fails {
            RefundStatus::Failure
        } else {
            RefundStatus::Success
        }
    }

    fn shown(&self, r: &Refund, now: Timestamp) -> ShopRefund {
        ShopRefund {
            id: r.id.clone(),
            note: Some(r.note.clone()),
            amount: r.amount,
            status: self.status(r, now),
            created_at: r.created_at,
        }
    }

    /// What is still refundable on `order_id` at `now` (`maximumRefundableSet`).
    pub fn refundable(&self, order_id: &str, now: Timestamp) -> Option<Money> {
        let order = self.orders.get(order_id)?;
        let taken: i64 = self
            .refunds
            .iter()
            .filter(|r| r.order_id == order_id && self.status(r, now) != RefundStatus::Failure)
            .map(|r| r.amount.minor)
            .sum();
        Some(Money::new(order.amount.minor - taken, order.amount.currency))
    }

    /// `refundCreate` under `key`.
    pub fn refund(&mut self, req: &RefundRequest, key: &str, now: Timestamp) -> Result<ShopRefund, ShopError> {
        if key.is_empty() {
            return Err(ShopError::Rejected(vec!["refundCreate requires the @idempotent directive".into()]));
        }
        if let Some((first, i, at)) = self.keys.get(key)
            && now < *at + KEY_LIFETIME
        {
            if first != req {
                return Err(ShopError::ParameterMismatch(format!("key {key} was used with other parameters")));
            }
            return Ok(self.shown(&self.refunds[*i], now));
        }
        let Some(order) = self.orders.get(&req.order_id).cloned() else {
            return Err(ShopError::Rejected(vec![format!("orderId: order {} does not exist", req.order_id)]));
        };
        if req.amount.currency != order.amount.currency {
            return Err(ShopError::Rejected(vec![format!(
                "currency: {} is not the order's {}",
                req.amount.currency, order.amount.currency
            )]));
        }
        if req.parent_transaction_id != order.payment_id {
            return Err(ShopError::Rejected(vec![format!(
                "transactions.0.parentId: {} is not a payment of this order",
                req.parent_transaction_id
            )]));
        }
        let left = self.refundable(&req.order_id, now).expect("the order exists");
        if req.amount.minor <= 0 || req.amount.minor > left.minor {
            return Err(ShopError::Rejected(vec![format!(
                "transactions.0.amount: {} is more than the {left} still refundable",
                req.amount
            )]));
        }
        let fails = self.rng.random_range(0..100) < self.cfg.failure_pct;
        let refund = Refund {
            id: format!("gid://shopify/Refund/{}", 9000 + self.refunds.len() + 1),
            order_id: req.order_id.clone(),
            key: key.to_string(),
            note: req.note.clone(),
            amount: req.amount,
            parent_id: req.parent_transaction_id.clone(),
            created_at: now,
            fails,
        };
        self.refunds.push(refund);
        let i = self.refunds.len() - 1;
        self.keys.insert(key.to_string(), (req.clone(), i, now));
        Ok(self.shown(&self.refunds[i], now))
    }

    /// The order, with what may still be refunded (`suggestedRefund`).
    pub fn order(&self, order_id: &str, now: Timestamp) -> Result<ShopOrder, ShopError> {
        let o = self.orders.get(order_id).ok_or_else(|| ShopError::Rejected(vec!["no such order".into()]))?;
        Ok(ShopOrder {
            id: o.id.clone(),
            total: o.amount,
            max_refundable: self.refundable(order_id, now).expect("the order exists"),
            payment: Some((o.payment_id.clone(), o.gateway.clone())),
            tracking_numbers: o.tracking.clone(),
        })
    }

    /// Dates every order placed at `at` (the sandbox's orders are placed
    /// when it starts).
    pub fn placed_at(&mut self, at: Timestamp) {
        for o in self.orders.values_mut() {
            o.created_at = at;
        }
    }

    /// When `o` last changed as the shop shows it at `now`: placed, a refund
    /// made, a refund's transaction settled.
    fn updated_at(&self, o: &Order, now: Timestamp) -> Timestamp {
        self.refunds.iter().filter(|r| r.order_id == o.id && r.created_at <= now).fold(o.created_at, |at, r| {
            let settled = r.created_at + Millis(self.cfg.settle_ms);
            at.max(if settled <= now { settled } else { r.created_at })
        })
    }

    /// Every order of `store` (every store's: `None`) as the shop shows it
    /// at `now`, placed by then, oldest change first (then by id).
    pub fn shown_orders(&self, store: Option<&str>, now: Timestamp) -> Vec<MirroredOrder> {
        let mut out: Vec<MirroredOrder> = self
            .orders
            .values()
            .filter(|o| o.created_at <= now && store.is_none_or(|s| o.store == s))
            .map(|o| {
                let refunded: i64 = self
                    .refunds
                    .iter()
                    .filter(|r| {
                        r.order_id == o.id && r.created_at <= now && self.status(r, now) == RefundStatus::Success
                    })
                    .map(|r| r.amount.minor)
                    .sum();
                MirroredOrder {
                    id: o.id.clone(),
                    created_at: o.created_at,
                    updated_at: self.updated_at(o, now),
                    total: o.amount,
                    refunded: Money::new(refunded, o.amount.currency),
                    customer: o.customer.clone().unwrap_or_default(),
                    tracking_numbers: o.tracking.clone(),
                    risk: RiskLevel::Low,
                }
            })
            .collect();
        out.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
        out
    }

    /// The mirror's read (`orders(query: "updated_at:>='…'", sortKey:
    /// UPDATED_AT)`) as the search index shows the shop at `as_of` (it
    /// lags the shop's writes): [`ShopWorld::shown_orders`] updated at or
    /// after `since`, after the cursor `after`, at most `first`; and the
    /// next page's cursor, the last order's `{updated_at}/{id}`.
    pub fn orders_page(
        &self,
        store: Option<&str>,
        since: Timestamp,
        after: Option<&str>,
        first: u32,
        as_of: Timestamp,
    ) -> Result<(Vec<MirroredOrder>, Option<String>), ShopError> {
        let after = match after {
            None => None,
            Some(c) => {
                let parsed = c.split_once('/').and_then(|(at, id)| Some((Timestamp(at.parse().ok()?), id.to_string())));
                Some(parsed.ok_or_else(|| ShopError::Rejected(vec![format!("after: invalid cursor {c:?}")]))?)
            }
        };
        let mut rows: Vec<MirroredOrder> = self
            .shown_orders(store, as_of)
            .into_iter()
            .filter(|o| {
                o.updated_at >= since && after.as_ref().is_none_or(|(at, id)| (o.updated_at, &o.id) > (*at, id))
            })
            .collect();
        let first = first.clamp(1, dlft_core::sense::wire::shopify_orders::ORDERS_PAGE_MAX) as usize;
        let more = rows.len() > first;
        rows.truncate(first);
        let next = rows.last().filter(|_| more).map(|o| format!("{}/{}", o.updated_at.0, o.id));
        Ok((rows, next))
    }

    /// `order.refunds`.
    pub fn order_refunds(&self, order_id: &str, now: Timestamp) -> Result<Vec<ShopRefund>, ShopError> {
        if !self.orders.contains_key(order_id) {
            return Err(ShopError::Rejected(vec!["no such order".into()]));
        }
        Ok(self.refunds.iter().filter(|r| r.order_id == order_id).map(|r| self.shown(r, now)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn world() -> ShopWorld {
        ShopWorld::new(ShopConfig::default(), ChaCha8Rng::seed_from_u64(1))
    }

    fn req(w: &ShopWorld, minor: i64) -> RefundRequest {
        let o = w.orders().next().unwrap();
        RefundRequest {
            order_id: o.id.clone(),
            amount: Money::new(minor, o.amount.currency),
            parent_transaction_id: o.payment_id.clone(),
            gateway: o.gateway.clone(),
            note: "dlft:refund/a".into(),
        }
    }

    #[test]
    fn one_refund_per_key_and_its_answer_is_rebuilt() {
        let mut w = world();
        let r = req(&w, 1_000);
        let first = w.refund(&r, "k", Timestamp(0)).unwrap();
        assert_eq!(first.status, RefundStatus::Pending);
        let again = w.refund(&r, "k", Timestamp(3_000)).unwrap();
        assert_eq!((again.id.as_str(), again.status), (first.id.as_str(), RefundStatus::Success), "current state");
        assert_eq!(w.refunds().len(), 1, "never a second refund");
        let other = req(&w, 999);
        assert!(matches!(w.refund(&other, "k", Timestamp(3_000)), Err(ShopError::ParameterMismatch(_))));
        // After 24 h the key is forgotten: the same request makes a new refund.
        w.refund(&r, "k", Timestamp(KEY_LIFETIME.0 + 1)).unwrap();
        assert_eq!(w.refunds().len(), 2);
    }

    #[test]
    fn refunds_are_bounded_by_the_order_and_go_to_its_payment() {
        let mut w = world();
        let o = w.orders().next().unwrap().clone();
        let too_much = req(&w, o.amount.minor + 1);
        assert!(matches!(w.refund(&too_much, "a", Timestamp(0)), Err(ShopError::Rejected(_))));
        let mut elsewhere = req(&w, 100);
        elsewhere.parent_transaction_id = "gid://shopify/OrderTransaction/1".into();
        assert!(
            matches!(w.refund(&elsewhere, "b", Timestamp(0)), Err(ShopError::Rejected(m)) if m[0].contains("parentId"))
        );
        assert!(matches!(w.refund(&req(&w, 100), "", Timestamp(0)), Err(ShopError::Rejected(_))), "no key, no refund");
        w.refund(&req(&w, o.amount.minor), "c", Timestamp(0)).unwrap();
        assert_eq!(w.refundable(&o.id, Timestamp(0)).unwrap().minor, 0);
        assert!(matches!(w.refund(&req(&w, 1), "d", Timestamp(0)), Err(ShopError::Rejected(_))));
        assert_eq!(w.order_refunds(&o.id, Timestamp(0)).unwrap().len(), 1);
        assert!(w.order_refunds("gid://shopify/Order/1", Timestamp(0)).is_err());
    }

    #[test]
    fn a_failed_refund_frees_what_it_held() {
        let cfg = ShopConfig { failure_pct: 100, ..ShopConfig::default() };
        let mut w = ShopWorld::new(cfg, ChaCha8Rng::seed_from_u64(1));
        let o = w.orders().next().unwrap().clone();
        let r = w.refund(&req(&w, 500), "k", Timestamp(0)).unwrap();
        assert_eq!(w.refundable(&o.id, Timestamp(0)).unwrap().minor, o.amount.minor - 500, "pending holds it");
        let later = w.order_refunds(&o.id, Timestamp(10_000)).unwrap();
        assert_eq!((later[0].id.as_str(), later[0].status), (r.id.as_str(), RefundStatus::Failure));
        assert_eq!(w.refundable(&o.id, Timestamp(10_000)).unwrap(), o.amount);
    }
}
