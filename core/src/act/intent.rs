//! The write-ahead intent: what every irreversible action is while it is on
//! its way to the world, whatever the action.
//!
//! An intent is written before anything leaves the process (phase
//! `intended`), moves to `applied` when the call succeeded or a read-back
//! found the effect, and to `committed` when a read-back confirmed it (the
//! action-ledger row is written in the same operation); or to `abandoned`
//! when the attempt cap runs out first. Phases only move forward along
//! intended → applied → committed, except that a read-back which finds no
//! effect sends an applied intent back to intended (call again).

use serde::{Deserialize, Serialize};

use crate::act::payout::PayoutOrder;
use crate::envelope::Verdict;
use crate::envelope::budget::Reserve;
use crate::estimate::estimator::AdEstimate;
use crate::ids::{AdId, BrandId, IdempotencyKey};
use crate::money::Money;
use crate::time::Timestamp;

/// An irreversible action: one variant per actuator, holding what its call
/// and its read-back need. Stored as JSON tagged by [`Action::kind`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Action {
    /// Stop an ad (Meta: status `PAUSED`).
    #[serde(rename = "ad_kill")]
    KillAd { ad: AdId },
    /// Pay a supplier's invoice (Revolut: `POST /pay`).
    #[serde(rename = "payout")]
    Payout { order: PayoutOrder },
    /// Refund a customer, to the order's original payment (Shopify:
    /// `refundCreate`).
    #[serde(rename = "refund")]
    Refund { order: crate::act::refund::RefundOrder },
    /// Pause the ad set or campaign of `ad`, whose own pause (the kill
    /// `kill`) did not take effect in time (Meta: the node's status `PAUSED`).
    #[serde(rename = "pause_node")]
    PauseNode { ad: AdId, node: crate::sense::ads::AdNode, kill: IdempotencyKey },
    /// Resume an ad set or campaign once every kill that paused it is
    /// confirmed (`pauses`: the pause intents it undoes; `ad`: the last).
    #[serde(rename = "resume_node")]
    ResumeNode { ad: AdId, node: crate::sense::ads::AdNode, pauses: Vec<IdempotencyKey> },
    /// Send a support reply the gate let out (AgentMail: reply to the
    /// inbound message; no idempotency key, read back by its marker).
    #[serde(rename = "reply")]
    Reply { order: crate::act::reply::ReplyOrder },
}

impl Action {
    pub const KILL_AD: &'static str = "ad_kill";
    pub const PAYOUT: &'static str = "payout";
    pub const REFUND: &'static str = "refund";
    pub const PAUSE_NODE: &'static str = "pause_node";
    pub const RESUME_NODE: &'static str = "resume_node";
    pub const REPLY: &'static str = "reply";

    /// The action's kind, as the intent and action ledgers store it.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::KillAd { .. } => Action::KILL_AD,
            Action::Payout { .. } => Action::PAYOUT,
            Action::Refund { .. } => Action::REFUND,
            Action::PauseNode { .. } => Action::PAUSE_NODE,
            Action::ResumeNode { .. } => Action::RESUME_NODE,
            Action::Reply { .. } => Action::REPLY,
        }
    }

    /// What the action acts on (an ad id, a payee, an order), for ledgers,
    /// event rows and operators.
    pub fn subject(&self) -> &str {
        match self {
            Action::KillAd { ad } => ad.as_str(),
            Action::Payout { order } => &order.counterparty_id,
            Action::Refund { order } => &order.order_id,
            Action::PauseNode { node, .. } | Action::ResumeNode { node, .. } => &node.id,
            Action::Reply { order } => &order.message_id,
        }
    }

    /// The ad this action kills, if it is a kill.
    pub fn killed_ad(&self) -> Option<&AdId> {
        match self {
            Action::KillAd { ad } => Some(ad),
            Action::Payout { .. }
            | Action::Refund { .. }
            | Action::PauseNode { .. }
            | Action::ResumeNode { .. }
            | Action::Reply { .. } => None,
        }
    }
}

/// Why the envelope approved an action: the evidence its proposal carried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// The estimate that made the kill rule propose the kill.
    Kill(AdEstimate),
    /// The payable (invoice) the payout settles, as the sensor read it.
    Payable(crate::act::payout::PayoutOrder),
    /// The order and claim the refund settles, as the envelope judged
    /// them, and what the policy proposed.
    Refund { order: crate::envelope::refund::OrderFacts, proposal: crate::propose::refund::RefundProposal },
    /// An escalation's pause or resume: the kill it serves, and why.
    Escalation { kill: IdempotencyKey, why: String },
    /// A support reply: the trusted facts it was judged on, the action the
    /// gate approved and the gate's reasons.
    Reply {
        facts: crate::propose::support::SupportFacts,
        action: crate::propose::support::MenuAction,
        reasons: Vec<String>,
    },
}

/// The phases of a write-ahead intent.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentPhase {
    /// Written before the external call.
    Intended,
    /// The call reported success or read-back found the effect.
    Applied,
    /// Read-back confirmed the world state; the action ledger row is written.
    Committed,
    /// Gave up within the attempt cap; an operator must look.
    Abandoned,
}

impl IntentPhase {
    pub fn is_final(self) -> bool {
        matches!(self, IntentPhase::Committed | IntentPhase::Abandoned)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            IntentPhase::Intended => "intended",
            IntentPhase::Applied => "applied",
            IntentPhase::Committed => "committed",
            IntentPhase::Abandoned => "abandoned",
        }
    }
    /// Whether `self → to` is a move the machine makes: forward, back from
    /// applied to intended (a read-back found no effect), or from applied
    /// to abandoned (a read-back found the world refused it for good).
    pub fn may_move_to(self, to: IntentPhase) -> bool {
        use IntentPhase::*;
        matches!(
            (self, to),
            (Intended, Applied)
                | (Intended, Abandoned)
                | (Applied, Committed)
                | (Applied, Intended)
                | (Applied, Abandoned)
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIntent {
    pub key: IdempotencyKey,
    pub action: Action,
    pub evidence: Evidence,
    pub verdict: Verdict,
    /// The money the action may move: reserved against the brand's budget
    /// caps in the write that opens the intent (refused, and the intent not
    /// opened, if it would overdraw one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<Reserve>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub key: IdempotencyKey,
    /// The brand of the job that opened it (stamped by the store).
    #[serde(default)]
    pub brand: BrandId,
    pub action: Action,
    pub evidence: Evidence,
    pub verdict: Verdict,
    pub phase: IntentPhase,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    /// External calls made to apply it (the envelope caps these).
    pub attempts: u32,
    /// Its reservation, if it moves money: posted when it commits, voided
    /// when it is abandoned (the transfer's id is the intent's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<Reserve>,
}

/// The intent `new` opens for `brand` at `now`: intended, no attempts yet.
pub fn fresh_intent(new: &NewIntent, brand: &BrandId, now: Timestamp) -> Intent {
    Intent {
        key: new.key.clone(),
        brand: brand.clone(),
        action: new.action.clone(),
        evidence: new.evidence.clone(),
        verdict: new.verdict.clone(),
        phase: IntentPhase::Intended,
        opened_at: now,
        updated_at: now,
        attempts: 0,
        reserve: new.reserve.clone(),
    }
}

// Ops live a few at a time in one write batch: boxing the open would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntentOp {
    /// Idempotent: opening an existing key returns it unchanged.
    Open(NewIntent),
    /// `from → to`. Already in `to` is a success (a replayed write); any other
    /// phase is a conflict. `amount`: on a commit, the amount the read-back
    /// found moved (posted to the reservation; `None` posts what was
    /// reserved).
    Advance {
        key: IdempotencyKey,
        from: IntentPhase,
        to: IntentPhase,
        count_attempt: bool,
        cause: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        amount: Option<Money>,
    },
    /// Counts an attempt without changing phase (a call that failed cleanly).
    CountAttempt { key: IdempotencyKey, cause: String },
    /// The world undid a committed action's money (a payment the bank
    /// reverted after it completed): its transfer is booked reversed. The
    /// intent stays committed. Already reversed is a success.
    Reverse { key: IdempotencyKey, cause: String },
}

impl IntentOp {
    /// The intent the op is about.
    pub fn key(&self) -> &IdempotencyKey {
        match self {
            IntentOp::Open(new) => &new.key,
            IntentOp::Advance { key, .. } | IntentOp::CountAttempt { key, .. } | IntentOp::Reverse { key, .. } => key,
        }
    }
}

/// A committed irreversible action, one row per intent commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRow {
    pub key: IdempotencyKey,
    #[serde(default)]
    pub brand: BrandId,
    /// [`Action::kind`].
    pub kind: String,
    /// [`Action::subject`].
    pub subject: String,
    pub committed_at: Timestamp,
}
