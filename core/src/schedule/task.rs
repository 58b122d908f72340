//! The job vocabulary: every job kind and its task (the payload), below
//! the store (which keeps kinds and payloads) and the jobs (which run them).

use serde::{Deserialize, Serialize};

use crate::ids::{AdId, IdempotencyKey};
use crate::time::Timestamp;

use super::rules::Bound;

/// A job's work, stored as its payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// The per-minute tick: sense insights, estimate, propose, decide.
    PollInsights { slot: Timestamp },
    /// Drive one kill intent to its commit.
    KillAd { key: IdempotencyKey, ad: AdId },
    /// The scan pipeline of one store's ad library: fetch → summarize → record.
    ScanStore { page: String },
    /// A webhook claimed `claimed` about an ad: read it back and reconcile.
    ReconcileAd { ad: AdId, claimed: String },
    /// The hourly bandit re-roll of one slot.
    RerollBandit { slot: Timestamp },
    /// Drive one payout intent to its commit (claimed by the act pool).
    Payout { key: IdempotencyKey },
    /// Drive one refund intent to its commit (claimed by the act pool).
    Refund { key: IdempotencyKey },
    /// Drive one escalation intent (an ad set's or campaign's pause or
    /// resume) to its commit (claimed by the act pool).
    Escalate { key: IdempotencyKey },
    /// Drive one support reply's intent to its commit (the act pool).
    Reply { key: IdempotencyKey },
    /// Read the brand's payables, judge them, open payout intents (claimed
    /// by the tick pool: a decision job like the tick).
    PayPayables { slot: Timestamp },
    /// Review the brand's open claims, judge them, open refund intents
    /// (claimed by the tick pool: a decision job like the tick).
    ReviewClaims { slot: Timestamp },
    /// Read the brand's support inbox, answer each new message through the
    /// models and the gate, open reply intents (claimed by the tick pool).
    AnswerInbox { slot: Timestamp },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    PollInsights,
    KillAd,
    ScanStore,
    ReconcileAd,
    RerollBandit,
    Payout,
    PayPayables,
    Refund,
    ReviewClaims,
    Escalate,
    Reply,
    AnswerInbox,
}

impl JobKind {
    pub const ALL: [JobKind; 12] = [
        JobKind::PollInsights,
        JobKind::KillAd,
        JobKind::ScanStore,
        JobKind::ReconcileAd,
        JobKind::RerollBandit,
        JobKind::Payout,
        JobKind::PayPayables,
        JobKind::Refund,
        JobKind::ReviewClaims,
        JobKind::Escalate,
        JobKind::Reply,
        JobKind::AnswerInbox,
    ];

    /// The kinds a pool of this kind claims: the act pool (`KillAd`)
    /// drives every write-ahead action's job but escalations (their own
    /// pool, so that kills waiting on their read-backs never hold up the
    /// ad set that stops their ad), the tick pool
    /// (`PollInsights`) every decision job; every other pool its own.
    pub fn pool_kinds(self) -> Vec<JobKind> {
        match self {
            JobKind::KillAd => vec![JobKind::KillAd, JobKind::Payout, JobKind::Refund, JobKind::Reply],
            JobKind::PollInsights => {
                vec![JobKind::PollInsights, JobKind::PayPayables, JobKind::ReviewClaims, JobKind::AnswerInbox]
            }
            k => vec![k],
        }
    }

    /// The kind as stored (the `kind` column).
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::PollInsights => "poll_insights",
            JobKind::KillAd => "kill_ad",
            JobKind::ScanStore => "scan_store",
            JobKind::ReconcileAd => "reconcile_ad",
            JobKind::RerollBandit => "reroll_bandit",
            JobKind::Payout => "payout",
            JobKind::PayPayables => "pay_payables",
            JobKind::Refund => "refund",
            JobKind::ReviewClaims => "review_claims",
            JobKind::Escalate => "escalate",
            JobKind::Reply => "reply",
            JobKind::AnswerInbox => "answer_inbox",
        }
    }
}

impl Task {
    /// What bounds this task besides the circuit breaker.
    pub fn bound(&self) -> Bound {
        match self {
            Task::ScanStore { .. } => Bound::Pipeline,
            Task::KillAd { key, .. }
            | Task::Payout { key }
            | Task::Refund { key }
            | Task::Escalate { key }
            | Task::Reply { key } => Bound::Intent(key.clone()),
            Task::PollInsights { .. }
            | Task::ReconcileAd { .. }
            | Task::RerollBandit { .. }
            | Task::PayPayables { .. }
            | Task::ReviewClaims { .. }
            | Task::AnswerInbox { .. } => Bound::Breaker,
        }
    }

    pub fn kind(&self) -> JobKind {
        match self {
            Task::PollInsights { .. } => JobKind::PollInsights,
            Task::KillAd { .. } => JobKind::KillAd,
            Task::ScanStore { .. } => JobKind::ScanStore,
            Task::ReconcileAd { .. } => JobKind::ReconcileAd,
            Task::RerollBandit { .. } => JobKind::RerollBandit,
            Task::Payout { .. } => JobKind::Payout,
            Task::PayPayables { .. } => JobKind::PayPayables,
            Task::Refund { .. } => JobKind::Refund,
            Task::ReviewClaims { .. } => JobKind::ReviewClaims,
            Task::Escalate { .. } => JobKind::Escalate,
            Task::Reply { .. } => JobKind::Reply,
            Task::AnswerInbox { .. } => JobKind::AnswerInbox,
        }
    }
}
