//! The tick job: sensor → estimator → policy → envelope → intents.
//!
//! Reads insights for the lookback window page by page (each page written to
//! the spend ledger as a checkpoint), estimates every ad on matured data, lets
//! the kill rule propose, lets the envelope decide, and writes verdicts, new
//! intents in one atomic batch. Then it pauses the new kills in one batch
//! call (Meta's batch API) and writes each item's outcome with the kill jobs
//! that take every intent on from its phase: a platform that pauses only part
//! of a batch leaves the rest `intended`, and each read-back is per ad. It
//! also re-drives every intent without a commit, so an intent orphaned by a
//! crash (even between the two writes) is picked up within one tick.

use std::collections::BTreeMap;

use crate::act::intent::{IntentOp, IntentPhase};
use crate::act::machine::{CallOutcome, after_call};
use crate::config::{LoopConfig, Sabotage};
use crate::ids::{AdId, IdempotencyKey};
use crate::probe::{Probe, Site};
use crate::schedule::task::Task;
use crate::sense::ads::{AdsPlatform, InsightsQuery, PAUSE_BATCH_MAX};
use crate::store::{IntentFilter, NewJob, Store};
use crate::time::{Clock, Timestamp};

use super::drive;
use super::{Attempt, JobError, Ports};

/// Pages read per tick at most; a platform that pages forever is an error.
pub const MAX_PAGES: u32 = 1_000;

/// Priority of kill jobs: ahead of ticks.
pub const KILL_PRIORITY: i16 = 0;
const _: () = assert!(MAX_PAGES > 0 && PAUSE_BATCH_MAX > 0);

pub async fn run<S: Store, A: AdsPlatform, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &LoopConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
    slot: Timestamp,
    retry: bool,
) -> Result<(), JobError> {
    if retry {
        redrive(ports, attempt).await?;
    }
    sense(ports, cfg, attempt, slot).await?;
    decide(ports, cfg, sabotage, attempt).await
}

/// A retried tick re-drives open intents before it pages insights: intents
/// its crashed attempt opened between its batch pause and the write of the
/// outcomes get their kill jobs even while the platform's insights keep
/// failing (found by `every-fault`: a retried tick paging into a timeout
/// storm held them until the next tick, a minute). A first attempt leaves
/// this to `decide`, which reads the intents anyway.
async fn redrive<S: Store, A: AdsPlatform, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
) -> Result<(), JobError> {
    let jobs = drive::jobs_of_open(
        ports.store.brand_intents(&attempt.brand, &IntentFilter::open()).await?.iter(),
        ports.clock.now(),
    );
    if jobs.is_empty() {
        return Ok(());
    }
    let mut batch = attempt.batch();
    batch.enqueue = jobs;
    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    Ok(())
}

/// Sensor: every page of insights since `slot - lookback`, upserted into the
/// spend ledger page by page.
async fn sense<S: Store, A: AdsPlatform, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &LoopConfig,
    attempt: &mut Attempt,
    slot: Timestamp,
) -> Result<(), JobError> {
    let since = (slot - cfg.insights_lookback).floor_to(cfg.estimator.bucket);
    let mut after = None;
    for _ in 0..MAX_PAGES {
        let now = ports.clock.now();
        let query = InsightsQuery { since, until: now, after: after.take(), limit: cfg.page_limit };
        let page = ports.ads.insights(&query).await;
        attempt.record_call(now, "insights", &page);
        let page = page?;
        let mut batch = attempt.batch();
        batch.insights = page.rows;
        ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
        ports.probe.reached(Site::TickAfterPage, attempt.brand.as_str()).await;
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => return Ok(()),
        }
    }
    Err(JobError::Permanent(format!("insights paging exceeded {MAX_PAGES} pages")))
}

async fn decide<S: Store, A: AdsPlatform, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &LoopConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
) -> Result<(), JobError> {
    let now = ports.clock.now();
    let matured = crate::estimate::estimator::matured_until(now, &cfg.estimator);
    let rows = ports.store.spend_summary(&attempt.brand, now - cfg.estimate_window, matured).await?;
    let intents: BTreeMap<IdempotencyKey, _> = ports
        .store
        .brand_intents(&attempt.brand, &drive::node_family().and_open())
        .await?
        .into_iter()
        .map(|i| (i.key.clone(), i))
        .collect();
    let decided = crate::decide::decide(&rows, &intents, now, &cfg.estimator, &cfg.kill_rule, &cfg.envelope)
        .map_err(|e| JobError::Permanent(e.to_string()))?;

    let mut batch = attempt.batch();
    let mut approved = Vec::new();
    for new in decided.intents() {
        let ad = new.verdict.ad.clone();
        if sabotage == Sabotage::SkipIntent {
            batch.enqueue.push(kill_job(&new.key, &ad, now));
            continue;
        }
        approved.push((ad, new.key.clone()));
        batch.intents.push(IntentOp::Open(new));
    }
    // Recovery: every intent without a commit gets a live kill job.
    batch.enqueue.extend(drive::jobs_of_open(intents.values(), now));
    // Escalation, for kills whose jobs wait for a free slot: the next level
    // of every overdue kill (its own job escalates too; the keys make the
    // second opening a no-op).
    if let Some(after) = cfg.escalate_after
        && sabotage != Sabotage::NoEscalation
    {
        for new in escalations(ports, attempt, &intents, now, after).await {
            batch.enqueue.push(drive::escalate_job(&new.key, now));
            batch.intents.push(IntentOp::Open(new));
        }
    }
    // Escalation's collateral: resume every ad set or campaign whose kills
    // are all confirmed.
    if cfg.escalate_after.is_some() && sabotage != Sabotage::KeepCollateral {
        for new in crate::act::escalate::resumes(intents.values(), now) {
            batch.enqueue.push(drive::escalate_job(&new.key, now));
            batch.intents.push(IntentOp::Open(new));
        }
    }
    batch.verdicts = decided.verdicts;
    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    ports.probe.reached(Site::TickAfterDecide, attempt.brand.as_str()).await;
    for chunk in approved.chunks(PAUSE_BATCH_MAX) {
        first_pause(ports, attempt, chunk).await?;
    }
    Ok(())
}

/// The pause intents of the next level up for every kill overdue by
/// `after` (`act::escalate::next_level`); a kill whose ad's parents cannot
/// be read now is left to its own job and the next tick.
async fn escalations<S: Store, A: AdsPlatform, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
    intents: &BTreeMap<IdempotencyKey, crate::act::intent::Intent>,
    now: Timestamp,
    after: crate::time::Millis,
) -> Vec<crate::act::intent::NewIntent> {
    use crate::act::escalate::{escalation_key, next_level, pause_intent};
    use crate::sense::ads::Level;
    let mut out = Vec::new();
    for kill in intents.values() {
        let crate::act::intent::Action::KillAd { ad } = &kill.action else { continue };
        let adset = intents.get(&escalation_key(&kill.key, Level::AdSet));
        let campaign = intents.get(&escalation_key(&kill.key, Level::Campaign));
        let Some(level) = next_level(kill, adset, campaign, true, now, after) else { continue };
        let started = ports.clock.now();
        let parents = ports.ads.parents(ad).await;
        attempt.record_call(started, "parents", &parents);
        if let Ok(parents) = parents {
            out.push(pause_intent(kill, ad, parents.node(level), now));
        }
    }
    out
}

/// The first pause of freshly written intents, as one batch call; then each
/// item's outcome and the kill jobs, in one write. Their kill jobs do not
/// exist until that write, so normally nothing else pauses them meanwhile; a
/// crash in between leaves them to the next tick's re-drive. (Another tick
/// running at once may re-drive them early: a second pause changes nothing,
/// and if its kill job gets further first, this write conflicts and the tick
/// is retried, finding nothing new to approve.)
async fn first_pause<S: Store, A: AdsPlatform, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
    items: &[(AdId, IdempotencyKey)],
) -> Result<(), JobError> {
    let started = ports.clock.now();
    let result = ports.ads.pause_batch(items).await;
    attempt.record_call(started, "pause_batch", &result);
    ports.probe.reached(Site::TickAfterBatchPause, attempt.brand.as_str()).await;
    let mut batch = attempt.batch();
    // The whole call failed (timed out: any item may have happened): every
    // intent stays `intended`, and its kill job pauses again (pausing a
    // paused ad changes nothing) and reads back before it commits.
    // A reply with another number of items than asked is garbled: treat it
    // as the whole call's failure (every item stays `intended`).
    let outcomes = result.ok().filter(|o| o.len() == items.len()).unwrap_or_default();
    for ((_, key), outcome) in items.iter().zip(outcomes) {
        match after_call(outcome) {
            CallOutcome::Applied => batch.intents.push(IntentOp::Advance {
                key: key.clone(),
                from: IntentPhase::Intended,
                to: IntentPhase::Applied,
                count_attempt: true,
                cause: "batch pause: item succeeded".into(),
                amount: None,
            }),
            CallOutcome::Failed(e) => {
                batch.intents.push(IntentOp::CountAttempt { key: key.clone(), cause: format!("batch pause: {e}") })
            }
            // Not counted: a throttled item did not happen; an unknown one
            // is left to its kill job, as above.
            CallOutcome::Unknown(_) | CallOutcome::Throttled(_) => {}
        }
    }
    let now = ports.clock.now();
    batch.enqueue = items.iter().map(|(ad, key)| kill_job(key, ad, now)).collect();
    ports.store.write(&attempt.lease, batch, now).await?;
    Ok(())
}

pub fn kill_job(key: &IdempotencyKey, ad: &AdId, now: Timestamp) -> NewJob {
    NewJob::new(&Task::KillAd { key: key.clone(), ad: ad.clone() }, KILL_PRIORITY, now, Some(key.clone()))
}
