//! The shop port, as far as refunds need it (Shopify Admin GraphQL,
//! money.md): create a refund under an idempotency key, and read an order's
//! refunds back. Only the write-ahead machine believes a refund happened,
//! and only after reading it back: a reply can be lost after the effect,
//! an idempotent duplicate's answer is rebuilt from current state, and some
//! gateways settle later.

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::sense::claims::Customer;
use crate::time::{Millis, Timestamp};

/// A refund to create: money back to the order's original payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// `gid://shopify/Order/…`.
    pub order_id: String,
    /// Positive, in the shop's currency.
    pub amount: Money,
    /// The original sale or capture transaction (`parentId`).
    pub parent_transaction_id: String,
    pub gateway: String,
    /// Carries the intent's marker, so that a read-back can find the refund
    /// when the reply was lost.
    pub note: String,
}

/// A refund transaction's status (Shopify's `OrderTransactionStatus`,
/// folded: `SUCCESS`; `PENDING`/`AWAITING_RESPONSE`/`UNKNOWN`;
/// `FAILURE`/`ERROR`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Success,
    Pending,
    Failure,
}

/// A refund as the shop shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopRefund {
    /// `gid://shopify/Refund/…`.
    pub id: String,
    pub note: Option<String>,
    /// `totalRefundedSet.shopMoney`.
    pub amount: Money,
    /// The refund's transactions' status: failure if any failed, pending if
    /// any is pending, success if all succeeded (a refund without
    /// transactions moved no money: pending).
    pub status: RefundStatus,
    pub created_at: Timestamp,
}

/// An order as the refund envelope needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopOrder {
    pub id: String,
    /// `totalPriceSet.shopMoney`.
    pub total: Money,
    /// `suggestedRefund.maximumRefundableSet.shopMoney`: Shopify's hard
    /// upper bound on what may still be refunded.
    pub max_refundable: Money,
    /// The order's successful sale or capture (the only place a refund may
    /// go), with its gateway; `None` when the order has none.
    pub payment: Option<(String, String)>,
    /// The tracking numbers of its fulfillments' parcels
    /// (`fulfillments.trackingInfo.number`), in the shop's order.
    #[serde(default)]
    pub tracking_numbers: Vec<String>,
}

/// The shop's answers other than a refund.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ShopError {
    /// THROTTLED (HTTP 200 or 429): not made; wait this long.
    #[error("throttled: wait {} ms", retry_after.0)]
    Throttled { retry_after: Millis },
    /// `IDEMPOTENCY_CONCURRENT_REQUEST`: a request under this key is in
    /// progress; it may yet apply. Read back, retry later with the same key.
    #[error("a request under this idempotency key is in progress")]
    ConcurrentRequest,
    /// `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`: the key was used with other
    /// details; whether a refund exists under it is unconfirmed.
    #[error("idempotency key used with other parameters: {0}")]
    ParameterMismatch(String),
    /// `userErrors`: the shop refused the refund; nothing was made.
    #[error("refused: {}", .0.join("; "))]
    Rejected(Vec<String>),
    /// 401/403, ACCESS_DENIED: nothing was made.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The connection never opened: nothing was made.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No answer in time: it may have happened.
    #[error("timeout")]
    Timeout,
    /// 5xx: it may have happened.
    #[error("server error {0}")]
    Server(u16),
    /// An answer that is not the shape it should be: it may have happened.
    #[error("malformed reply: {0}")]
    Malformed(String),
}

impl ShopError {
    /// The call may have been carried out: read back before calling again.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ShopError::ConcurrentRequest
                | ShopError::ParameterMismatch(_)
                | ShopError::Timeout
                | ShopError::Server(_)
                | ShopError::Malformed(_)
        )
    }
}

/// Refunds and their read-back. Implementations: the Shopify adapter
/// (live), the sim's shop world. The provided methods are a brand without a
/// shop: every refund is refused (its intent abandoned at the attempt cap,
/// its reservation voided), no refund is ever found, no order read.
pub trait Shop: Send + Sync {
    /// `refundCreate` under `@idempotent(key)`.
    fn refund(&self, _req: &RefundRequest, _key: &str) -> impl Future<Output = Result<ShopRefund, ShopError>> + Send {
        std::future::ready(Err(no_shop()))
    }
    /// `order.refunds`, every one.
    fn order_refunds(&self, _order_id: &str) -> impl Future<Output = Result<Vec<ShopRefund>, ShopError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
    /// The order: its total, what may still be refunded, and its payment.
    fn order(&self, _order_id: &str) -> impl Future<Output = Result<ShopOrder, ShopError>> + Send {
        std::future::ready(Err(no_shop()))
    }
    /// The latest order of the customer with this email address, as the
    /// shop's records have it (Shopify's `orders(query: "email:…")`, one).
    /// The support loop's only source of what a customer bought: never the
    /// message.
    fn customer_order(&self, _email: &str) -> impl Future<Output = Result<Option<CustomerOrder>, ShopError>> + Send {
        std::future::ready(Ok(None))
    }
    /// The stores the mirror reads (`jobs::mirror`); none: nothing to mirror.
    fn stores(&self) -> Vec<String> {
        Vec::new()
    }
    /// One page of `store`'s orders updated at or after `since` (to the
    /// second below), oldest change first, after the page cursor `after`,
    /// at most `first` of them.
    fn orders_page(
        &self,
        _store: &str,
        _since: Timestamp,
        _after: Option<&str>,
        _first: u32,
    ) -> impl Future<Output = Result<OrdersPage, ShopError>> + Send {
        std::future::ready(Ok(OrdersPage::default()))
    }
}

/// One order as the mirror reads it (`sense::wire::shopify_orders`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirroredOrder {
    pub id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// `totalPriceSet.shopMoney`.
    pub total: Money,
    /// `totalRefundedSet.shopMoney` (never more than the total).
    pub refunded: Money,
    /// The customer as the order shows them (hashed on arrival by the
    /// identity graph, never stored raw).
    pub customer: Customer,
    pub tracking_numbers: Vec<String>,
    /// The highest assessment (`PENDING` counts as medium).
    pub risk: RiskLevel,
}

/// A page of the mirror's read and the cursor of the next, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrdersPage {
    pub orders: Vec<MirroredOrder>,
    /// Orders of the page that could not be read (bad money, a bad
    /// instant): left out, each named with why, so that one bad order
    /// neither stops the mirror at its page nor is mirrored on a guess.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedOrder>,
    pub next: Option<String>,
}

/// An order of a page the mirror could not read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedOrder {
    pub id: String,
    /// Its `updatedAt`, when that much could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// The field and what was wrong with it.
    pub why: String,
}

/// The shop's order risk assessment (Shopify's `riskLevel`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

/// A customer's latest order, as a support conversation needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerOrder {
    pub id: String,
    pub total: Money,
    /// What may still be refunded (`maximumRefundableSet`).
    pub refundable: Money,
    pub tracking: crate::sense::claims::Tracking,
    pub risk: RiskLevel,
}

fn no_shop() -> ShopError {
    ShopError::Rejected(vec!["no shop configured for this brand".into()])
}

impl<T: Shop> Shop for &T {
    fn refund(&self, req: &RefundRequest, key: &str) -> impl Future<Output = Result<ShopRefund, ShopError>> + Send {
        (**self).refund(req, key)
    }
    fn order_refunds(&self, order_id: &str) -> impl Future<Output = Result<Vec<ShopRefund>, ShopError>> + Send {
        (**self).order_refunds(order_id)
    }
    fn order(&self, order_id: &str) -> impl Future<Output = Result<ShopOrder, ShopError>> + Send {
        (**self).order(order_id)
    }
    fn customer_order(&self, email: &str) -> impl Future<Output = Result<Option<CustomerOrder>, ShopError>> + Send {
        (**self).customer_order(email)
    }
    fn stores(&self) -> Vec<String> {
        (**self).stores()
    }
    fn orders_page(
        &self,
        store: &str,
        since: Timestamp,
        after: Option<&str>,
        first: u32,
    ) -> impl Future<Output = Result<OrdersPage, ShopError>> + Send {
        (**self).orders_page(store, since, after, first)
    }
}

/// The money ports of a brand without a shop (no refunds).
impl Shop for crate::sense::bank::NoBank {}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefundStatus::Success => "success",
            RefundStatus::Pending => "pending",
            RefundStatus::Failure => "failure",
        })
    }
}
