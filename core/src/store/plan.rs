//! Pure planning of a write batch's intent ops, shared by every store.
//!
//! A store loads the intents a batch names, asks [`plan_intents`] what the
//! ops do to them, and then writes the plan (intents, action rows, event
//! rows) in one transaction, or nothing when the plan is refused. Keeping the
//! rules here means MemStore and the SQL stores cannot disagree on them.

use std::collections::BTreeMap;

use crate::ids::IdempotencyKey;
use crate::sense::ads::InsightRow;
use crate::telemetry::{Block, EventKind};
use crate::time::Timestamp;

use crate::act::intent::{ActionRow, Intent, IntentOp, IntentPhase, fresh_intent};

use super::StoreError;

/// An event row a store must write, before it is given a sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub block: Block,
    pub kind: EventKind,
    pub entity: String,
    pub before: String,
    pub after: String,
    pub cause: String,
}

/// What a batch's intent ops do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntentPlan {
    /// Each op's intent as it is after the op, in op order.
    pub results: Vec<Intent>,
    /// The final state of every intent the ops created or changed.
    pub changed: BTreeMap<IdempotencyKey, Intent>,
    pub actions: Vec<ActionRow>,
    pub events: Vec<Transition>,
}

/// The keys a batch's ops read: load these before planning.
pub fn intent_keys(ops: &[IntentOp]) -> Vec<IdempotencyKey> {
    let mut keys: Vec<IdempotencyKey> = ops
        .iter()
        .map(|op| match op {
            IntentOp::Open(new) => new.key.clone(),
            IntentOp::Advance { key, .. } | IntentOp::CountAttempt { key, .. } => key.clone(),
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Applies `ops` in order to `current` (the stored intents the ops name).
/// Refuses the whole batch on the first op that cannot apply.
pub fn plan_intents(
    current: &BTreeMap<IdempotencyKey, Intent>,
    ops: Vec<IntentOp>,
    now: Timestamp,
) -> Result<IntentPlan, StoreError> {
    let mut work = current.clone();
    let mut plan = IntentPlan::default();
    for op in ops {
        let result = match op {
            IntentOp::Open(new) => match work.get(&new.key) {
                Some(existing) => existing.clone(),
                None => {
                    let intent = fresh_intent(&new, now);
                    plan.events.push(Transition {
                        block: Block::Actuator,
                        kind: EventKind::IntentOpened,
                        entity: new.key.to_string(),
                        before: "none".into(),
                        after: "intended".into(),
                        cause: "envelope approved".into(),
                    });
                    work.insert(new.key.clone(), intent.clone());
                    plan.changed.insert(new.key, intent.clone());
                    intent
                }
            },
            IntentOp::Advance { key, from, to, count_attempt, cause } => {
                let intent = work.get_mut(&key).ok_or_else(|| StoreError::NotFound(format!("intent {key}")))?;
                if !from.may_move_to(to) {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        detail: format!(
                            "{} -> {} is not a move of the write-ahead machine",
                            from.as_str(),
                            to.as_str()
                        ),
                    });
                }
                if intent.phase != to && intent.phase != from {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        detail: format!("is {}, not {} (wanted {})", intent.phase.as_str(), from.as_str(), to.as_str()),
                    });
                }
                if count_attempt {
                    intent.attempts += 1;
                }
                if intent.phase != to {
                    let before = intent.phase.as_str();
                    intent.phase = to;
                    intent.updated_at = now;
                    if to == IntentPhase::Committed {
                        plan.actions.push(ActionRow {
                            key: key.clone(),
                            kind: intent.action.kind().into(),
                            subject: intent.action.subject().into(),
                            committed_at: now,
                        });
                    }
                    plan.events.push(Transition {
                        block: Block::Actuator,
                        kind: EventKind::IntentAdvanced,
                        entity: key.to_string(),
                        before: before.into(),
                        after: to.as_str().into(),
                        cause,
                    });
                }
                plan.changed.insert(key, intent.clone());
                intent.clone()
            }
            IntentOp::CountAttempt { key, cause } => {
                let intent = work.get_mut(&key).ok_or_else(|| StoreError::NotFound(format!("intent {key}")))?;
                plan.events.push(Transition {
                    block: Block::Actuator,
                    kind: EventKind::IntentAttempt,
                    entity: key.to_string(),
                    before: format!("attempts={}", intent.attempts),
                    after: format!("attempts={}", intent.attempts + 1),
                    cause,
                });
                intent.attempts += 1;
                plan.changed.insert(key, intent.clone());
                intent.clone()
            }
        };
        plan.results.push(result);
    }
    debug_assert!(
        plan.changed.iter().all(|(k, i)| current.get(k).is_none_or(|old| old.attempts <= i.attempts)),
        "attempt counts never go down"
    );
    Ok(plan)
}

/// A spend-ledger row as its event rows describe it.
pub fn describe_spend(r: &InsightRow) -> String {
    format!("spend={} purchases={} revenue={}", r.spend.minor, r.purchases, r.revenue.minor)
}

/// The event row of a spend-ledger upsert, or `None` when the row is unchanged.
pub fn spend_transition(old: Option<&InsightRow>, new: &InsightRow) -> Option<Transition> {
    let before = old.map(describe_spend);
    let after = describe_spend(new);
    if before.as_deref() == Some(after.as_str()) {
        return None;
    }
    Some(Transition {
        block: Block::Sensor,
        kind: EventKind::LedgerSpend,
        entity: format!("{}@{}", new.ad, new.bucket_start.0),
        before: before.unwrap_or_else(|| "none".into()),
        after,
        cause: "insights".into(),
    })
}
