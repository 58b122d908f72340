//! Telemetry: one event row per state transition, one cost row per external
//! call, and a digest of the event log that two runs of one seed must share.
//!
//! Events are written by the store in the same atomic operation as the
//! transition they describe, so a transition without its row (or a row
//! without its transition) cannot happen. `replay` rebuilds job and intent
//! states from the log alone; the sim checks it against the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{BrandId, IdempotencyKey, JobId};
use crate::money::Money;
use crate::time::Timestamp;

/// Which block of the loop a row belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    Sensor,
    Estimator,
    Policy,
    Envelope,
    Actuator,
    Scheduler,
}

/// What happened. One variant per kind of transition.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    WorkerBooted,
    SlotFired,
    JobEnqueued,
    JobClaimed,
    JobReleased,
    JobCompleted,
    JobRetried,
    JobDiscarded,
    LedgerSpend,
    Verdict,
    IntentOpened,
    IntentAdvanced,
    /// A call to apply an intent failed cleanly (or a crash loop spent one):
    /// its attempt count went up without a phase change.
    IntentAttempt,
    /// A pipeline step completed and its checkpoint was written.
    PipelineStep,
    /// The circuit breaker disabled a schedule.
    BreakerOpened,
    /// An operator re-enabled a schedule (or disabled it by hand).
    ScheduleChanged,
    /// A bandit re-roll wrote the budget split of a slot.
    AllocationRolled,
    /// A budget reservation was made, posted or voided (entity: the intent's key).
    BudgetTransfer,
    /// A brand's budgets (time zone, caps) were declared or changed.
    BudgetsSet,
    /// A customer identity's refund risk tier changed (entity:
    /// `identity/{brand}/{key}`; the cause names the facts that set it).
    TierChanged,
    /// A job's keyed state changed in a way worth a row (a model
    /// deployment's breaker opened or closed; entity: `{scope}/{key}`).
    StateChanged,
}

/// One row of the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Timestamp,
    /// The brand whose row changed; `None` for a worker's own rows (boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<BrandId>,
    pub block: Block,
    pub kind: EventKind,
    /// What changed: `job#12`, `kill/ad-3`, `ad-3@120000`, a worker id.
    pub entity: String,
    pub before: String,
    pub after: String,
    pub cause: String,
    /// The process that wrote the row (`name/pid` of a runner), where the
    /// store records one; `None` in the sim and for older rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// One external call, priced. Ads API calls cost nothing in money but are
/// rows all the same: the ledger counts calls as well as cents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostRow {
    /// Unique per call (`job#12/3/summarize`); sent to vendors that bill.
    pub call_id: String,
    /// Whose call it was (stamped by the store: the calling job's brand).
    #[serde(default)]
    pub brand: BrandId,
    pub at: Timestamp,
    pub vendor: String,
    pub op: String,
    pub ok: bool,
    pub cost: Money,
}

/// SHA-256 over the canonical JSON of every event, in sequence order.
pub fn digest(events: &[Event]) -> String {
    let mut hasher = Sha256::new();
    for e in events {
        let line = serde_json::to_vec(e).expect("events serialize");
        hasher.update(&line);
        hasher.update(b"\n");
    }
    let out = hasher.finalize();
    out.iter().map(|b| format!("{b:02x}")).collect()
}

/// Job and intent states rebuilt from the event log alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    pub jobs: BTreeMap<JobId, String>,
    pub intents: BTreeMap<IdempotencyKey, String>,
    /// Budget transfers by intent key: pending, posted, voided.
    pub transfers: BTreeMap<IdempotencyKey, String>,
}

/// Folds the log into final states. Fails on a row whose `before` does not
/// match the state the log itself says the entity was in: a gap or a
/// duplicate in the log.
pub fn replay(events: &[Event]) -> Result<Rebuilt, String> {
    let mut out = Rebuilt::default();
    for e in events {
        match e.kind {
            EventKind::JobEnqueued
            | EventKind::JobClaimed
            | EventKind::JobReleased
            | EventKind::JobCompleted
            | EventKind::JobRetried
            | EventKind::JobDiscarded => {
                let id = parse_job_entity(&e.entity)
                    .ok_or_else(|| format!("event {}: bad job entity {:?}", e.seq, e.entity))?;
                transition(&mut out.jobs, id, e)?;
            }
            EventKind::IntentOpened | EventKind::IntentAdvanced => {
                transition(&mut out.intents, IdempotencyKey::new(e.entity.clone()), e)?;
            }
            EventKind::BudgetTransfer => {
                transition(&mut out.transfers, IdempotencyKey::new(e.entity.clone()), e)?;
            }
            EventKind::WorkerBooted
            | EventKind::IntentAttempt
            | EventKind::SlotFired
            | EventKind::LedgerSpend
            | EventKind::Verdict
            | EventKind::PipelineStep
            | EventKind::BreakerOpened
            | EventKind::ScheduleChanged
            | EventKind::AllocationRolled
            | EventKind::BudgetsSet
            | EventKind::TierChanged
            | EventKind::StateChanged => {}
        }
    }
    Ok(out)
}

/// Applies one row to `states`, refusing it if its `before` is not the state
/// the log so far says the entity is in ("none" before its first row).
fn transition<K: Ord>(states: &mut BTreeMap<K, String>, key: K, e: &Event) -> Result<(), String> {
    let current = states.get(&key).map(String::as_str).unwrap_or("none");
    if current != e.before {
        return Err(format!("event {} ({:?} {}): log says {current}, row says {}", e.seq, e.kind, e.entity, e.before));
    }
    states.insert(key, e.after.clone());
    Ok(())
}

fn parse_job_entity(entity: &str) -> Option<JobId> {
    entity.strip_prefix("job#")?.parse().ok().map(JobId)
}
