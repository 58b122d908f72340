//! The Store port: jobs, schedule slots, write-ahead intents, the spend and
//! action ledgers, the event log and the cost ledger.
//!
//! Semantics every implementation must share (the sim's [`MemStore`], and the
//! SQL stores to come):
//! - a claim sets a lease and a fresh [`ClaimToken`]; every later write of the
//!   attempt is fenced on it, so a presumed-dead worker's late write is refused;
//! - expired leases are re-claimed by the claim itself; a booting worker
//!   releases the claims its previous incarnations still hold;
//! - a `(schedule, slot)` fires at most once; an idempotency key enqueues at
//!   most one live job;
//! - each write is atomic with its event rows;
//! - every job, schedule, intent, action, spend row, cost row and event row
//!   names its brand. What a job writes (jobs it enqueues, intents it opens,
//!   spend rows, costs, events) is its own brand's: the store stamps the
//!   writer's brand, so a job cannot act for another brand;
//! - an intent that moves money reserves it against its brand's budget caps
//!   in the write that opens it (refused if that would overdraw a cap); its
//!   commit posts the amount read back, its abandonment voids it
//!   (`envelope::budget`, planned once in [`plan::plan_intents`]);
//! - claiming is fair across brands: ready jobs are ranked within their
//!   brand by `(priority, run_at, id)` and claimed round-robin by rank
//!   ([`fair_order`]), so one brand's backlog never stalls another's work.

pub mod conformance;
mod mem;
pub mod plan;

use std::future::Future;

use serde::{Deserialize, Serialize};

pub use mem::{CLAIM_LIMIT_MAX, MemStore, SharedMemStore};

use crate::act::intent::{ActionRow, Intent, IntentOp};
use crate::envelope::Verdict;
use crate::envelope::budget::{Account, Budgets, Transfer};
use crate::ids::{BrandId, ClaimToken, IdempotencyKey, Incarnation, JobId, WorkerId};
use crate::schedule::task::{JobKind, Task};
use crate::sense::ads::InsightRow;
use crate::telemetry::{CostRow, Event};
use crate::time::{Millis, Timestamp};

/// A job to enqueue. The store keeps what SQL keeps: a kind and a raw JSON
/// payload; the worker decodes the payload when it runs the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    /// Whose work it is. A job enqueued by a job's write is that job's brand's.
    #[serde(default)]
    pub brand: BrandId,
    pub kind: String,
    pub payload: serde_json::Value,
    /// Lower runs first.
    pub priority: i16,
    pub run_at: Timestamp,
    pub idempotency_key: Option<IdempotencyKey>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Available,
    Running,
    Completed,
    Discarded,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Completed | JobState::Discarded)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Discarded => "discarded",
        }
    }
}

/// Who holds a running job, until when, under which token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRow {
    pub token: ClaimToken,
    pub worker: WorkerId,
    pub incarnation: Incarnation,
    pub expires_at: Timestamp,
    pub lease_for: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    #[serde(default)]
    pub brand: BrandId,
    pub kind: String,
    /// The task as enqueued; decode with [`Job::task`].
    pub payload: serde_json::Value,
    pub priority: i16,
    pub run_at: Timestamp,
    pub created_at: Timestamp,
    pub state: JobState,
    /// Claims so far (crash resumes included; a graceful release gives one back).
    pub attempt: u32,
    /// Claims that resumed an attempt which died (crash, lost lease): counted
    /// apart from error retries, and capped by the circuit breaker.
    pub resumes: u32,
    /// The last attempt ended without finishing (released at boot or by amnesty).
    pub interrupted: bool,
    /// Error history, oldest first; its length is the error-retry count.
    pub errors: Vec<String>,
    pub lease: Option<LeaseRow>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// The schedule whose slot created the job, if any.
    pub schedule: Option<String>,
    /// The last checkpoint a pipeline wrote; a resumed attempt starts here.
    pub checkpoint: Option<Checkpoint>,
}

impl NewJob {
    pub fn new(task: &Task, priority: i16, run_at: Timestamp, idempotency_key: Option<IdempotencyKey>) -> NewJob {
        NewJob {
            brand: BrandId::default(),
            kind: task.kind().as_str().to_string(),
            payload: serde_json::to_value(task).expect("tasks serialize"),
            priority,
            run_at,
            idempotency_key,
        }
    }
}

impl NewJob {
    /// The same job, for `brand`.
    pub fn for_brand(mut self, brand: &BrandId) -> NewJob {
        self.brand = brand.clone();
        self
    }
}

impl Job {
    /// The job's task, or why its payload is not one.
    pub fn task(&self) -> Result<Task, String> {
        let task: Task = serde_json::from_value(self.payload.clone())
            .map_err(|e| format!("payload of a {:?} job does not deserialize: {e}", self.kind))?;
        if task.kind().as_str() != self.kind {
            return Err(format!("payload is a {:?} task in a {:?} job", task.kind().as_str(), self.kind));
        }
        Ok(task)
    }
}

/// A pipeline's progress: the step it completed, and what it needs to go on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub step: String,
    pub state: serde_json::Value,
}

/// A schedule's switch. A tripped breaker turns it off with a reason; only an
/// operator turns it back on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRow {
    /// Schedules are per brand: a breaker opened by one brand's crash loop
    /// turns off that brand's schedule only.
    #[serde(default)]
    pub brand: BrandId,
    pub name: String,
    pub enabled: bool,
    pub reason: String,
    pub changed_at: Timestamp,
    /// The newest slot fired.
    pub last_slot: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotOutcome {
    Fired(JobId),
    /// The schedule's job of an earlier slot is still waiting for its first
    /// run: the slot is recorded as fired, and that job serves it (a
    /// periodic job reads what is current when it runs, so one run covers
    /// both). A pool that falls behind then holds one waiting job per
    /// schedule, not a queue that grows with every slot.
    Coalesced(JobId),
    /// Another worker (or an earlier life of this one) fired it.
    AlreadyFired,
    /// The schedule is disabled.
    Disabled,
}

/// The right to write on behalf of one attempt of one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub job: JobId,
    pub token: ClaimToken,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub job: Job,
    pub lease: Lease,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// The brands this worker serves (at least one); claims are fair across them.
    pub brands: Vec<BrandId>,
    pub worker: WorkerId,
    pub incarnation: Incarnation,
    pub kinds: Vec<JobKind>,
    pub limit: u32,
    pub lease_for: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    pub incarnation: Incarnation,
    /// Jobs the worker's earlier incarnations held, released for re-claim.
    pub released: Vec<JobId>,
}

/// Where a worker runs: written by its presence beats, so that another
/// process can tell a live holder of a worker id from a dead one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub worker: WorkerId,
    pub incarnation: Incarnation,
    pub host: String,
    pub pid: u32,
}

/// A worker id as the store knows it: its current incarnation and, once
/// it has beaten, where that incarnation runs and when it last beat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRow {
    pub worker: WorkerId,
    pub incarnation: Incarnation,
    pub host: String,
    pub pid: u32,
    pub beat_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Enqueued {
    Created(JobId),
    /// A live job with the same idempotency key exists; nothing was added.
    Duplicate(JobId),
}

impl Enqueued {
    pub fn id(&self) -> JobId {
        match self {
            Enqueued::Created(id) | Enqueued::Duplicate(id) => *id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Completed,
    Retry {
        at: Timestamp,
        error: String,
    },
    Discard {
        error: String,
    },
    /// The circuit breaker: discard the job and disable its schedule.
    Trip {
        error: String,
    },
}

/// Everything one step of an attempt writes, atomically and fenced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    pub insights: Vec<InsightRow>,
    pub verdicts: Vec<Verdict>,
    pub intents: Vec<IntentOp>,
    pub enqueue: Vec<NewJob>,
    pub costs: Vec<CostRow>,
    /// A pipeline step is done: resume here after a crash.
    pub checkpoint: Option<Checkpoint>,
    /// A store's scan result (upserted by page).
    pub activity: Option<PageActivity>,
    /// A bandit re-roll's budget split: kept once per slot (the first write
    /// stands), with one event row.
    pub allocation: Option<crate::propose::allocation::Allocation>,
    /// Refund risk tiers that changed, one event row each.
    pub tier_changes: Vec<crate::estimate::risk::TierChange>,
    /// A job's own small state, kept per brand (a support inbox's
    /// per-thread progress, the model router's breakers).
    pub state: Vec<StateOp>,
    /// Cost rows charged against the brand's caps of their purpose (a
    /// model call's, before the call): each is booked only if its caps
    /// hold it; a refused one is not booked and is named in
    /// [`BatchResult::refused`] (the rest of the batch stands).
    pub charges: Vec<Charge>,
}

/// A cost row charged against the brand's budget caps of `purpose`: a
/// transfer under the key [`Charge::key`], reserved and posted at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub purpose: crate::envelope::budget::Purpose,
    pub row: CostRow,
}

impl Charge {
    /// The transfer's key: `cost/{call_id}`.
    pub fn key(&self) -> IdempotencyKey {
        IdempotencyKey::new(format!("cost/{}", self.row.call_id))
    }
}

/// One row of a brand's keyed state: put (`body`) or dropped (`None`);
/// `event`, when the change is a transition worth a row of the log (a
/// breaker opening), is written with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateOp {
    pub scope: String,
    pub key: String,
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<StateEvent>,
}

/// The event row of a state change (entity: `{scope}/{key}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEvent {
    pub block: crate::telemetry::Block,
    pub before: String,
    pub after: String,
    pub cause: String,
}

impl StateOp {
    /// The transition its event row records, if it has one.
    pub fn transition(&self) -> Option<crate::store::plan::Transition> {
        self.event.as_ref().map(|e| crate::store::plan::Transition {
            block: e.block,
            kind: crate::telemetry::EventKind::StateChanged,
            entity: format!("{}/{}", self.scope, self.key),
            before: e.before.clone(),
            after: e.after.clone(),
            cause: e.cause.clone(),
        })
    }
}

/// What the scans know about one store's page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageActivity {
    pub page: String,
    pub activity: crate::estimate::cadence::Activity,
    /// Library ads seen so far.
    pub known_ads: std::collections::BTreeSet<String>,
    /// When the next scan is due.
    pub next_scan: Timestamp,
    pub label: String,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.insights.is_empty()
            && self.verdicts.is_empty()
            && self.intents.is_empty()
            && self.enqueue.is_empty()
            && self.costs.is_empty()
            && self.checkpoint.is_none()
            && self.activity.is_none()
            && self.allocation.is_none()
            && self.tier_changes.is_empty()
            && self.state.is_empty()
            && self.charges.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    /// The intents touched, as they are after the batch, in op order
    /// (refused opens left out).
    pub intents: Vec<Intent>,
    /// Opens and charges refused by the budget ledger, with the reason
    /// (logged as a verdict row; the rest of the batch stands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<(IdempotencyKey, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StoreError {
    /// The attempt's token is no longer the job's: another attempt owns it.
    #[error("fenced: {job} is no longer held by {token:?}")]
    Fenced { job: JobId, token: ClaimToken },
    /// This process's incarnation was replaced by a newer boot of the same
    /// worker id: it must stop.
    #[error("incarnation {incarnation:?} of {worker} was replaced")]
    StaleIncarnation { worker: WorkerId, incarnation: Incarnation },
    /// An intent transition from a phase it is not in.
    #[error("intent {key}: {detail}")]
    Conflict { key: IdempotencyKey, detail: String },
    #[error("not found: {0}")]
    NotFound(String),
    /// The store did not answer (partition, crash, timeout): state unknown.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The store port.
pub trait Store: Send + Sync {
    fn boot(&self, worker: &WorkerId, now: Timestamp) -> impl Future<Output = Result<Boot, StoreError>> + Send;
    /// A worker's sign of life: records where its incarnation runs and
    /// when it last beat. Refused with `StaleIncarnation` once a newer boot
    /// of the same id replaced it (the worker must then stop).
    fn beat(&self, presence: &Presence, now: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every worker id the store knows, by id.
    fn workers(&self) -> impl Future<Output = Result<Vec<WorkerRow>, StoreError>> + Send;
    fn enqueue(&self, job: NewJob, now: Timestamp) -> impl Future<Output = Result<Enqueued, StoreError>> + Send;
    /// Fires `(job.brand, schedule, slot)` with its job, at most once ever,
    /// and only while that brand's schedule is enabled; coalesced into the
    /// schedule's job that still waits for its first run, if there is one.
    fn fire_slot(
        &self,
        schedule: &str,
        slot: Timestamp,
        job: NewJob,
        now: Timestamp,
    ) -> impl Future<Output = Result<SlotOutcome, StoreError>> + Send;
    fn schedules(&self) -> impl Future<Output = Result<Vec<ScheduleRow>, StoreError>> + Send;
    /// Turns a brand's schedule on or off, recording why (an operator, or the breaker).
    fn set_schedule(
        &self,
        brand: &BrandId,
        name: &str,
        enabled: bool,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Discards waiting jobs of kinds not in `known`, recording why.
    fn discard_unknown_kinds(
        &self,
        known: &[String],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<JobId>, StoreError>> + Send;
    /// Graceful shutdown: hands the job back, and its attempt with it.
    fn release(&self, lease: &Lease, now: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn claim(&self, req: &ClaimRequest, now: Timestamp) -> impl Future<Output = Result<Vec<Claim>, StoreError>> + Send;
    /// A fenced, atomic write; it also extends the lease (an empty batch is a heartbeat).
    fn write(
        &self,
        lease: &Lease,
        batch: WriteBatch,
        now: Timestamp,
    ) -> impl Future<Output = Result<BatchResult, StoreError>> + Send;
    fn finish(
        &self,
        lease: &Lease,
        outcome: Outcome,
        costs: Vec<CostRow>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Batched completion (as River and graphile-worker batch theirs): every
    /// lease that still holds its job completes exactly as
    /// `finish(lease, Outcome::Completed, costs, now)` would, in the order
    /// given, in one transaction where the store has them. Leases that no
    /// longer hold their job are left untouched and returned.
    fn complete_batch(
        &self,
        done: Vec<(Lease, Vec<CostRow>)>,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Lease>, StoreError>> + Send {
        async move {
            let mut fenced = Vec::new();
            for (lease, costs) in done {
                match self.finish(&lease, Outcome::Completed, costs, now).await {
                    Ok(()) => {}
                    Err(StoreError::Fenced { .. }) => fenced.push(lease),
                    Err(e) => return Err(e),
                }
            }
            Ok(fenced)
        }
    }
    fn job(&self, id: JobId) -> impl Future<Output = Result<Option<Job>, StoreError>> + Send;
    /// The newest `n` finished jobs (completed or discarded) that `brand`'s
    /// schedule `schedule` created, newest first: what the circuit breaker
    /// reads to tell a crash loop that outlives its slot.
    fn finished_of_schedule(
        &self,
        brand: &BrandId,
        schedule: &str,
        n: usize,
    ) -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send;
    /// Event rows with `seq` greater than `after`, in order.
    fn events(&self, after: u64) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;
    /// The newest event row's `seq` (0 for an empty log), without reading
    /// the log (a runner starting on a long-lived store).
    fn last_event_seq(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move { Ok(self.events(0).await?.last().map_or(0, |e| e.seq)) }
    }
    /// A brand's spend-ledger rows with buckets at or after `since`.
    fn spend_ledger(
        &self,
        brand: &BrandId,
        since: Timestamp,
    ) -> impl Future<Output = Result<Vec<InsightRow>, StoreError>> + Send;
    /// What the estimator reads: a brand's spend-ledger rows at or after
    /// `since`, with each ad's rows before `fold_before` (the matured ones)
    /// folded into one by [`fold_spend`]. The estimate is the same as over
    /// the rows themselves; a tick reads a few rows a minute instead of a
    /// week of buckets. The default folds [`Store::spend_ledger`].
    fn spend_summary(
        &self,
        brand: &BrandId,
        since: Timestamp,
        fold_before: Timestamp,
    ) -> impl Future<Output = Result<Vec<InsightRow>, StoreError>> + Send {
        async move { Ok(fold_spend(self.spend_ledger(brand, since).await?.iter(), fold_before)) }
    }
    /// Every brand's intents, by key.
    fn intents(&self) -> impl Future<Output = Result<Vec<Intent>, StoreError>> + Send;
    /// The intents of one brand that `filter` admits, by key (what a
    /// brand's jobs read: a tick reads its kills and whatever is open, not
    /// a month of refunds). The default filters [`Store::intents`]; the SQL
    /// stores read the brand's admitted rows only.
    fn brand_intents(
        &self,
        brand: &BrandId,
        filter: &IntentFilter,
    ) -> impl Future<Output = Result<Vec<Intent>, StoreError>> + Send {
        async move { Ok(self.intents().await?.into_iter().filter(|i| &i.brand == brand && filter.admits(i)).collect()) }
    }
    fn activities(&self) -> impl Future<Output = Result<Vec<PageActivity>, StoreError>> + Send;
    /// A brand's keyed state rows of one scope, by key: `(key, body)`.
    fn state(
        &self,
        brand: &BrandId,
        scope: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
    fn intent(&self, key: &IdempotencyKey) -> impl Future<Output = Result<Option<Intent>, StoreError>> + Send;
    /// A brand's newest bandit allocation (by slot), if any.
    fn allocation(
        &self,
        brand: &BrandId,
    ) -> impl Future<Output = Result<Option<crate::propose::allocation::Allocation>, StoreError>> + Send;
    /// Declares a brand's budgets (time zone and caps), replacing what it
    /// declared before; one event row when they change. Reservations made
    /// before keep the accounts they hold against.
    fn set_budgets(
        &self,
        brand: &BrandId,
        budgets: &Budgets,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every brand's declared budgets, by brand.
    fn budgets(&self) -> impl Future<Output = Result<Vec<(BrandId, Budgets)>, StoreError>> + Send;
    /// Budget accounts (one per cap and period that a reservation touched),
    /// by key; one brand's, or every brand's.
    fn accounts(&self, brand: Option<&BrandId>) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send;
    /// Every budget transfer, by id.
    fn transfers(&self) -> impl Future<Output = Result<Vec<Transfer>, StoreError>> + Send;
}

/// A borrowed store is a store: a worker lends each job the one it holds.
/// Every method forwards, the defaults included (a store may override them).
impl<T: Store> Store for &T {
    fn boot(&self, worker: &WorkerId, now: Timestamp) -> impl Future<Output = Result<Boot, StoreError>> + Send {
        (**self).boot(worker, now)
    }
    fn beat(&self, presence: &Presence, now: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).beat(presence, now)
    }
    fn workers(&self) -> impl Future<Output = Result<Vec<WorkerRow>, StoreError>> + Send {
        (**self).workers()
    }
    fn enqueue(&self, job: NewJob, now: Timestamp) -> impl Future<Output = Result<Enqueued, StoreError>> + Send {
        (**self).enqueue(job, now)
    }
    fn fire_slot(
        &self,
        schedule: &str,
        slot: Timestamp,
        job: NewJob,
        now: Timestamp,
    ) -> impl Future<Output = Result<SlotOutcome, StoreError>> + Send {
        (**self).fire_slot(schedule, slot, job, now)
    }
    fn schedules(&self) -> impl Future<Output = Result<Vec<ScheduleRow>, StoreError>> + Send {
        (**self).schedules()
    }
    fn set_schedule(
        &self,
        brand: &BrandId,
        name: &str,
        enabled: bool,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).set_schedule(brand, name, enabled, reason, now)
    }
    fn discard_unknown_kinds(
        &self,
        known: &[String],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<JobId>, StoreError>> + Send {
        (**self).discard_unknown_kinds(known, now)
    }
    fn release(&self, lease: &Lease, now: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).release(lease, now)
    }
    fn claim(&self, req: &ClaimRequest, now: Timestamp) -> impl Future<Output = Result<Vec<Claim>, StoreError>> + Send {
        (**self).claim(req, now)
    }
    fn write(
        &self,
        lease: &Lease,
        batch: WriteBatch,
        now: Timestamp,
    ) -> impl Future<Output = Result<BatchResult, StoreError>> + Send {
        (**self).write(lease, batch, now)
    }
    fn finish(
        &self,
        lease: &Lease,
        outcome: Outcome,
        costs: Vec<CostRow>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).finish(lease, outcome, costs, now)
    }
    fn complete_batch(
        &self,
        done: Vec<(Lease, Vec<CostRow>)>,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Lease>, StoreError>> + Send {
        (**self).complete_batch(done, now)
    }
    fn job(&self, id: JobId) -> impl Future<Output = Result<Option<Job>, StoreError>> + Send {
        (**self).job(id)
    }
    fn finished_of_schedule(
        &self,
        brand: &BrandId,
        schedule: &str,
        n: usize,
    ) -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send {
        (**self).finished_of_schedule(brand, schedule, n)
    }
    fn events(&self, after: u64) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        (**self).events(after)
    }
    fn last_event_seq(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).last_event_seq()
    }
    fn spend_ledger(
        &self,
        brand: &BrandId,
        since: Timestamp,
    ) -> impl Future<Output = Result<Vec<InsightRow>, StoreError>> + Send {
        (**self).spend_ledger(brand, since)
    }
    fn spend_summary(
        &self,
        brand: &BrandId,
        since: Timestamp,
        fold_before: Timestamp,
    ) -> impl Future<Output = Result<Vec<InsightRow>, StoreError>> + Send {
        (**self).spend_summary(brand, since, fold_before)
    }
    fn intents(&self) -> impl Future<Output = Result<Vec<Intent>, StoreError>> + Send {
        (**self).intents()
    }
    fn brand_intents(
        &self,
        brand: &BrandId,
        filter: &IntentFilter,
    ) -> impl Future<Output = Result<Vec<Intent>, StoreError>> + Send {
        (**self).brand_intents(brand, filter)
    }
    fn activities(&self) -> impl Future<Output = Result<Vec<PageActivity>, StoreError>> + Send {
        (**self).activities()
    }
    fn state(
        &self,
        brand: &BrandId,
        scope: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send {
        (**self).state(brand, scope)
    }
    fn intent(&self, key: &IdempotencyKey) -> impl Future<Output = Result<Option<Intent>, StoreError>> + Send {
        (**self).intent(key)
    }
    fn allocation(
        &self,
        brand: &BrandId,
    ) -> impl Future<Output = Result<Option<crate::propose::allocation::Allocation>, StoreError>> + Send {
        (**self).allocation(brand)
    }
    fn set_budgets(
        &self,
        brand: &BrandId,
        budgets: &Budgets,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).set_budgets(brand, budgets, now)
    }
    fn budgets(&self) -> impl Future<Output = Result<Vec<(BrandId, Budgets)>, StoreError>> + Send {
        (**self).budgets()
    }
    fn accounts(&self, brand: Option<&BrandId>) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send {
        (**self).accounts(brand)
    }
    fn transfers(&self) -> impl Future<Output = Result<Vec<Transfer>, StoreError>> + Send {
        (**self).transfers()
    }
}

/// Folds each ad's rows with buckets before `fold_before` into one row: its
/// earliest bucket, and the sums of spend, purchases and revenue (per pair
/// of currencies, so that rows in two currencies still fail the estimator
/// as they would unfolded). Rows from `fold_before` on are kept as they are.
/// `rows` come ordered by ad, then bucket (as [`Store::spend_ledger`] reads
/// them): each run of one ad's matured rows in one pair of currencies is
/// one sum. A sum past `i64` (never in practice) saturates here, as
/// purchases do in the estimator; the SQL stores fail the read. Ordered by
/// ad, then bucket.
pub fn fold_spend<'a>(rows: impl IntoIterator<Item = &'a InsightRow>, fold_before: Timestamp) -> Vec<InsightRow> {
    let mut out: Vec<InsightRow> = Vec::new();
    let mut folding = false; // whether `out`'s last row is a sum
    for r in rows {
        if r.bucket_start >= fold_before {
            out.push(r.clone());
            folding = false;
            continue;
        }
        match out.last_mut() {
            Some(f)
                if folding
                    && f.ad == r.ad
                    && f.spend.currency == r.spend.currency
                    && f.revenue.currency == r.revenue.currency =>
            {
                f.bucket_start = f.bucket_start.min(r.bucket_start);
                f.spend.minor = f.spend.minor.saturating_add(r.spend.minor);
                f.purchases = f.purchases.saturating_add(r.purchases);
                f.revenue.minor = f.revenue.minor.saturating_add(r.revenue.minor);
            }
            _ => {
                out.push(r.clone());
                folding = true;
            }
        }
    }
    out.sort_by(|a, b| (&a.ad, a.bucket_start).cmp(&(&b.ad, b.bucket_start)));
    out
}

/// Which of a brand's intents a read returns: every intent of the action
/// kinds named ([`crate::act::intent::Action::kind`]), whatever its phase;
/// with `open`, every intent of any kind without a final phase (what a job
/// re-drives after a crash); and the intents of `keys` (what a refund run
/// asks of the claims it judges). `kinds: None` admits every kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentFilter {
    pub kinds: Option<Vec<String>>,
    pub open: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<IdempotencyKey>,
}

impl IntentFilter {
    /// Every intent of the brand.
    pub fn all() -> IntentFilter {
        IntentFilter { kinds: None, open: false, keys: Vec::new() }
    }
    /// The intents of `kinds`, whatever their phase.
    pub fn kinds(kinds: &[&str]) -> IntentFilter {
        IntentFilter { kinds: Some(kinds.iter().map(|k| (*k).to_string()).collect()), ..IntentFilter::all() }
    }
    /// Only the intents without a final phase, of any kind.
    pub fn open() -> IntentFilter {
        IntentFilter { kinds: Some(Vec::new()), open: true, keys: Vec::new() }
    }
    /// These kinds, and every open intent besides.
    pub fn and_open(self) -> IntentFilter {
        IntentFilter { open: true, ..self }
    }
    /// These, and the intents of `keys` besides.
    pub fn and_keys(self, keys: impl IntoIterator<Item = IdempotencyKey>) -> IntentFilter {
        IntentFilter { keys: keys.into_iter().collect(), ..self }
    }
    pub fn admits(&self, intent: &Intent) -> bool {
        let kind = intent.action.kind();
        self.kinds.as_ref().is_none_or(|ks| ks.iter().any(|k| k == kind))
            || (self.open && !intent.phase.is_final())
            || self.keys.contains(&intent.key)
    }
}

/// A read-only view of everything a store holds, for checkers and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub jobs: Vec<Job>,
    pub intents: Vec<Intent>,
    pub actions: Vec<ActionRow>,
    pub spend: Vec<InsightRow>,
    pub events: Vec<Event>,
    pub costs: Vec<CostRow>,
    pub schedules: Vec<ScheduleRow>,
    pub activities: Vec<PageActivity>,
    /// Every bandit allocation, by slot.
    pub allocations: Vec<crate::propose::allocation::Allocation>,
    /// Every brand's declared budgets.
    #[serde(default)]
    pub budgets: Vec<(BrandId, Budgets)>,
    /// Budget accounts and transfers, by key.
    #[serde(default)]
    pub accounts: Vec<Account>,
    #[serde(default)]
    pub transfers: Vec<Transfer>,
    /// Every brand's keyed state rows: `(brand, scope, key, body)`, sorted.
    #[serde(default)]
    pub state: Vec<(BrandId, String, String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::estimator::tests::{CFG, row};
    use crate::estimate::estimator::{estimate, matured_until};

    proptest::proptest! {
        /// The store's summary (matured buckets folded per ad) estimates
        /// exactly as the rows it folds.
        #[test]
        fn folding_matured_buckets_keeps_the_estimate(
            rows in proptest::collection::vec((0u8..4, 0u64..30, 0i64..5_000, 0u32..4), 0..60),
            now_min in 0u64..40,
        ) {
            let mut rows: Vec<InsightRow> =
                rows.into_iter().map(|(ad, b, spend, p)| row(&format!("ad-{ad}"), b, spend, p)).collect();
            rows.sort_by(|a, b| (&a.ad, a.bucket_start).cmp(&(&b.ad, b.bucket_start))); // as the ledger reads them
            let now = Timestamp(now_min * 60_000);
            let folded = crate::store::fold_spend(&rows, matured_until(now, &CFG));
            proptest::prop_assert_eq!(estimate(&folded, now, &CFG).unwrap(), estimate(&rows, now, &CFG).unwrap());
        }
    }
}
