//! The payables job: sensor (the brand's payables source) → policy (pay
//! what is owed) → envelope (allow-list, bank details, one payout per
//! invoice, budgets) → intents, and the payout jobs that drive them.
//!
//! One run per slot of the brand's `payables` schedule. For each pending
//! file: a file that cannot be used is refused whole (an event row names
//! the row and field; the source moves it aside); a half-written one is
//! left for the next run. Every payable of a good file is judged; the
//! approved ones open their intents, each reserving its amount in the same
//! write. A payable the brand's budgets cannot hold right now is deferred:
//! no intent, no verdict; the file is settled keeping only its deferred
//! rows, read again next run (after a day or month boundary the cap has
//! room again), so a refusal is logged once. A crash before the settle only
//! makes the whole file read again, and its opened invoices are then
//! duplicates (one payout per invoice, ever), said nothing of.

use std::collections::{BTreeMap, BTreeSet};

use crate::act::intent::{Action, Intent, IntentOp, IntentPhase, NewIntent};
use crate::act::payout::payout_intent;
use crate::config::{PayoutConfig, Sabotage};
use crate::envelope::budget::{self, Account, AccountKey, Budgets, Reserve};
use crate::envelope::payout::{Counterparty, Judged, judge_payable};
use crate::envelope::{Decision, DenyReason, Verdict};
use crate::ids::{AdId, BrandId, IdempotencyKey};
use crate::probe::{Probe, Site};
use crate::sense::bank::{Bank, LIST_MAX, TxState};
use crate::sense::payables::{PayablesError, PayablesFile, PayablesSource, Settled};
use crate::store::{IntentFilter, Store};
use crate::time::{Clock, Millis, Timestamp};

use super::{Attempt, JobError, Ports, drive};

/// The schedule that fires the payables job of each brand with payouts.
pub const PAYABLES_SCHEDULE: &str = "payables";

/// Files read per run at most (the rest wait for the next run).
pub const MAX_FILES_PER_RUN: usize = 64;

/// The brand's budget accounts as read at the start of the run, on which
/// the job makes each reservation as the store will (`budget::reserve`),
/// so that it asks only for what can fit; the store re-checks every one
/// under its lock.
pub(crate) struct Room {
    pub(crate) budgets: Budgets,
    pub(crate) accounts: BTreeMap<AccountKey, Account>,
}

impl Room {
    /// Makes the reservation in the room: `Ok(true)` it fits, `Ok(false)`
    /// not now (a deferral), `Err` no cap covers it (a refusal).
    pub(crate) fn take(
        &mut self,
        brand: &BrandId,
        key: &IdempotencyKey,
        reserve: &Reserve,
        now: Timestamp,
    ) -> Result<bool, String> {
        match budget::reserve(&mut self.accounts, key, brand, reserve, &self.budgets, now) {
            Ok(_) => Ok(true),
            Err(why) if budget::accounts_for(brand, reserve, &self.budgets, now).is_empty() => Err(why),
            Err(_) => Ok(false),
        }
    }
}

pub async fn run<S: Store, A, C: Clock, P: Probe, B: Bank + PayablesSource>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &PayoutConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
) -> Result<(), JobError> {
    let brand = attempt.brand.clone();
    let intents = ports.store.brand_intents(&brand, &IntentFilter::kinds(&[Action::PAYOUT])).await?;
    drive::redrive(ports, attempt, intents.iter()).await?;
    if sabotage != Sabotage::IgnoreReversals {
        statement(ports, attempt, &intents).await?;
    }
    let files = ports.bank.pending().await.map_err(|e| JobError::RetryAfter { wait: Millis(0), why: e.to_string() })?;
    let budgets = ports.store.budgets().await?.into_iter().find(|(b, _)| b == &brand).map(|(_, b)| b);
    let accounts = ports.store.accounts(Some(&brand)).await?.into_iter().map(|a| (a.key.clone(), a)).collect();
    let mut room = Room { budgets: budgets.unwrap_or_default(), accounts };
    let allow: BTreeMap<String, Counterparty> = cfg.counterparties.iter().map(|c| (c.id.clone(), c.clone())).collect();
    let mut opened: BTreeSet<IdempotencyKey> = intents.iter().map(|i| i.key.clone()).collect();
    for file in files.into_iter().take(MAX_FILES_PER_RUN) {
        let now = ports.clock.now();
        let settled = match &file.payables {
            Err(PayablesError::Incomplete(_)) => continue,
            Err(e) => {
                let why = format!("payables file {}: {e}", file.name);
                let mut batch = attempt.batch();
                batch.verdicts.push(file_refusal(&brand, &file, &why, now));
                ports.store.write(&attempt.lease, batch, now).await?;
                Settled::Rejected(why)
            }
            Ok(rows) => {
                let kept = open_file(ports, cfg, sabotage, attempt, &file, &allow, &mut opened, &mut room, now).await?;
                if kept.is_empty() {
                    Settled::Accepted
                } else if kept.len() == rows.len() {
                    // Nothing of it was used: leave it as it is.
                    continue;
                } else {
                    Settled::Keep(kept)
                }
            }
        };
        ports.probe.reached(Site::PayablesBeforeSettle, "payables").await;
        ports
            .bank
            .settle(&file.name, &settled)
            .await
            .map_err(|e| JobError::RetryAfter { wait: Millis(0), why: e.to_string() })?;
    }
    Ok(())
}

/// Judges every payable of one good file and opens the approved ones, in
/// one write; then their payout jobs. Returns the payables deferred for
/// want of room in the budgets.
#[allow(clippy::too_many_arguments)]
async fn open_file<S: Store, A, C: Clock, P: Probe, B: Bank + PayablesSource>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &PayoutConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
    file: &PayablesFile,
    allow: &BTreeMap<String, Counterparty>,
    opened: &mut BTreeSet<IdempotencyKey>,
    room: &mut Room,
    now: Timestamp,
) -> Result<Vec<crate::sense::payables::Payable>, JobError> {
    let brand = attempt.brand.clone();
    let mut batch = attempt.batch();
    let mut deferred = Vec::new();
    let mut by_key = BTreeMap::new();
    for payable in file.payables.as_ref().expect("a good file") {
        let judged = match judge_payable(&brand, payable, allow, opened, now) {
            Judged::Refused(v) if sabotage == Sabotage::SkipPayeeCheck && !opened.contains(&v.key) => {
                let account = allow.get(&payable.counterparty_id).map_or_else(
                    || format!("cpa-{}", payable.counterparty_id.trim_start_matches("cp-")),
                    |c| c.account_id.clone(),
                );
                Judged::Open(crate::envelope::payout::Approved {
                    key: v.key.clone(),
                    verdict: Verdict { decision: Decision::Approve, ..v },
                    counterparty_id: payable.counterparty_id.clone(),
                    counterparty_account: account,
                })
            }
            judged => judged,
        };
        match judged {
            // One payout per invoice: a file read again (after a crash, or
            // a second copy) finds its invoices opened, and says nothing.
            Judged::Refused(v) if v.decision == Decision::Deny(DenyReason::Duplicate) => {}
            Judged::Refused(v) => batch.verdicts.push(v),
            Judged::Open(approved) => {
                let mut new: NewIntent = payout_intent(&approved, payable, &cfg.from_account);
                if sabotage == Sabotage::BrandCapsOnly
                    && let Some(r) = new.reserve.as_mut()
                {
                    r.counterparty = None;
                }
                let reserve = new.reserve.clone().expect("a payout reserves");
                match room.take(&brand, &new.key, &reserve, now) {
                    Ok(true) => {}
                    Ok(false) => {
                        deferred.push(payable.clone());
                        continue;
                    }
                    Err(why) => {
                        let mut v = approved.verdict.clone();
                        v.decision = Decision::Deny(DenyReason::OverBudget);
                        v.reason = format!("invoice {}: {why}", payable.invoice);
                        batch.verdicts.push(v);
                        continue;
                    }
                }
                if sabotage == Sabotage::SkipReservation {
                    new.reserve = None;
                }
                opened.insert(new.key.clone());
                by_key.insert(new.key.clone(), payable.clone());
                batch.verdicts.push(approved.verdict);
                batch.intents.push(IntentOp::Open(new));
            }
        }
    }
    if batch.is_empty() {
        return Ok(deferred);
    }
    let result = ports.store.write(&attempt.lease, batch, now).await?;
    // A reservation the store refused (another writer took the room first)
    // is a deferral too (its refusal is logged by the store).
    for (key, _) in &result.refused {
        opened.remove(key);
        deferred.extend(by_key.remove(key));
    }
    ports.probe.reached(Site::PayablesAfterOpen, "payables").await;
    let jobs = drive::jobs_of_open(result.intents.iter().filter(|i| by_key.contains_key(&i.key)), now);
    if !jobs.is_empty() {
        let mut batch = attempt.batch();
        batch.enqueue = jobs;
        ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    }
    Ok(deferred)
}

/// How far back the statement looks for payments reverted after they
/// completed (within Revolut's 14-day span for one list).
pub const STATEMENT_SPAN: Millis = Millis(13 * 24 * 3600 * 1000);

/// Lists the brand's recent payments and books every reversal of a
/// committed payout (its transfer becomes `reversed`, with an event row).
/// A bank that does not answer is tried again next run: the payables are
/// read all the same.
async fn statement<S: Store, A, C: Clock, P: Probe, B: Bank>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
    intents: &[Intent],
) -> Result<(), JobError> {
    let now = ports.clock.now();
    let since = now - STATEMENT_SPAN;
    let committed: BTreeMap<String, &Intent> = intents
        .iter()
        .filter(|i| matches!(i.action, Action::Payout { .. }))
        .filter(|i| i.phase == IntentPhase::Committed && i.updated_at >= since)
        .map(|i| (crate::act::payout::request_id(&i.key), i))
        .collect();
    let Some(from) = committed.values().map(|i| i.opened_at).min() else { return Ok(()) };
    let mut to = now + Millis(1);
    let mut seen = BTreeSet::new();
    let mut reversals = Vec::new();
    // Newest first, a page at most `LIST_MAX` long: page back by `to`.
    for _ in 0..64 {
        let listed = ports.bank.transactions(from, to).await;
        attempt.record(ports.clock.now(), "revolut", "transactions", listed.is_ok());
        let Ok(page) = listed else { return Ok(()) };
        for tx in &page {
            if tx.state == TxState::Reverted
                && seen.insert(tx.id.clone())
                && let Some(i) = committed.get(&tx.request_id)
            {
                reversals.push(IntentOp::Reverse {
                    key: i.key.clone(),
                    cause: format!(
                        "the bank reverted {} ({}) after it completed: the money came back",
                        tx.id, tx.amount
                    ),
                });
            }
        }
        match page.iter().map(|t| t.created_at).min() {
            Some(oldest) if page.len() >= LIST_MAX && oldest + Millis(1) < to => to = oldest + Millis(1),
            _ => break,
        }
    }
    let mut batch = attempt.batch();
    batch.intents = reversals;
    if !batch.intents.is_empty() || !batch.costs.is_empty() {
        ports.store.write(&attempt.lease, batch, now).await?;
    }
    Ok(())
}

/// The verdict row of a file refused whole: keyed by the file, so that the
/// operator finds it by name.
fn file_refusal(brand: &BrandId, file: &PayablesFile, why: &str, now: Timestamp) -> Verdict {
    Verdict {
        ad: AdId::new(file.name.clone()),
        key: IdempotencyKey::new(format!("payables/{brand}/{}", file.name)),
        decision: Decision::Deny(DenyReason::Malformed),
        at: now,
        reason: why.to_string(),
    }
}
