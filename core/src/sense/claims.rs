//! The claims sensor's port (issue 14): the brand's after-sale desk, where
//! customers say something went wrong with an order (damaged, wrong item,
//! did not arrive, return received), and the shop's disputes (chargebacks).
//!
//! The desk keeps every claim, open or settled, so the fraud profile
//! (`estimate::identity`) can be rebuilt from it on every run; a claim is
//! open until the refund job settles it. A crash between the job's write
//! and the settle only makes the claim read again: its refund's key is
//! already opened, so it settles as refunded without a second refund.
//!
//! A claim carries the customer as the desk sees them (email, phone,
//! address, card); the loop keeps only keyed hashes of them
//! (`estimate::identity::IdentityKeys`).

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::time::Timestamp;

pub use crate::sense::payables::SourceError;

/// What the customer says happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Claim {
    Damaged,
    WrongItem,
    DidNotArrive,
    ReturnReceived,
}

impl Claim {
    pub const ALL: [Claim; 4] = [Claim::Damaged, Claim::WrongItem, Claim::DidNotArrive, Claim::ReturnReceived];

    pub fn as_str(self) -> &'static str {
        match self {
            Claim::Damaged => "damaged",
            Claim::WrongItem => "wrong_item",
            Claim::DidNotArrive => "did_not_arrive",
            Claim::ReturnReceived => "return_received",
        }
    }
}

/// What the shipment's tracking says (17TRACK's latest status, mapped).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tracking {
    /// No tracking known.
    Unknown,
    /// Info received, in transit, out for delivery, at a pickup point.
    Moving,
    Delivered,
    /// Delivery failed, an exception, or tracking expired without delivery.
    Lost,
}

/// The customer as the desk sees them. Raw personal data: hashed on
/// arrival (`estimate::identity`), never stored by the loop.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Customer {
    pub email: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub address: String,
    /// Card BIN + last 4 + expiry, as the payment shows it (`424242-4242-12/29`).
    #[serde(default)]
    pub card: String,
}

/// How a claim was settled by the refund job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "settled")]
pub enum Settlement {
    /// A refund intent was opened for it, of this amount, under this key.
    Refunded {
        key: String,
        amount: Money,
        /// The customer's risk tier when it was judged (how the next
        /// judgement knows the tier changed).
        #[serde(default)]
        tier: String,
        /// What the brand's tracker said of the order's parcels when the
        /// claim was judged (`None`: no tracker, or it knew nothing).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tracked: Option<Tracking>,
    },
    /// No automatic refund (the verdict's reason).
    NoRefund {
        why: String,
        #[serde(default)]
        tier: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tracked: Option<Tracking>,
    },
}

impl Settlement {
    /// What the tracker said when the claim was judged, if it said anything.
    pub fn tracked(&self) -> Option<Tracking> {
        match self {
            Settlement::Refunded { tracked, .. } | Settlement::NoRefund { tracked, .. } => *tracked,
        }
    }
}

/// One claim on one order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The desk's id for the claim (one refund per claim, ever).
    pub id: String,
    /// The store the order is from (a brand may have several).
    pub store: String,
    pub order_id: String,
    pub claim: Claim,
    /// The value of the items the claim is about.
    pub claimed: Money,
    /// What the order was worth.
    pub order_total: Money,
    pub tracking: Tracking,
    pub days_since_shipped: u32,
    pub customer: Customer,
    pub opened_at: Timestamp,
    /// `None` while the claim is open.
    #[serde(default)]
    pub settled: Option<Settlement>,
}

impl ClaimRecord {
    /// The parcels' state the claim is weighed against: the tracker's, when
    /// it said something when the claim was judged; the desk's otherwise.
    pub fn tracking_seen(&self) -> Tracking {
        self.settled.as_ref().and_then(Settlement::tracked).unwrap_or(self.tracking)
    }
}

/// A dispute's state (Shopify's `ShopifyPaymentsDisputeStatus`, folded).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    /// `NEEDS_RESPONSE`, `UNDER_REVIEW`.
    Open,
    /// `WON`.
    Won,
    /// `LOST`, `ACCEPTED`, `CHARGE_REFUNDED`.
    Lost,
}

/// A chargeback on one of the brand's orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    pub id: String,
    pub store: String,
    pub order_id: String,
    pub status: DisputeStatus,
    /// The network's reason (`fraudulent`, `product_not_received`, …).
    pub reason: String,
    pub amount: Money,
    pub customer: Customer,
    pub initiated_at: Timestamp,
}

/// The claims desk and the shop's disputes. The provided methods are a
/// brand without one: no claims, no disputes.
pub trait ClaimsSource: Send + Sync {
    /// Every claim the desk holds for the brand, open and settled, oldest first.
    fn claims(&self) -> impl Future<Output = Result<Vec<ClaimRecord>, SourceError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
    /// Settles an open claim; settling a settled one changes nothing.
    fn settle_claim(&self, _id: &str, _how: &Settlement) -> impl Future<Output = Result<(), SourceError>> + Send {
        std::future::ready(Ok(()))
    }
    /// Every dispute on the brand's orders.
    fn disputes(&self) -> impl Future<Output = Result<Vec<Dispute>, SourceError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}

impl<T: ClaimsSource> ClaimsSource for &T {
    fn claims(&self) -> impl Future<Output = Result<Vec<ClaimRecord>, SourceError>> + Send {
        (**self).claims()
    }
    fn settle_claim(&self, id: &str, how: &Settlement) -> impl Future<Output = Result<(), SourceError>> + Send {
        (**self).settle_claim(id, how)
    }
    fn disputes(&self) -> impl Future<Output = Result<Vec<Dispute>, SourceError>> + Send {
        (**self).disputes()
    }
}

/// A brand without a claims desk.
impl ClaimsSource for crate::sense::bank::NoBank {}
