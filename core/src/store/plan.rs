//! Pure planning of a write batch's intent ops, shared by every store.
//!
//! A store loads the intents a batch names, asks [`plan_intents`] what the
//! ops do to them, and then writes the plan (intents, action rows, event
//! rows) in one transaction, or nothing when the plan is refused. Keeping the
//! rules here means MemStore and the SQL stores cannot disagree on them.

use std::collections::BTreeMap;

use crate::ids::{BrandId, IdempotencyKey, JobId};
use crate::sense::ads::InsightRow;
use crate::telemetry::{Block, EventKind};
use crate::time::Timestamp;

use crate::act::intent::{ActionRow, Intent, IntentOp, IntentPhase, fresh_intent};
use crate::envelope::budget::{self, Account, AccountKey, Budgets, Transfer};
use crate::envelope::{Decision, DenyReason};

use super::{Charge, StoreError};
use crate::telemetry::CostRow;

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
    /// Every transfer the ops made or resolved, as it is after the batch.
    pub transfers: BTreeMap<IdempotencyKey, Transfer>,
    /// Every account the ops changed, as it is after the batch.
    pub accounts: BTreeMap<AccountKey, Account>,
    /// Opens refused because their reservation would overdraw a cap (the
    /// intent is not opened; its verdict row says why), and charges
    /// refused likewise (the cost row is not booked).
    pub refused: Vec<(IdempotencyKey, String)>,
    /// The charges' cost rows the caps held: book these.
    pub charged: Vec<CostRow>,
}

/// The budget ledger as a batch's ops need it: the writer's brand's
/// budgets, and the transfers and accounts the ops touch (a SQL store
/// loads these under row locks, in [`LedgerNeeds`]' order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    pub budgets: Budgets,
    pub transfers: BTreeMap<IdempotencyKey, Transfer>,
    pub accounts: BTreeMap<AccountKey, Account>,
}

/// What to load for a batch's ledger, after its intents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerNeeds {
    /// The ops reserve: load the brand's budgets.
    pub budgets: bool,
    /// The ops may resolve these transfers (sorted).
    pub transfers: Vec<IdempotencyKey>,
}

impl LedgerNeeds {
    pub fn is_empty(&self) -> bool {
        !self.budgets && self.transfers.is_empty()
    }
}

/// What the ops and charges need of the ledger, given the intents they name.
pub fn ledger_needs(current: &BTreeMap<IdempotencyKey, Intent>, ops: &[IntentOp], charges: &[Charge]) -> LedgerNeeds {
    // A charge's key is loaded too: one booked before is refused, not booked twice.
    let mut needs = LedgerNeeds { budgets: !charges.is_empty(), transfers: charges.iter().map(Charge::key).collect() };
    for op in ops {
        match op {
            IntentOp::Open(new) if new.reserve.is_some() && !current.contains_key(&new.key) => needs.budgets = true,
            IntentOp::Advance { key, to: IntentPhase::Committed | IntentPhase::Abandoned, .. }
                if current.get(key).is_some_and(|i| i.reserve.is_some()) =>
            {
                needs.transfers.push(key.clone())
            }
            IntentOp::Reverse { key, .. } if current.get(key).is_some_and(|i| i.reserve.is_some()) => {
                needs.transfers.push(key.clone())
            }
            _ => {}
        }
    }
    needs.transfers.sort();
    needs.transfers.dedup();
    needs
}

/// The accounts the ops and charges may change, sorted (the order to lock
/// them in), each with the limit a new one starts with.
pub fn ledger_accounts(
    current: &BTreeMap<IdempotencyKey, Intent>,
    brand: &BrandId,
    ops: &[IntentOp],
    charges: &[Charge],
    ledger: &Ledger,
    now: Timestamp,
) -> Vec<(AccountKey, i64)> {
    let mut out: BTreeMap<AccountKey, i64> = BTreeMap::new();
    for c in charges {
        out.extend(budget::accounts_for(brand, &charge_reserve(c), &ledger.budgets, now));
    }
    for op in ops {
        if let IntentOp::Open(new) = op
            && let Some(r) = &new.reserve
            && !current.contains_key(&new.key)
        {
            out.extend(budget::accounts_for(brand, r, &ledger.budgets, now));
        }
    }
    for t in ledger.transfers.values() {
        for key in &t.accounts {
            out.entry(key.clone()).or_insert(0);
        }
    }
    out.into_iter().collect()
}

/// The keys a batch's ops read: load these before planning.
pub fn intent_keys(ops: &[IntentOp]) -> Vec<IdempotencyKey> {
    let mut keys: Vec<IdempotencyKey> = ops.iter().map(|op| op.key().clone()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// What a charge reserves: its row's cost, under its purpose's caps.
fn charge_reserve(c: &Charge) -> budget::Reserve {
    budget::Reserve { purpose: c.purpose, amount: c.row.cost, counterparty: None }
}

/// Applies `ops` in order to `current` (the stored intents the ops name),
/// written by a job of `brand`, after the batch's `charges`. Refuses the
/// whole batch on the first op that cannot apply, or that touches another
/// brand's intent.
///
/// `ledger` holds what [`ledger_needs`] and [`ledger_accounts`] named: an
/// open that reserves is refused (not an error: the rest of the batch
/// stands) when its reservation would overdraw a cap; a commit posts the
/// intent's reservation, an abandonment voids it. A charge is reserved and
/// posted at once, or refused (its row not booked) as an open is.
pub fn plan_intents(
    current: &BTreeMap<IdempotencyKey, Intent>,
    brand: &BrandId,
    ops: Vec<IntentOp>,
    charges: Vec<Charge>,
    mut ledger: Ledger,
    now: Timestamp,
) -> Result<IntentPlan, StoreError> {
    let mut work = current.clone();
    let mut plan = IntentPlan::default();
    for c in charges {
        let key = c.key();
        if ledger.transfers.contains_key(&key) || plan.transfers.contains_key(&key) {
            return Err(StoreError::Conflict { key, detail: "a cost row is charged once".into() });
        }
        match budget::charge(&mut ledger.accounts, &key, brand, &charge_reserve(&c), &ledger.budgets, now) {
            Ok(t) => {
                let what = format!("charged {} for {} {}, before the call", t.amount, c.row.vendor, c.row.op);
                plan.events.push(transfer_event(&t, "none", what));
                for k in &t.accounts {
                    plan.accounts.insert(k.clone(), ledger.accounts[k].clone());
                }
                plan.transfers.insert(key, t);
                plan.charged.push(c.row);
            }
            Err(why) => {
                plan.events.push(Transition {
                    block: Block::Envelope,
                    kind: EventKind::Verdict,
                    entity: key.to_string(),
                    before: "proposed".into(),
                    after: serde_json::to_string(&Decision::Deny(DenyReason::OverBudget)).expect("serializes"),
                    cause: why.clone(),
                });
                plan.refused.push((key, why));
            }
        }
    }
    for op in &ops {
        let key = op.key();
        if let Some(other) = work.get(key).filter(|i| &i.brand != brand) {
            return Err(StoreError::Conflict {
                key: key.clone(),
                detail: format!("is brand {}'s intent; a job of brand {brand} wrote it", other.brand),
            });
        }
    }
    for op in ops {
        let result = match op {
            IntentOp::Open(new) => match work.get(&new.key) {
                Some(existing) => existing.clone(),
                None => {
                    if let Some(r) = &new.reserve {
                        match budget::reserve(&mut ledger.accounts, &new.key, brand, r, &ledger.budgets, now) {
                            Ok(t) => {
                                plan.events.push(transfer_event(&t, "none", format!("reserved {}", t.amount)));
                                for k in &t.accounts {
                                    plan.accounts.insert(k.clone(), ledger.accounts[k].clone());
                                }
                                ledger.transfers.insert(new.key.clone(), t.clone());
                                plan.transfers.insert(new.key.clone(), t);
                            }
                            Err(why) => {
                                plan.events.push(Transition {
                                    block: Block::Envelope,
                                    kind: EventKind::Verdict,
                                    entity: new.key.to_string(),
                                    before: "proposed".into(),
                                    after: serde_json::to_string(&Decision::Deny(DenyReason::OverBudget))
                                        .expect("serializes"),
                                    cause: why.clone(),
                                });
                                plan.refused.push((new.key.clone(), why));
                                continue;
                            }
                        }
                    }
                    let intent = fresh_intent(&new, brand, now);
                    plan.events.push(Transition {
                        block: Block::Actuator,
                        kind: EventKind::IntentOpened,
                        entity: new.key.to_string(),
                        before: "none".into(),
                        after: "intended".into(),
                        // An escalation says why it escalates.
                        cause: match &new.evidence {
                            crate::act::intent::Evidence::Escalation { why, .. } => why.clone(),
                            _ => "envelope approved".into(),
                        },
                    });
                    work.insert(new.key.clone(), intent.clone());
                    plan.changed.insert(new.key, intent.clone());
                    intent
                }
            },
            IntentOp::Advance { key, from, to, count_attempt, cause, amount } => {
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
                if intent.phase != to && intent.reserve.is_some() && to.is_final() {
                    let t = ledger.transfers.get_mut(&key).ok_or_else(|| StoreError::Conflict {
                        key: key.clone(),
                        detail: "reserves money but its transfer is missing".into(),
                    })?;
                    let conflict = |detail: String| StoreError::Conflict { key: key.clone(), detail };
                    let (what, note) = if to == IntentPhase::Committed {
                        let posted = amount.unwrap_or(t.amount);
                        let note = budget::post(&mut ledger.accounts, t, posted, now).map_err(conflict)?;
                        (format!("posted {posted} on commit"), note)
                    } else {
                        budget::void(&mut ledger.accounts, t, now).map_err(conflict)?;
                        ("voided on abandonment".to_string(), None)
                    };
                    let cause = note.map_or(what.clone(), |n| format!("{what}; {n}"));
                    plan.events.push(transfer_event(t, "pending", cause));
                    for k in &t.accounts {
                        plan.accounts.insert(k.clone(), ledger.accounts[k].clone());
                    }
                    plan.transfers.insert(key.clone(), t.clone());
                }
                if intent.phase != to {
                    assert!(!intent.phase.is_final(), "{key}: a final phase is never left ({from:?} -> {to:?})");
                    let before = intent.phase.as_str();
                    intent.phase = to;
                    intent.updated_at = now;
                    if to == IntentPhase::Committed {
                        plan.actions.push(ActionRow {
                            key: key.clone(),
                            brand: intent.brand.clone(),
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
            IntentOp::Reverse { key, cause } => {
                let intent = work.get(&key).ok_or_else(|| StoreError::NotFound(format!("intent {key}")))?;
                let conflict = |detail: String| StoreError::Conflict { key: key.clone(), detail };
                if intent.phase != IntentPhase::Committed {
                    return Err(conflict(format!("is {}: only a committed action is reversed", intent.phase.as_str())));
                }
                if intent.reserve.is_some() {
                    let t = ledger
                        .transfers
                        .get_mut(&key)
                        .ok_or_else(|| conflict("reserves money but its transfer is missing".into()))?;
                    if budget::reverse(t, now).map_err(conflict)? {
                        plan.events.push(transfer_event(t, "posted", cause));
                        plan.transfers.insert(key.clone(), t.clone());
                    }
                }
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

fn transfer_event(t: &Transfer, before: &str, cause: String) -> Transition {
    Transition {
        block: Block::Envelope,
        kind: EventKind::BudgetTransfer,
        entity: t.id.to_string(),
        before: before.into(),
        after: t.state.as_str().into(),
        cause: format!("{cause} ({})", t.accounts.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")),
    }
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

/// One ready job as the claim ranks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    pub brand: BrandId,
    pub priority: i16,
    pub run_at: Timestamp,
    pub id: JobId,
}

/// The claim order, fair across brands: each brand's ready jobs ranked by
/// `(priority, run_at, id)`, then taken round-robin by rank (rank 1 of every
/// brand, in `(priority, run_at, id)` order, then rank 2, …), at most
/// `limit`. With one brand this is plain `(priority, run_at, id)` order.
pub fn fair_order(mut ready: Vec<Ready>, limit: usize) -> Vec<JobId> {
    ready.sort_unstable_by(|a, b| (&a.brand, a.priority, a.run_at, a.id).cmp(&(&b.brand, b.priority, b.run_at, b.id)));
    let mut ranked: Vec<(usize, i16, Timestamp, JobId)> = Vec::with_capacity(ready.len());
    let mut rank = 0;
    for (i, r) in ready.iter().enumerate() {
        rank = if i > 0 && ready[i - 1].brand == r.brand { rank + 1 } else { 1 };
        ranked.push((rank, r.priority, r.run_at, r.id));
    }
    ranked.sort_unstable();
    ranked.into_iter().take(limit).map(|(_, _, _, id)| id).collect()
}

/// The event row of a refund risk tier that changed.
pub fn tier_transition(brand: &crate::ids::BrandId, c: &crate::estimate::risk::TierChange) -> Transition {
    Transition {
        block: Block::Estimator,
        kind: EventKind::TierChanged,
        entity: format!("identity/{brand}/{}", c.identity),
        before: c.before.as_str().into(),
        after: c.after.as_str().into(),
        cause: if c.facts.is_empty() { "nothing against it".into() } else { c.facts.join("; ") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(brand: &str, priority: i16, run_at: u64, id: u64) -> Ready {
        Ready { brand: BrandId::new(brand), priority, run_at: Timestamp(run_at), id: JobId(id) }
    }

    #[test]
    fn a_backlog_of_one_brand_does_not_stall_another() {
        let mut ready: Vec<Ready> = (1..=100).map(|i| r("flood", 0, i, i)).collect();
        ready.push(r("quiet", 5, 1_000, 500));
        let got = fair_order(ready, 2);
        assert_eq!(got, vec![JobId(1), JobId(500)], "the quiet brand's one job is in the first batch");
    }

    #[test]
    fn one_brand_is_plain_priority_order() {
        let ready = vec![r("a", 1, 5, 3), r("a", 0, 9, 2), r("a", 0, 9, 1), r("a", 0, 1, 4)];
        assert_eq!(fair_order(ready, 10), vec![JobId(4), JobId(1), JobId(2), JobId(3)]);
    }

    #[test]
    fn rounds_go_by_priority_within_a_rank() {
        let ready = vec![r("a", 3, 0, 1), r("a", 3, 0, 2), r("b", 1, 0, 3), r("b", 1, 0, 4), r("c", 2, 0, 5)];
        assert_eq!(fair_order(ready, 4), vec![JobId(3), JobId(5), JobId(1), JobId(4)]);
    }
}
