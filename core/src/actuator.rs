//! The actuator: the three-phase ad kill.
//!
//! 1. **intended**: written by the tick before anything leaves the process;
//! 2. **applied**: the pause call succeeded, or a read-back after an unknown
//!    outcome found the ad stopped;
//! 3. **committed**: a read-back confirmed the ad is stopped; the store writes
//!    the action-ledger row in the same operation.
//!
//! The job reads the intent's phase from the store and takes the next step,
//! so a crash anywhere resumes from the last written phase. The transitions
//! are a pure function ([`next_step`], [`after_pause`], [`after_read_back`]);
//! this module's async code only carries them out.

use crate::ads::{AdStatus, AdsError, AdsPlatform};
use crate::config::{LoopConfig, Sabotage};
use crate::envelope::{EnvelopeConfig, may_attempt};
use crate::ids::{AdId, IdempotencyKey};
use crate::probe::{Probe, Site};
use crate::store::{Intent, IntentOp, IntentPhase, NewIntent, Store};
use crate::time::Clock;
use crate::worker::{Attempt, JobError, Ports};

/// Steps one kill job takes at most before it yields (and retries later).
pub const MAX_STEPS_PER_ATTEMPT: u32 = 8;

/// What to do next for an intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Done,
    /// The attempt cap is reached without a commit: stop and flag it.
    Abandon,
    Pause,
    ReadBack,
    /// Sabotage only: commit on the pause call's word.
    CommitBlind,
}

pub fn next_step(intent: &Intent, env: &EnvelopeConfig, sabotage: Sabotage) -> Step {
    match intent.phase {
        IntentPhase::Committed | IntentPhase::Abandoned => Step::Done,
        IntentPhase::Intended if !may_attempt(intent, env) => Step::Abandon,
        IntentPhase::Intended => Step::Pause,
        IntentPhase::Applied if sabotage == Sabotage::SkipReadBack => Step::CommitBlind,
        IntentPhase::Applied => Step::ReadBack,
    }
}

/// What a pause call's result means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PauseOutcome {
    /// Move to applied (counting the attempt).
    Applied,
    /// It may or may not have happened: read back before calling again.
    Unknown,
    /// It did not happen: count the attempt and retry later.
    Failed(JobError),
    /// Rate limited: it did not happen; wait as told, without counting.
    Throttled(JobError),
}

pub fn after_pause(result: Result<(), AdsError>) -> PauseOutcome {
    match result {
        Ok(()) => PauseOutcome::Applied,
        Err(e) if e.outcome_unknown() => PauseOutcome::Unknown,
        Err(e @ AdsError::RateLimited { .. }) => PauseOutcome::Throttled(e.into()),
        Err(e) => PauseOutcome::Failed(e.into()),
    }
}

/// The phase a read-back moves an applied intent to.
pub fn after_read_back(status: &AdStatus) -> IntentPhase {
    if status.is_stopped() { IntentPhase::Committed } else { IntentPhase::Intended }
}

fn advance(key: &IdempotencyKey, from: IntentPhase, to: IntentPhase, count: bool, cause: String) -> IntentOp {
    IntentOp::Advance { key: key.clone(), from, to, count_attempt: count, cause }
}

pub async fn run_kill<S: Store, A: AdsPlatform, C: Clock, P: Probe>(
    ports: &Ports<S, A, C, P>,
    cfg: &LoopConfig,
    sabotage: Sabotage,
    attempt: &mut Attempt,
    key: &IdempotencyKey,
    ad: &AdId,
) -> Result<(), JobError> {
    for _ in 0..MAX_STEPS_PER_ATTEMPT {
        let Some(intent) = ports.store.intent(key).await? else {
            if sabotage == Sabotage::SkipIntent {
                return kill_without_intent(ports, attempt, key, ad).await;
            }
            return Err(JobError::Permanent(format!("no intent {key}: nothing to drive")));
        };
        let op = match next_step(&intent, &cfg.envelope, sabotage) {
            Step::Done => return Ok(()),
            Step::Abandon => advance(key, IntentPhase::Intended, IntentPhase::Abandoned, false, abandon_cause(&intent)),
            Step::Pause => match pause(ports, attempt, &intent).await {
                Ok(op) => op,
                Err(e) => return Err(e),
            },
            Step::ReadBack => {
                // Platforms are eventually consistent: a read-back soon after
                // a successful pause may still say ACTIVE. Re-read over the
                // confirmation window before concluding the pause did not
                // happen (and pausing again).
                let mut status = read_back(ports, attempt, ad).await?;
                while !status.is_stopped() && ports.clock.now().since(intent.updated_at) < cfg.readback_confirm {
                    ports.clock.sleep(cfg.readback_poll).await;
                    status = read_back(ports, attempt, ad).await?;
                }
                let to = after_read_back(&status);
                advance(key, IntentPhase::Applied, to, false, format!("read-back: {status:?}"))
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
            ports.probe.reached(Site::KillAfterApplied, ad.as_str()).await;
        }
    }
    Err(JobError::RetryAfter { wait: crate::time::Millis(0), why: format!("{key}: step budget used") })
}

fn abandon_cause(intent: &Intent) -> String {
    format!("attempt cap reached after {} calls", intent.attempts)
}

/// Calls pause and returns the intent op its outcome calls for; or an error
/// after writing what must be written (the attempt count).
async fn pause<S: Store, A: AdsPlatform, C: Clock, P: Probe>(
    ports: &Ports<S, A, C, P>,
    attempt: &mut Attempt,
    intent: &Intent,
) -> Result<IntentOp, JobError> {
    let key = &intent.key;
    ports.probe.reached(Site::KillBeforePause, intent.ad.as_str()).await;
    let started = ports.clock.now();
    let result = ports.ads.pause(&intent.ad, key).await;
    attempt.record_call(started, "pause", &result);
    ports.probe.reached(Site::KillAfterPause, intent.ad.as_str()).await;
    match after_pause(result) {
        PauseOutcome::Applied => {
            Ok(advance(key, IntentPhase::Intended, IntentPhase::Applied, true, "pause call succeeded".into()))
        }
        PauseOutcome::Unknown => {
            let status = read_back(ports, attempt, &intent.ad).await;
            match status {
                Ok(s) if s.is_stopped() => Ok(advance(
                    key,
                    IntentPhase::Intended,
                    IntentPhase::Applied,
                    true,
                    format!("pause outcome unknown; read-back {s:?}"),
                )),
                _ => {
                    count_attempt(ports, attempt, key, "pause outcome unknown; not stopped").await?;
                    Err(JobError::Ads(AdsError::Timeout))
                }
            }
        }
        PauseOutcome::Failed(e) => {
            count_attempt(ports, attempt, key, &e.to_string()).await?;
            Err(e)
        }
        PauseOutcome::Throttled(e) => Err(e),
    }
}

async fn count_attempt<S: Store, A, C: Clock, P>(
    ports: &Ports<S, A, C, P>,
    attempt: &mut Attempt,
    key: &IdempotencyKey,
    cause: &str,
) -> Result<(), JobError> {
    let mut batch = attempt.batch();
    batch.intents.push(IntentOp::CountAttempt { key: key.clone(), cause: cause.into() });
    ports.store.write(&attempt.lease, batch, ports.clock.now()).await?;
    Ok(())
}

async fn read_back<S, A: AdsPlatform, C: Clock, P: Probe>(
    ports: &Ports<S, A, C, P>,
    attempt: &mut Attempt,
    ad: &AdId,
) -> Result<AdStatus, JobError> {
    let started = ports.clock.now();
    let status = ports.ads.status(ad).await;
    attempt.record_call(started, "status", &status);
    ports.probe.reached(Site::KillAfterReadBack, ad.as_str()).await;
    Ok(status?)
}

/// Sabotage::SkipIntent: act first, write the intent afterwards. Exists only
/// so that the checker can be shown to catch the missing write-ahead.
async fn kill_without_intent<S: Store, A: AdsPlatform, C: Clock, P: Probe>(
    ports: &Ports<S, A, C, P>,
    attempt: &mut Attempt,
    key: &IdempotencyKey,
    ad: &AdId,
) -> Result<(), JobError> {
    let started = ports.clock.now();
    let result = ports.ads.pause(ad, key).await;
    attempt.record_call(started, "pause", &result);
    ports.probe.reached(Site::KillAfterPause, ad.as_str()).await;
    result?;
    let status = read_back(ports, attempt, ad).await?;
    if !status.is_stopped() {
        return Err(JobError::Ads(AdsError::Timeout));
    }
    let now = ports.clock.now();
    let evidence = crate::estimator::AdEstimate {
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
        IntentOp::Open(NewIntent { key: key.clone(), ad: ad.clone(), evidence, verdict }),
        advance(key, IntentPhase::Intended, IntentPhase::Applied, true, "sabotage".into()),
        advance(key, IntentPhase::Applied, IntentPhase::Committed, false, "sabotage".into()),
    ];
    ports.store.write(&attempt.lease, batch, now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ads::AdsError;
    use crate::time::Millis;

    #[test]
    fn pause_outcome_table() {
        assert_eq!(after_pause(Ok(())), PauseOutcome::Applied);
        assert_eq!(after_pause(Err(AdsError::Timeout)), PauseOutcome::Unknown);
        assert!(matches!(
            after_pause(Err(AdsError::RateLimited { code: 17, retry_after: Millis(5) })),
            PauseOutcome::Throttled(_)
        ));
        assert!(matches!(
            after_pause(Err(AdsError::Permanent { code: 190, message: "token".into() })),
            PauseOutcome::Failed(_)
        ));
    }

    #[test]
    fn read_back_table() {
        assert_eq!(after_read_back(&AdStatus::Paused), IntentPhase::Committed);
        assert_eq!(after_read_back(&AdStatus::Other("CAMPAIGN_PAUSED".into())), IntentPhase::Committed);
        assert_eq!(after_read_back(&AdStatus::Active), IntentPhase::Intended, "ack without effect: pause again");
    }
}
