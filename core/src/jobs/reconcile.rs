//! Webhooks are hints, never truth. A status webhook says "ad X is now
//! PAUSED" (or ACTIVE); platforms send them late, twice, out of order, and
//! sometimes wrongly. So a webhook changes no state by itself: accepting one
//! enqueues a reconcile job for the ad (one live job per ad: a burst of
//! duplicates collapses into it), and that job reads the ad's status back
//! from the platform. Only the read-back moves the ad's kill intent, and only
//! forward (`intended`/`applied` → `committed` when the ad is stopped). A
//! webhook that is right makes a kill commit sooner than its job's next
//! retry; one that is wrong costs a read-back.

use super::{Attempt, JobError, Ports};
use crate::act::intent::{IntentOp, IntentPhase};
use crate::config::Sabotage;
use crate::envelope::kill_key;
use crate::ids::{AdId, IdempotencyKey};
use crate::probe::Probe;
use crate::schedule::task::Task;
use crate::sense::ads::{AdStatus, AdsPlatform, StatusHint};
use crate::store::{Enqueued, NewJob, Store, StoreError};
use crate::time::{Clock, Timestamp};

/// Reconcile jobs run ahead of ticks, with kills.
pub const RECONCILE_PRIORITY: i16 = 0;

/// The reconcile job a hint asks for: keyed per ad, so duplicates and bursts
/// collapse into the one live job.
pub fn reconcile_job(hint: &StatusHint, now: Timestamp) -> NewJob {
    let task = Task::ReconcileAd { ad: hint.ad.clone(), claimed: hint.status.clone() };
    NewJob::new(&task, RECONCILE_PRIORITY, now, Some(IdempotencyKey::new(format!("reconcile/{}", hint.ad))))
}

/// Accepts a hint: enqueues its reconcile job (or finds the live one) for
/// the brand whose kill intent names the ad: the read-back goes through that
/// brand's account. An ad no intent names gets a job of the default brand,
/// which finds nothing to reconcile.
pub async fn accept<S: Store>(store: &S, hint: &StatusHint, now: Timestamp) -> Result<Enqueued, StoreError> {
    let brand = store.intent(&kill_key(&hint.ad)).await?.map(|i| i.brand).unwrap_or_default();
    store.enqueue(reconcile_job(hint, now).for_brand(&brand), now).await
}

/// What a read-back means for an intent a webhook named: the ops that move
/// it forward, or none. Never backward: an ACTIVE read-back is the kill
/// job's business (it pauses again), not the reconciler's.
pub fn reconcile_ops(phase: IntentPhase, key: &IdempotencyKey, read_back: &AdStatus) -> Vec<IntentOp> {
    if !read_back.is_stopped() {
        return Vec::new();
    }
    let step = |from, to| IntentOp::Advance {
        key: key.clone(),
        from,
        to,
        count_attempt: false,
        cause: format!("webhook reconcile: read-back {read_back:?}"),
        amount: None,
    };
    match phase {
        IntentPhase::Intended => {
            vec![step(IntentPhase::Intended, IntentPhase::Applied), step(IntentPhase::Applied, IntentPhase::Committed)]
        }
        IntentPhase::Applied => vec![step(IntentPhase::Applied, IntentPhase::Committed)],
        IntentPhase::Committed | IntentPhase::Abandoned => Vec::new(),
    }
}

/// The reconcile job: read the ad back, and move its kill intent forward if
/// the read-back says it stopped.
pub async fn run_reconcile<S: Store, A: AdsPlatform, C: Clock, P: Probe, B: crate::sense::bank::Bank>(
    ports: &Ports<S, A, C, P, B>,
    sabotage: Sabotage,
    attempt: &mut Attempt,
    ad: &AdId,
    claimed: &str,
) -> Result<(), JobError> {
    let key = kill_key(ad);
    let Some(intent) = ports.store.intent(&key).await?.filter(|i| i.brand == attempt.brand) else {
        // Not an ad this brand acted on: nothing of ours to reconcile.
        return Ok(());
    };
    if intent.phase.is_final() {
        return Ok(());
    }
    let status = if sabotage == Sabotage::TrustWebhooks {
        // Sabotage only: take the webhook's word for it.
        if claimed == "PAUSED" { AdStatus::Paused } else { AdStatus::Active }
    } else {
        let started = ports.clock.now();
        let status = ports.ads.status(ad).await;
        attempt.record_call(started, "status", &status);
        status?
    };
    let ops = reconcile_ops(intent.phase, &key, &status);
    if ops.is_empty() {
        // Nothing to move; the read-back's cost row goes out with the job's finish.
        return Ok(());
    }
    let mut batch = attempt.batch();
    batch.intents = ops;
    match ports.store.write(&attempt.lease, batch, ports.clock.now()).await {
        // The kill job moved the intent meanwhile: it is in good hands.
        Err(StoreError::Conflict { .. }) => Ok(()),
        other => other.map(|_| ()).map_err(JobError::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stopped_read_back_moves_an_intent_and_only_forward() {
        let key = IdempotencyKey::new("kill/ad-1");
        assert!(reconcile_ops(IntentPhase::Applied, &key, &AdStatus::Active).is_empty());
        assert!(reconcile_ops(IntentPhase::Intended, &key, &AdStatus::Active).is_empty());
        assert!(reconcile_ops(IntentPhase::Committed, &key, &AdStatus::Paused).is_empty());
        assert!(reconcile_ops(IntentPhase::Abandoned, &key, &AdStatus::Paused).is_empty());
        let to = |ops: Vec<IntentOp>| -> Vec<IntentPhase> {
            ops.into_iter()
                .map(|op| match op {
                    IntentOp::Advance { to, count_attempt: false, .. } => to,
                    other => panic!("unexpected {other:?}"),
                })
                .collect()
        };
        assert_eq!(to(reconcile_ops(IntentPhase::Applied, &key, &AdStatus::Paused)), vec![IntentPhase::Committed]);
        assert_eq!(
            to(reconcile_ops(IntentPhase::Intended, &key, &AdStatus::Other("ADSET_PAUSED".into()))),
            vec![IntentPhase::Applied, IntentPhase::Committed]
        );
    }

    #[test]
    fn duplicate_hints_ask_for_the_same_job() {
        let hint = StatusHint { ad: AdId::new("ad-1"), status: "PAUSED".into() };
        let other = StatusHint { ad: AdId::new("ad-1"), status: "ACTIVE".into() };
        let (a, b) = (reconcile_job(&hint, Timestamp(1)), reconcile_job(&other, Timestamp(2)));
        assert_eq!(a.idempotency_key, b.idempotency_key, "one live reconcile job per ad");
        assert_eq!(a.kind, "reconcile_ad");
    }
}
