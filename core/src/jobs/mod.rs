//! Jobs: one file per job kind, async orchestration only (every decision
//! they act on comes from the pure blocks), and the registry that runs a
//! claimed job ([`run_task`]). Below them: the context every job gets
//! ([`Ports`], [`Attempt`], [`JobError`]); above them: the worker.
//!
//! - [`tick`]: the per-minute cycle: sense insights, decide, open intents,
//!   the first batch pause;
//! - [`drive`]: the act job: drives one write-ahead intent of any action;
//! - [`scan`]: the checkpointed scan pipeline of one store's ad library;
//! - [`reconcile`]: a webhook hint's read-back;
//! - [`reroll`]: the hourly bandit re-roll;
//! - [`payables`]: a brand's payables read, judged and opened as payouts;
//! - [`refunds`]: a brand's claims reviewed, judged and opened as refunds;
//! - [`mirror`]: the shop mirror's incremental read of each store's orders
//!   (run by the refund job, before it judges);
//! - [`support`]: a brand's inbox read, each new message answered (model →
//!   gate) and opened as a reply.

pub mod drive;
pub mod mirror;
pub mod payables;
pub mod reconcile;
pub mod refunds;
pub mod reroll;
pub mod scan;
pub mod support;
pub mod tick;

use crate::config::{LoopConfig, Sabotage};
use crate::ids::BrandId;
use crate::money::{Currency, Money};
use crate::probe::Probe;
use crate::schedule::task::Task;
use crate::sense::ads::{AdsError, AdsPlatform};
use crate::sense::models::Models;
use crate::store::{Job, Lease, Store, StoreError, WriteBatch};
use crate::telemetry::CostRow;
use crate::time::{Clock, Millis, Timestamp};

/// Everything the loop talks to: the store, the brand's ads account, the
/// clock, the probe, and the brand's bank ([`NoBank`] where it has none).
pub struct Ports<S, A, C, P, B = NoBank> {
    pub store: S,
    pub ads: A,
    pub clock: C,
    pub probe: P,
    pub bank: B,
}

pub use crate::sense::bank::NoBank;

/// Why a job attempt stopped short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ads(#[from] AdsError),
    #[error(transparent)]
    Bank(#[from] crate::sense::bank::BankError),
    #[error(transparent)]
    Shop(#[from] crate::sense::shop::ShopError),
    #[error(transparent)]
    Inbox(#[from] crate::sense::inbox::InboxError),
    /// Try again no sooner than this.
    #[error("retry after {wait:?}: {why}")]
    RetryAfter { wait: Millis, why: String },
    /// Retrying cannot help.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The circuit breaker refused the job.
    #[error("circuit breaker: {0}")]
    Breaker(String),
}

/// One attempt of one job: its lease, and the cost rows of its external calls
/// not yet written (they go out with the attempt's next write, atomically).
pub struct Attempt {
    pub lease: Lease,
    /// The job's brand: every row the attempt reads or writes is this brand's.
    pub brand: BrandId,
    pub costs: Vec<CostRow>,
    pub currency: Currency,
    /// External calls made so far (numbers the call ids).
    pub calls: u32,
}

impl Attempt {
    pub fn new(lease: Lease, brand: BrandId, currency: Currency) -> Attempt {
        Attempt { lease, brand, costs: Vec::new(), currency, calls: 0 }
    }

    /// A call id unique across jobs, attempts and calls.
    pub fn next_call_id(&mut self, op: &str) -> String {
        self.calls += 1;
        format!("{}/{:?}/{}/{op}", self.lease.job, self.lease.token, self.calls)
    }

    /// Books a free call after it returned (Meta's API costs no money).
    pub fn record_call<T>(&mut self, at: Timestamp, op: &str, result: &Result<T, AdsError>) {
        self.record(at, "meta", op, result.is_ok());
    }

    /// Books a free call of any vendor after it returned.
    pub fn record(&mut self, at: Timestamp, vendor: &str, op: &str, ok: bool) {
        let call_id = self.next_call_id(op);
        self.costs.push(CostRow {
            call_id,
            brand: self.brand.clone(),
            at,
            vendor: vendor.into(),
            op: op.into(),
            ok,
            cost: Money::zero(self.currency),
        });
    }

    /// A batch carrying the pending cost rows.
    pub fn batch(&mut self) -> WriteBatch {
        WriteBatch { costs: std::mem::take(&mut self.costs), ..WriteBatch::default() }
    }
}

/// The registry: runs one claimed job's work, from its checkpoint if it has
/// one. Adding a job kind adds a `Task` variant and one arm here.
pub async fn run_task<
    S: Store,
    A: AdsPlatform + Models,
    C: Clock,
    P: Probe,
    B: crate::sense::bank::Bank
        + crate::sense::payables::PayablesSource
        + crate::sense::shop::Shop
        + crate::sense::inbox::Inbox
        + crate::sense::models::TextVendors
        + crate::sense::claims::ClaimsSource
        + crate::sense::shipments::Shipments,
>(
    ports: &Ports<S, A, C, P, B>,
    loop_cfg: &LoopConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
    job: &Job,
) -> Result<(), JobError> {
    let task = job.task().map_err(JobError::Permanent)?;
    match &task {
        Task::PollInsights { slot } => tick::run(ports, loop_cfg, sabotage, attempt, *slot, job.attempt > 1).await,
        Task::KillAd { key, ad } => match drive::run(ports, loop_cfg, sabotage, attempt, key).await? {
            Some(()) => Ok(()),
            None if sabotage == Sabotage::SkipIntent => drive::kill_without_intent(ports, attempt, key, ad).await,
            None => Err(JobError::Permanent(format!("no intent {key}: nothing to drive"))),
        },
        Task::ScanStore { page } => {
            let Some(cfg) = &loop_cfg.scan else {
                return Err(JobError::Permanent("scan job without a scan configuration".into()));
            };
            scan::run_scan(ports, cfg, attempt, page, job.checkpoint.as_ref()).await
        }
        Task::ReconcileAd { ad, claimed } => reconcile::run_reconcile(ports, sabotage, attempt, ad, claimed).await,
        Task::RerollBandit { slot } => reroll::run_reroll(ports, loop_cfg, attempt, *slot).await,
        Task::Payout { .. } if sabotage == Sabotage::DropPayoutJobs => Ok(()),
        Task::Payout { key } | Task::Refund { key } | Task::Escalate { key } | Task::Reply { key } => {
            match drive::run(ports, loop_cfg, sabotage, attempt, key).await? {
                Some(()) => Ok(()),
                None => Err(JobError::Permanent(format!("no intent {key}: nothing to drive"))),
            }
        }
        Task::PayPayables { .. } => {
            let Some(cfg) = &loop_cfg.payouts else {
                return Err(JobError::Permanent("payables job without a payouts configuration".into()));
            };
            payables::run(ports, cfg, sabotage, attempt).await
        }
        Task::ReviewClaims { .. } => {
            let Some(cfg) = &loop_cfg.refunds else {
                return Err(JobError::Permanent("claims job without a refunds configuration".into()));
            };
            refunds::run(ports, cfg, sabotage, attempt).await
        }
        Task::AnswerInbox { .. } => {
            let Some(cfg) = &loop_cfg.support else {
                return Err(JobError::Permanent("inbox job without a support configuration".into()));
            };
            support::run(ports, cfg, sabotage, attempt).await
        }
    }
}
