//! Store semantics, written against the `Store` trait so that every store
//! (the MemStore here; the SQL stores later) can be held to the same cases.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use dlft_core::ads::InsightRow;
use dlft_core::envelope::{Decision, Verdict};
use dlft_core::estimator::AdEstimate;
use dlft_core::ids::{AdId, IdempotencyKey, Incarnation, WorkerId};
use dlft_core::money::{Currency, Money};
use dlft_core::store::*;
use dlft_core::telemetry::replay;
use dlft_core::time::{Millis, Timestamp};

/// Drives a future that never waits (the MemStore's are ready at once).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("store future was not ready"),
    }
}

fn job(task: Task, key: Option<&str>) -> NewJob {
    NewJob { task, priority: 0, run_at: Timestamp(0), idempotency_key: key.map(IdempotencyKey::new) }
}

fn tick(slot: u64) -> Task {
    Task::PollInsights { slot: Timestamp(slot) }
}

fn req(worker: &str, inc: Incarnation, limit: u32) -> ClaimRequest {
    ClaimRequest {
        worker: WorkerId::new(worker),
        incarnation: inc,
        kinds: JobKind::ALL.to_vec(),
        limit,
        lease_for: Millis(1_000),
    }
}

fn new_intent(ad: &str) -> NewIntent {
    let ad = AdId::new(ad);
    let key = IdempotencyKey::new(format!("kill/{ad}"));
    NewIntent {
        key: key.clone(),
        ad: ad.clone(),
        evidence: AdEstimate {
            ad: ad.clone(),
            first_bucket: Timestamp(0),
            matured_until: Timestamp(0),
            matured_spend: Money::new(9000, Currency::EUR),
            matured_purchases: 0,
            matured_revenue: Money::zero(Currency::EUR),
            in_learning: false,
        },
        verdict: Verdict { ad, key, decision: Decision::Approve, at: Timestamp(0), reason: String::new() },
    }
}

fn store() -> SharedMemStore {
    SharedMemStore::new()
}

#[test]
fn claims_are_exclusive_ordered_and_batched() {
    let s = store();
    let boot = block_on(s.boot(&WorkerId::new("w"), Timestamp(0))).unwrap();
    for i in 0..5 {
        let mut j = job(tick(i), None);
        j.priority = (5 - i) as i16; // later ones first
        block_on(s.enqueue(j, Timestamp(0))).unwrap();
    }
    let first = block_on(s.claim(&req("w", boot.incarnation, 3), Timestamp(1))).unwrap();
    let prios: Vec<i16> = first.iter().map(|c| c.job.priority).collect();
    assert_eq!(prios, vec![1, 2, 3], "lowest priority value first, batch of 3");
    let second = block_on(s.claim(&req("w", boot.incarnation, 10), Timestamp(1))).unwrap();
    assert_eq!(second.len(), 2, "no job is held twice");
    assert!(block_on(s.claim(&req("w", boot.incarnation, 10), Timestamp(1))).unwrap().is_empty());
}

#[test]
fn future_jobs_wait_for_run_at() {
    let s = store();
    let boot = block_on(s.boot(&WorkerId::new("w"), Timestamp(0))).unwrap();
    let mut j = job(tick(0), None);
    j.run_at = Timestamp(500);
    block_on(s.enqueue(j, Timestamp(0))).unwrap();
    assert!(block_on(s.claim(&req("w", boot.incarnation, 1), Timestamp(499))).unwrap().is_empty());
    assert_eq!(block_on(s.claim(&req("w", boot.incarnation, 1), Timestamp(500))).unwrap().len(), 1);
}

#[test]
fn expired_lease_is_reclaimed_and_late_writes_are_fenced() {
    let s = store();
    let a = block_on(s.boot(&WorkerId::new("a"), Timestamp(0))).unwrap();
    let b = block_on(s.boot(&WorkerId::new("b"), Timestamp(0))).unwrap();
    block_on(s.enqueue(job(tick(0), None), Timestamp(0))).unwrap();
    let old = block_on(s.claim(&req("a", a.incarnation, 1), Timestamp(0))).unwrap().remove(0);
    // Before expiry, nobody else gets it; a write extends the lease.
    assert!(block_on(s.claim(&req("b", b.incarnation, 1), Timestamp(999))).unwrap().is_empty());
    block_on(s.write(&old.lease, WriteBatch::default(), Timestamp(900))).unwrap();
    assert!(
        block_on(s.claim(&req("b", b.incarnation, 1), Timestamp(1_500))).unwrap().is_empty(),
        "heartbeat extended the lease"
    );
    let new = block_on(s.claim(&req("b", b.incarnation, 1), Timestamp(1_900))).unwrap().remove(0);
    assert_eq!(new.job.attempt, 2);
    assert_ne!(new.lease.token, old.lease.token);
    // The presumed-dead attempt wakes up: every write is refused.
    let late = block_on(s.write(&old.lease, WriteBatch::default(), Timestamp(2_000)));
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    let late = block_on(s.finish(&old.lease, Outcome::Completed, vec![], Timestamp(2_000)));
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    block_on(s.finish(&new.lease, Outcome::Completed, vec![], Timestamp(2_000))).unwrap();
}

#[test]
fn boot_releases_what_earlier_incarnations_held() {
    let s = store();
    let w = WorkerId::new("w");
    let first = block_on(s.boot(&w, Timestamp(0))).unwrap();
    block_on(s.enqueue(job(tick(0), None), Timestamp(0))).unwrap();
    let held = block_on(s.claim(&req("w", first.incarnation, 1), Timestamp(0))).unwrap().remove(0);
    let second = block_on(s.boot(&w, Timestamp(10))).unwrap();
    assert_eq!(second.released, vec![held.job.id]);
    assert!(second.incarnation > first.incarnation);
    // The old incarnation can no longer claim, nor write.
    assert!(block_on(s.claim(&req("w", first.incarnation, 1), Timestamp(10))).is_err());
    assert!(block_on(s.write(&held.lease, WriteBatch::default(), Timestamp(10))).is_err());
    let again = block_on(s.claim(&req("w", second.incarnation, 1), Timestamp(10))).unwrap();
    assert_eq!(again.len(), 1, "released immediately, not after the lease");
}

#[test]
fn idempotent_enqueue_and_slots_fire_once() {
    let s = store();
    let a = block_on(s.enqueue(job(tick(0), Some("k")), Timestamp(0))).unwrap();
    let b = block_on(s.enqueue(job(tick(0), Some("k")), Timestamp(0))).unwrap();
    assert!(matches!(a, Enqueued::Created(_)));
    assert_eq!(b, Enqueued::Duplicate(a.id()));
    assert!(block_on(s.fire_slot("tick", Timestamp(60), job(tick(60), None), Timestamp(0))).unwrap().is_some());
    assert!(block_on(s.fire_slot("tick", Timestamp(60), job(tick(60), None), Timestamp(1))).unwrap().is_none());
    assert!(block_on(s.fire_slot("tick", Timestamp(120), job(tick(120), None), Timestamp(1))).unwrap().is_some());
}

#[test]
fn retry_then_discard_keeps_error_history() {
    let s = store();
    let boot = block_on(s.boot(&WorkerId::new("w"), Timestamp(0))).unwrap();
    let id = block_on(s.enqueue(job(tick(0), None), Timestamp(0))).unwrap().id();
    let c = block_on(s.claim(&req("w", boot.incarnation, 1), Timestamp(0))).unwrap().remove(0);
    let retry = Outcome::Retry { at: Timestamp(100), error: "first".into() };
    block_on(s.finish(&c.lease, retry, vec![], Timestamp(1))).unwrap();
    assert!(block_on(s.claim(&req("w", boot.incarnation, 1), Timestamp(99))).unwrap().is_empty(), "backoff honoured");
    let c = block_on(s.claim(&req("w", boot.incarnation, 1), Timestamp(100))).unwrap().remove(0);
    block_on(s.finish(&c.lease, Outcome::Discard { error: "second".into() }, vec![], Timestamp(101))).unwrap();
    let snap = s.lock().snapshot();
    let j = snap.jobs.iter().find(|j| j.id == id).unwrap();
    assert_eq!(j.state, JobState::Discarded);
    assert_eq!(j.errors, vec!["first".to_string(), "second".to_string()]);
}

#[test]
fn intents_advance_once_and_batches_are_atomic() {
    let s = store();
    let boot = block_on(s.boot(&WorkerId::new("w"), Timestamp(0))).unwrap();
    block_on(s.enqueue(job(tick(0), None), Timestamp(0))).unwrap();
    let c = block_on(s.claim(&req("w", boot.incarnation, 1), Timestamp(0))).unwrap().remove(0);
    let intent = new_intent("ad-1");
    let key = intent.key.clone();
    let open =
        WriteBatch { intents: vec![IntentOp::Open(intent.clone()), IntentOp::Open(intent)], ..Default::default() };
    let r = block_on(s.write(&c.lease, open, Timestamp(1))).unwrap();
    assert_eq!(r.intents[0], r.intents[1], "opening twice is one intent");
    let adv = |from, to| IntentOp::Advance { key: key.clone(), from, to, count_attempt: true, cause: "t".into() };
    let batch = WriteBatch { intents: vec![adv(IntentPhase::Intended, IntentPhase::Applied)], ..Default::default() };
    block_on(s.write(&c.lease, batch.clone(), Timestamp(2))).unwrap();
    // A replayed write (the reply was lost) is a success and changes nothing.
    let replayed = block_on(s.write(&c.lease, batch, Timestamp(3))).unwrap();
    assert_eq!(replayed.intents[0].phase, IntentPhase::Applied);
    // An impossible transition fails the whole batch: the spend row is not written either.
    let row = InsightRow {
        ad: AdId::new("ad-1"),
        bucket_start: Timestamp(0),
        spend: Money::new(5, Currency::EUR),
        purchases: 0,
        revenue: Money::zero(Currency::EUR),
    };
    let bad = WriteBatch {
        insights: vec![row],
        intents: vec![adv(IntentPhase::Abandoned, IntentPhase::Committed)],
        ..Default::default()
    };
    assert!(matches!(block_on(s.write(&c.lease, bad, Timestamp(4))), Err(StoreError::Conflict { .. })));
    assert!(block_on(s.spend_ledger(Timestamp(0))).unwrap().is_empty(), "atomic: nothing half-written");
    let batch = WriteBatch { intents: vec![adv(IntentPhase::Applied, IntentPhase::Committed)], ..Default::default() };
    block_on(s.write(&c.lease, batch, Timestamp(5))).unwrap();
    let snap = s.lock().snapshot();
    assert_eq!(snap.actions.len(), 1, "one action-ledger row per commit");
    // One event per transition: the log alone rebuilds the state.
    let rebuilt = replay(&snap.events).unwrap();
    assert_eq!(rebuilt.intents[&key], "committed");
}

#[test]
fn replay_rejects_a_log_with_a_gap() {
    let s = store();
    block_on(s.enqueue(job(tick(0), None), Timestamp(0))).unwrap();
    let boot = block_on(s.boot(&WorkerId::new("w"), Timestamp(0))).unwrap();
    let c = block_on(s.claim(&req("w", boot.incarnation, 1), Timestamp(0))).unwrap().remove(0);
    block_on(s.finish(&c.lease, Outcome::Completed, vec![], Timestamp(1))).unwrap();
    let mut events = s.lock().snapshot().events;
    assert!(replay(&events).is_ok());
    let claimed = events.iter().position(|e| e.after == "running").unwrap();
    events.remove(claimed);
    assert!(replay(&events).is_err(), "a missing transition row is detected");
}
