//! The act job: drives one write-ahead intent, of any action, from its
//! stored phase to its commit (or abandonment), one step at a time.
//!
//! The job reads the intent's phase from the store and takes the next step
//! ([`next_step`]), so a crash anywhere resumes from the last written phase.
//! The action's own [`Effect`] makes the call and the read-back; everything
//! else (attempt counting, the read-back confirmation window, the phases'
//! writes and their event rows) is the same for every action.

use crate::act::escalate::{NodeEffect, escalation_key, next_level, pause_intent, superseded};
use crate::act::intent::{Action, Evidence, Intent, IntentOp, IntentPhase, NewIntent};
use crate::act::kill::KillEffect;
use crate::act::machine::{CallOutcome, Effect, Found, Step, after_call, after_read_back, next_step};
use crate::act::payout::PayoutEffect;
use crate::act::refund::RefundEffect;
use crate::config::{LoopConfig, Sabotage};
use crate::ids::{AdId, IdempotencyKey};
use crate::probe::{Probe, Site};
use crate::schedule::task::Task;
use crate::sense::ads::{AdsError, AdsPlatform, Level};
use crate::store::{IntentFilter, NewJob, Store};
use crate::time::{Clock, Millis, Timestamp};

use super::{Attempt, JobError, Ports};

/// Steps one act job takes at most before it yields (and retries later).
pub const MAX_STEPS_PER_ATTEMPT: u32 = 8;
// An attempt that meets no fault gets an intent from intended to committed
// (call, read-back, then the final read that finds it done) in one go.
const _: () = assert!(MAX_STEPS_PER_ATTEMPT >= 3);

/// Drives the intent `key` on, step by step: reads it, takes the next step
/// with its action's effect, until it is final or the step budget is used.
/// `None`: no such intent.
pub async fn run<
    S: Store,
    A: AdsPlatform,
    C: Clock,
    P: Probe,
    B: crate::sense::bank::Bank + crate::sense::shop::Shop + crate::sense::inbox::Inbox,
>(
    ports: &Ports<S, A, C, P, B>,
    cfg: &LoopConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
    key: &IdempotencyKey,
) -> Result<Option<()>, JobError> {
    for n in 0..MAX_STEPS_PER_ATTEMPT {
        let Some(intent) = ports.store.intent(key).await? else {
            if n == 0 {
                return Ok(None);
            }
            return Err(JobError::Permanent(format!("intent {key} vanished while driven")));
        };
        let step = match &intent.action {
            Action::KillAd { ad } => {
                if let Some(after) = cfg.escalate_after
                    && sabotage != Sabotage::NoEscalation
                {
                    escalate(ports, attempt, &intent, ad, after).await?;
                }
                step(ports, &ports.ads, cfg, sabotage, attempt, &intent, &KillEffect { ad: ad.clone() }).await?
            }
            Action::PauseNode { node, .. } => {
                let effect = NodeEffect::<true> { node: node.clone() };
                step(ports, &ports.ads, cfg, sabotage, attempt, &intent, &effect).await?
            }
            Action::ResumeNode { node, pauses, .. } => {
                // Before each call: another pause of the node may have come
                // since this resume was planned; then it must not be made.
                if intent.phase == IntentPhase::Intended
                    && let Some(newer) =
                        superseded(&ports.store.brand_intents(&intent.brand, &node_family()).await?, node, pauses)
                {
                    let cause = format!("superseded: {newer} paused {} {} again", node.level.as_str(), node.id);
                    let mut batch = attempt.batch();
                    batch.intents.push(advance(key, IntentPhase::Intended, IntentPhase::Abandoned, false, cause));
                    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
                    return Ok(Some(()));
                }
                let effect = NodeEffect::<false> { node: node.clone() };
                step(ports, &ports.ads, cfg, sabotage, attempt, &intent, &effect).await?
            }
            Action::Payout { order } => {
                let mut effect = PayoutEffect::new(&intent.key, order, intent.opened_at);
                if sabotage == Sabotage::FreshRequestId {
                    let fresh = IdempotencyKey::new(format!("{key}#{}", intent.attempts));
                    effect.payment.request_id = crate::act::payout::request_id(&fresh);
                }
                step(ports, &ports.bank, cfg, sabotage, attempt, &intent, &effect).await?
            }
            Action::Refund { order } => {
                let effect = if sabotage == Sabotage::FreshRefundKey {
                    RefundEffect::new(&IdempotencyKey::new(format!("{key}#{}", intent.attempts)), order)
                } else {
                    RefundEffect::new(&intent.key, order)
                };
                step(ports, &ports.bank, cfg, sabotage, attempt, &intent, &effect).await?
            }
            Action::Reply { order } => {
                let effect = if sabotage == Sabotage::FreshReplyMarker {
                    crate::act::reply::ReplyEffect::new(
                        &IdempotencyKey::new(format!("{key}#{}", intent.attempts)),
                        order,
                    )
                } else {
                    crate::act::reply::ReplyEffect::new(&intent.key, order)
                };
                step(ports, &ports.bank, cfg, sabotage, attempt, &intent, &effect).await?
            }
        };
        if step == Step::Done {
            return Ok(Some(()));
        }
    }
    Err(JobError::RetryAfter { wait: Millis(0), why: format!("{key}: step budget used") })
}

/// The act job of an intent: one live job per intent (its key is the job's
/// idempotency key), ahead of ticks.
/// Kills, payouts and refunds are claimed by the act pool, escalations by
/// their own.
pub fn job_of(intent: &Intent, now: Timestamp) -> NewJob {
    let key = intent.key.clone();
    let (task, priority) = match &intent.action {
        Action::KillAd { ad } => (Task::KillAd { key, ad: ad.clone() }, super::tick::KILL_PRIORITY),
        Action::Payout { .. } => (Task::Payout { key }, PAYMENT_PRIORITY),
        Action::Refund { .. } => (Task::Refund { key }, PAYMENT_PRIORITY),
        Action::Reply { .. } => (Task::Reply { key }, PAYMENT_PRIORITY),
        Action::PauseNode { .. } | Action::ResumeNode { .. } => (Task::Escalate { key }, super::tick::KILL_PRIORITY),
    };
    act_job(task, priority, &intent.key, now).for_brand(&intent.brand)
}

/// Payouts and refunds wait behind the kills of their brand in the act
/// pool, oldest first among themselves: a kill's minute of delay leaks ad
/// spend, a payment's costs nothing (found by the month: 397 payouts of an
/// hour's payables held a kill 89 s, past its 75 s deadline). Kills are
/// few, so the payments are never starved.
pub const PAYMENT_PRIORITY: i16 = 1;

/// The act job of `task` on the intent `key`.
fn act_job(task: Task, priority: i16, key: &IdempotencyKey, now: Timestamp) -> NewJob {
    NewJob::new(&task, priority, now, Some(key.clone()))
}

/// The act job of an escalation intent (claimed by the escalation pool).
pub fn escalate_job(key: &IdempotencyKey, now: Timestamp) -> NewJob {
    act_job(Task::Escalate { key: key.clone() }, super::tick::KILL_PRIORITY, key, now)
}

/// A kill whose ad has not stopped itself `after` its intent: opens the
/// pause of the next level up ([`next_level`]: the ad set, then the
/// campaign) with its act job, in one write. Looks only once overdue, so a
/// kill that commits in time costs nothing.
async fn escalate<S: Store, A: AdsPlatform, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
    kill: &Intent,
    ad: &AdId,
    after: Millis,
) -> Result<(), JobError> {
    let now = ports.clock.now();
    if kill.phase.is_final() || now.since(kill.opened_at) < after {
        return Ok(());
    }
    let adset = ports.store.intent(&escalation_key(&kill.key, Level::AdSet)).await?;
    let campaign = ports.store.intent(&escalation_key(&kill.key, Level::Campaign)).await?;
    // The ad set's pause committed, yet the kill is still open at twice
    // `after`: look whether it still holds the ad (someone may have
    // resumed the ad set since).
    let mut holds = true;
    if campaign.is_none()
        && adset.as_ref().is_some_and(|a| a.phase == IntentPhase::Committed)
        && now.since(kill.opened_at).0 >= after.0.saturating_mul(2)
    {
        let started = ports.clock.now();
        let status = ports.ads.status(ad).await;
        attempt.record_call(started, "status", &status);
        holds = !matches!(status, Ok(crate::sense::ads::AdStatus::Active));
    }
    let Some(level) = next_level(kill, adset.as_ref(), campaign.as_ref(), holds, now, after) else {
        return Ok(());
    };
    let parents = ports.ads.parents(ad).await;
    attempt.record_call(now, "parents", &parents);
    let new = pause_intent(kill, ad, parents?.node(level), ports.clock.now());
    let mut batch = attempt.batch();
    batch.enqueue.push(escalate_job(&new.key, now).for_brand(&kill.brand));
    batch.intents.push(IntentOp::Open(new));
    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    Ok(())
}

/// The intents a resume's check and the tick's kill chain read: the
/// brand's kills, pauses and resumes (not its payouts and refunds, whose
/// jobs read their own), and with [`IntentFilter::and_open`] whatever else
/// is open.
pub fn node_family() -> IntentFilter {
    IntentFilter::kinds(&[Action::KILL_AD, Action::PAUSE_NODE, Action::RESUME_NODE])
}

/// An act job for every intent without a final phase (each job's
/// idempotency key makes it a no-op where one is live): how the tick and
/// the payables job re-drive intents orphaned by a crash.
pub fn jobs_of_open<'a>(intents: impl Iterator<Item = &'a Intent>, now: Timestamp) -> Vec<NewJob> {
    intents.filter(|i| !i.phase.is_final()).map(|i| job_of(i, now)).collect()
}

/// A live act job for each of `intents` without a final phase, in one
/// write (each job's idempotency key makes it a no-op where one is live):
/// how the payables and refund jobs pick up intents opened by a run that
/// died before their jobs were written.
pub async fn redrive<'a, S: Store, A, C: Clock, P: Probe, B>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
    intents: impl Iterator<Item = &'a Intent>,
) -> Result<(), JobError> {
    let now = ports.clock.now();
    let jobs = jobs_of_open(intents, now);
    if jobs.is_empty() {
        return Ok(());
    }
    let mut batch = attempt.batch();
    batch.enqueue = jobs;
    ports.store.write(&attempt.lease, batch, now).await?;
    Ok(())
}

fn advance(key: &IdempotencyKey, from: IntentPhase, to: IntentPhase, count: bool, cause: String) -> IntentOp {
    IntentOp::Advance { key: key.clone(), from, to, count_attempt: count, cause, amount: None }
}

/// One step of the machine for one action's effect: the step it took.
pub async fn step<S: Store, A, C: Clock, P: Probe, T, E: Effect<T>, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    platform: &T,
    cfg: &LoopConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
    intent: &Intent,
    effect: &E,
) -> Result<Step, JobError>
where
    JobError: From<E::Error>,
{
    let key = &intent.key;
    let step = next_step(intent, cfg.envelope.max_attempts, sabotage);
    let op = match step {
        Step::Done => return Ok(Step::Done),
        Step::Abandon => {
            // The cap is reached, but a call may have been made under this
            // key (a crash between the call and the write of `applied`):
            // look before giving up, and never abandon what happened.
            let seen = read_back(ports, platform, attempt, effect).await?;
            match seen.found {
                Found::Effected | Found::InFlight => advance(
                    key,
                    IntentPhase::Intended,
                    IntentPhase::Applied,
                    false,
                    format!("attempt cap reached, but the read-back shows {}: applied", seen.detail),
                ),
                Found::Absent | Found::Failed => advance(
                    key,
                    IntentPhase::Intended,
                    IntentPhase::Abandoned,
                    false,
                    format!("attempt cap reached after {} calls; read-back: {}", intent.attempts, seen.detail),
                ),
            }
        }
        Step::Call => call(ports, platform, attempt, intent, effect).await?,
        Step::ReadBack => {
            // Platforms are eventually consistent: a read-back soon after
            // a successful call may not show its effect yet. Re-read over
            // the confirmation window before concluding the call did not
            // happen (and calling again).
            let mut seen = read_back(ports, platform, attempt, effect).await?;
            while matches!(seen.found, Found::Absent | Found::InFlight)
                && ports.clock.now().since(intent.updated_at) < cfg.readback_confirm
            {
                ports.clock.sleep(cfg.readback_poll).await;
                seen = read_back(ports, platform, attempt, effect).await?;
            }
            let Some(to) = after_read_back(&seen) else {
                // On its way (a payment pending): nothing to write; read
                // again later, without spending an attempt.
                let batch = attempt.batch();
                if !batch.is_empty() {
                    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
                }
                return Err(JobError::RetryAfter {
                    wait: cfg.readback_poll,
                    why: format!("{key}: {} in flight ({})", E::CALL, seen.detail),
                });
            };
            IntentOp::Advance {
                key: key.clone(),
                from: IntentPhase::Applied,
                to,
                count_attempt: false,
                cause: format!("read-back: {}", seen.detail),
                amount: seen.amount.filter(|_| to == IntentPhase::Committed),
            }
        }
        Step::CommitBlind => {
            advance(key, IntentPhase::Applied, IntentPhase::Committed, false, "sabotage: no read-back".into())
        }
    };
    let now_applied = matches!(op, IntentOp::Advance { to: IntentPhase::Applied, .. });
    let mut batch = attempt.batch();
    batch.intents.push(op);
    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    if now_applied {
        ports.probe.reached(E::SITES.after_applied, effect.subject()).await;
    }
    Ok(step)
}

/// Makes the call and returns the intent op its outcome calls for; or an
/// error after writing what must be written (the attempt count).
async fn call<S: Store, A, C: Clock, P: Probe, T, E: Effect<T>, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    platform: &T,
    attempt: &mut Attempt,
    intent: &Intent,
    effect: &E,
) -> Result<IntentOp, JobError>
where
    JobError: From<E::Error>,
{
    let key = &intent.key;
    ports.probe.reached(E::SITES.before_call, effect.subject()).await;
    let started = ports.clock.now();
    let result = effect.call(platform, key).await;
    attempt.record(started, E::VENDOR, E::CALL, result.is_ok());
    ports.probe.reached(E::SITES.after_call, effect.subject()).await;
    match after_call(result) {
        CallOutcome::Applied => {
            Ok(advance(key, IntentPhase::Intended, IntentPhase::Applied, true, format!("{} call succeeded", E::CALL)))
        }
        CallOutcome::Unknown(_) => match read_back(ports, platform, attempt, effect).await {
            // It exists (done or on its way): applied; the read-back step decides.
            Ok(seen) if matches!(seen.found, Found::Effected | Found::InFlight) => Ok(advance(
                key,
                IntentPhase::Intended,
                IntentPhase::Applied,
                true,
                format!("{} outcome unknown; read-back {}", E::CALL, seen.detail),
            )),
            // It exists and was refused for good: give up at once.
            Ok(seen) if seen.found == Found::Failed => Ok(advance(
                key,
                IntentPhase::Intended,
                IntentPhase::Abandoned,
                true,
                format!("{} outcome unknown; read-back {}: refused for good", E::CALL, seen.detail),
            )),
            _ => {
                count_attempt(ports, attempt, key, &format!("{} outcome unknown; no effect seen", E::CALL)).await?;
                Err(E::unconfirmed().into())
            }
        },
        CallOutcome::Failed(e) => {
            count_attempt(ports, attempt, key, &e.to_string()).await?;
            Err(e.into())
        }
        CallOutcome::Throttled(e) => Err(e.into()),
    }
}

pub(crate) async fn count_attempt<S: Store, A, C: Clock, P, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
    key: &IdempotencyKey,
    cause: &str,
) -> Result<(), JobError> {
    let mut batch = attempt.batch();
    batch.intents.push(IntentOp::CountAttempt { key: key.clone(), cause: cause.into() });
    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    Ok(())
}

async fn read_back<S, A, C: Clock, P: Probe, T, E: Effect<T>, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    platform: &T,
    attempt: &mut Attempt,
    effect: &E,
) -> Result<crate::act::machine::Seen, JobError>
where
    JobError: From<E::Error>,
{
    let started = ports.clock.now();
    let seen = effect.read_back(platform).await;
    attempt.record(started, E::VENDOR, E::READ, seen.is_ok());
    ports.probe.reached(E::SITES.after_read_back, effect.subject()).await;
    Ok(seen?)
}

/// Sabotage::SkipIntent: act first, write the intent afterwards. Exists only
/// so that the checker can be shown to catch the missing write-ahead.
pub(crate) async fn kill_without_intent<S: Store, A: AdsPlatform, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    attempt: &mut Attempt,
    key: &IdempotencyKey,
    ad: &AdId,
) -> Result<(), JobError> {
    // The kill's own effect, without the machine around it.
    let effect = KillEffect { ad: ad.clone() };
    let started = ports.clock.now();
    let result = Effect::<A>::call(&effect, &ports.ads, key).await;
    attempt.record_call(started, "pause", &result);
    ports.probe.reached(Site::KillAfterPause, ad.as_str()).await;
    result?;
    if !read_back(ports, &ports.ads, attempt, &effect).await?.effected() {
        return Err(JobError::Ads(AdsError::Timeout));
    }
    let now = ports.clock.now();
    let evidence = crate::estimate::estimator::AdEstimate {
        ad: ad.clone(),
        first_bucket: now,
        matured_until: now,
        matured_spend: crate::money::Money::zero(attempt.currency),
        matured_purchases: 0,
        matured_revenue: crate::money::Money::zero(attempt.currency),
        in_learning: false,
    };
    let verdict = crate::envelope::Verdict {
        ad: ad.clone(),
        key: key.clone(),
        decision: crate::envelope::Decision::Approve,
        at: now,
        reason: "sabotage: written after the fact".into(),
    };
    let mut batch = attempt.batch();
    batch.intents = vec![
        IntentOp::Open(NewIntent {
            key: key.clone(),
            action: Action::KillAd { ad: ad.clone() },
            evidence: Evidence::Kill(evidence),
            verdict,
            reserve: None,
        }),
        advance(key, IntentPhase::Intended, IntentPhase::Applied, true, "sabotage".into()),
        advance(key, IntentPhase::Applied, IntentPhase::Committed, false, "sabotage".into()),
    ];
    ports.store.write(&attempt.lease, batch, now).await?;
    Ok(())
}
