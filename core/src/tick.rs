//! The tick job: sensor → estimator → policy → envelope → intents.
//!
//! Reads insights for the lookback window page by page (each page written to
//! the spend ledger as a checkpoint), estimates every ad on matured data, lets
//! the kill rule propose, lets the envelope decide, and writes verdicts, new
//! intents and their kill jobs in one atomic batch. It also re-drives every
//! intent without a commit, so an intent orphaned by a crash is picked up
//! within one tick.

use std::collections::{BTreeMap, BTreeSet};

use crate::ads::{AdsPlatform, InsightsQuery};
use crate::config::{LoopConfig, Sabotage};
use crate::envelope::judge;
use crate::estimator::estimate;
use crate::ids::{AdId, IdempotencyKey};
use crate::policy::propose_kills;
use crate::probe::{Probe, Site};
use crate::store::{IntentOp, NewIntent, NewJob, Store, Task};
use crate::time::{Clock, Timestamp};
use crate::worker::{Attempt, JobError, Ports};

/// Pages read per tick at most; a platform that pages forever is an error.
pub const MAX_PAGES: u32 = 1_000;

/// Priority of kill jobs: ahead of ticks.
pub const KILL_PRIORITY: i16 = 0;

pub async fn run<S: Store, A: AdsPlatform, C: Clock, P: Probe>(
    ports: &Ports<S, A, C, P>,
    cfg: &LoopConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
    slot: Timestamp,
) -> Result<(), JobError> {
    sense(ports, cfg, attempt, slot).await?;
    decide(ports, cfg, sabotage, attempt).await
}

/// Sensor: every page of insights since `slot - lookback`, upserted into the
/// spend ledger page by page.
async fn sense<S: Store, A: AdsPlatform, C: Clock, P: Probe>(
    ports: &Ports<S, A, C, P>,
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
        ports.probe.reached(Site::TickAfterPage, "tick").await;
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => return Ok(()),
        }
    }
    Err(JobError::Permanent(format!("insights paging exceeded {MAX_PAGES} pages")))
}

async fn decide<S: Store, A: AdsPlatform, C: Clock, P: Probe>(
    ports: &Ports<S, A, C, P>,
    cfg: &LoopConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
) -> Result<(), JobError> {
    let now = ports.clock.now();
    let rows = ports.store.spend_ledger(now - cfg.estimate_window).await?;
    let intents: BTreeMap<IdempotencyKey, _> =
        ports.store.intents().await?.into_iter().map(|i| (i.key.clone(), i)).collect();
    let estimates = estimate(&rows, now, &cfg.estimator).map_err(|e| JobError::Permanent(e.to_string()))?;
    let settled: BTreeSet<AdId> = intents.values().map(|i| i.ad.clone()).collect();
    let proposals = propose_kills(&estimates, &cfg.kill_rule, &settled);
    let verdicts = judge(&proposals, &intents, estimates.len(), &cfg.envelope, now);

    let mut batch = attempt.batch();
    for (verdict, proposal) in verdicts.iter().zip(&proposals) {
        if !verdict.approved() {
            continue;
        }
        if sabotage != Sabotage::SkipIntent {
            batch.intents.push(IntentOp::Open(NewIntent {
                key: verdict.key.clone(),
                ad: verdict.ad.clone(),
                evidence: proposal.evidence.clone(),
                verdict: verdict.clone(),
            }));
        }
        batch.enqueue.push(kill_job(&verdict.key, &verdict.ad, now));
    }
    // Recovery: every intent without a commit gets a live kill job (the job's
    // idempotency key makes this a no-op when one exists).
    for intent in intents.values().filter(|i| !i.phase.is_final()) {
        batch.enqueue.push(kill_job(&intent.key, &intent.ad, now));
    }
    batch.verdicts = verdicts;
    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    ports.probe.reached(Site::TickAfterDecide, "tick").await;
    Ok(())
}

pub fn kill_job(key: &IdempotencyKey, ad: &AdId, now: Timestamp) -> NewJob {
    NewJob::new(&Task::KillAd { key: key.clone(), ad: ad.clone() }, KILL_PRIORITY, now, Some(key.clone()))
}
