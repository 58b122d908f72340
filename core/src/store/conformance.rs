//! The store conformance suite: one set of cases over the [`Store`] trait.
//! `MemStore` passes it (`core/tests/store_conformance.rs`); every other
//! store (SQLite, Postgres) must pass the same cases unchanged.
//!
//! Cases panic with a message on failure, like tests. Times are small
//! integers: a store that stamps its own clock must honour the `now` passed
//! in for leases and run_at (the SQL stores take it as a parameter).

use std::future::Future;
use std::pin::Pin;

use crate::act::intent::{Action, Evidence, IntentPhase, NewIntent};
use crate::envelope::budget::{Budgets, Cap, Purpose, Reserve, TransferState, Window, Zone};
use crate::envelope::{Decision, DenyReason, Verdict};
use crate::estimate::estimator::AdEstimate;
use crate::ids::{AdId, BrandId, IdempotencyKey, Incarnation, WorkerId};
use crate::money::{Currency, Money};
use crate::schedule::rules::GHOST_AMNESTY;
use crate::schedule::task::Task;
use crate::sense::ads::InsightRow;
use crate::telemetry::{CostRow, EventKind, replay};
use crate::time::{Millis, Timestamp};

use super::*;

/// The name of a case, and the case run on a fresh store.
pub type Case<S> = (&'static str, fn(S) -> Pin<Box<dyn Future<Output = ()> + Send>>);

/// Every case. Run each on a fresh, empty store.
pub fn cases<S: Store + 'static>() -> Vec<Case<S>> {
    vec![
        ("claims_are_exclusive_ordered_and_batched", |s| Box::pin(claims_are_exclusive_ordered_and_batched(s))),
        ("future_jobs_wait_for_run_at", |s| Box::pin(future_jobs_wait_for_run_at(s))),
        ("expired_lease_is_resumed_and_late_writes_fenced", |s| {
            Box::pin(expired_lease_is_resumed_and_late_writes_fenced(s))
        }),
        ("boot_releases_earlier_incarnations", |s| Box::pin(boot_releases_earlier_incarnations(s))),
        ("ghost_amnesty_at_boot", |s| Box::pin(ghost_amnesty_at_boot(s))),
        ("idempotent_enqueue_and_slots_fire_once", |s| Box::pin(idempotent_enqueue_and_slots_fire_once(s))),
        ("a_slot_is_coalesced_into_the_waiting_job", |s| Box::pin(a_slot_is_coalesced_into_the_waiting_job(s))),
        ("disabled_schedules_fire_nothing", |s| Box::pin(disabled_schedules_fire_nothing(s))),
        ("a_tick_of_many_buckets_writes_what_changed", |s| Box::pin(a_tick_of_many_buckets_writes_what_changed(s))),
        ("the_spend_summary_folds_matured_buckets", |s| Box::pin(the_spend_summary_folds_matured_buckets(s))),
        ("breaker_trip_discards_and_disables", |s| Box::pin(breaker_trip_discards_and_disables(s))),
        ("release_hands_the_attempt_back", |s| Box::pin(release_hands_the_attempt_back(s))),
        ("retry_then_discard_keeps_error_history", |s| Box::pin(retry_then_discard_keeps_error_history(s))),
        ("checkpoints_survive_a_crash", |s| Box::pin(checkpoints_survive_a_crash(s))),
        ("intents_advance_once_and_batches_are_atomic", |s| Box::pin(intents_advance_once_and_batches_are_atomic(s))),
        ("the_log_rebuilds_every_state", |s| Box::pin(the_log_rebuilds_every_state(s))),
        ("a_brand_reads_the_intents_its_filter_admits", |s| Box::pin(a_brand_reads_the_intents_its_filter_admits(s))),
        ("charges_are_booked_only_under_their_caps", |s| Box::pin(charges_are_booked_only_under_their_caps(s))),
        ("state_rows_are_a_brands_own_and_log_their_changes", |s| {
            Box::pin(state_rows_are_a_brands_own_and_log_their_changes(s))
        }),
        ("bad_jobs_are_discarded_with_their_reason", |s| Box::pin(bad_jobs_are_discarded_with_their_reason(s))),
        ("released_orphans_resume_ahead_of_newer_work", |s| Box::pin(released_orphans_resume_ahead_of_newer_work(s))),
        ("batched_completion_is_per_job_and_fenced", |s| Box::pin(batched_completion_is_per_job_and_fenced(s))),
        ("one_allocation_per_slot_with_its_event", |s| Box::pin(one_allocation_per_slot_with_its_event(s))),
        ("an_empty_write_is_a_fenced_heartbeat", |s| Box::pin(an_empty_write_is_a_fenced_heartbeat(s))),
        ("presence_beats_are_kept_and_refused_once_replaced", |s| {
            Box::pin(presence_beats_are_kept_and_refused_once_replaced(s))
        }),
        ("claims_are_fair_across_brands", |s| Box::pin(claims_are_fair_across_brands(s))),
        ("a_brand_writes_only_its_own_rows", |s| Box::pin(a_brand_writes_only_its_own_rows(s))),
        ("one_brands_breaker_leaves_the_others_running", |s| Box::pin(one_brands_breaker_leaves_the_others_running(s))),
        ("budgets_reserve_on_open_post_on_commit_void_on_abandon", |s| {
            Box::pin(budgets_reserve_on_open_post_on_commit_void_on_abandon(s))
        }),
        ("a_reservation_is_atomic_with_its_batch", |s| Box::pin(a_reservation_is_atomic_with_its_batch(s))),
        ("a_counterparty_cap_bounds_its_payee_only", |s| Box::pin(a_counterparty_cap_bounds_its_payee_only(s))),
        ("finished_jobs_of_a_schedule_newest_first", |s| Box::pin(finished_jobs_of_a_schedule_newest_first(s))),
    ]
}

fn t(ms: u64) -> Timestamp {
    Timestamp(ms)
}

fn job(task: Task, key: Option<&str>) -> NewJob {
    NewJob::new(&task, 0, t(0), key.map(IdempotencyKey::new))
}

fn tick(slot: u64) -> Task {
    Task::PollInsights { slot: t(slot) }
}

fn req(worker: &str, inc: Incarnation, limit: u32) -> ClaimRequest {
    ClaimRequest {
        brands: vec![BrandId::default(), BrandId::new("acme"), BrandId::new("zest")],
        worker: WorkerId::new(worker),
        incarnation: inc,
        kinds: JobKind::ALL.to_vec(),
        limit,
        lease_for: Millis(1_000),
    }
}

async fn boot<S: Store>(s: &S, worker: &str, now: u64) -> Incarnation {
    s.boot(&WorkerId::new(worker), t(now)).await.expect("boot").incarnation
}

async fn claim_one<S: Store>(s: &S, worker: &str, inc: Incarnation, now: u64) -> Claim {
    let mut c = s.claim(&req(worker, inc, 1), t(now)).await.expect("claim");
    assert_eq!(c.len(), 1, "expected one claim at t={now}");
    c.remove(0)
}

fn new_intent(ad: &str) -> NewIntent {
    let ad = AdId::new(ad);
    let key = IdempotencyKey::new(format!("kill/{ad}"));
    NewIntent {
        key: key.clone(),
        action: Action::KillAd { ad: ad.clone() },
        evidence: Evidence::Kill(AdEstimate {
            ad: ad.clone(),
            first_bucket: t(0),
            matured_until: t(0),
            matured_spend: Money::new(9000, Currency::EUR),
            matured_purchases: 0,
            matured_revenue: Money::zero(Currency::EUR),
            in_learning: false,
        }),
        verdict: Verdict { ad, key, decision: Decision::Approve, at: t(0), reason: String::new() },
        reserve: None,
    }
}

pub async fn claims_are_exclusive_ordered_and_batched<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    for i in 0..5u64 {
        let mut j = job(tick(i), None);
        j.priority = 5 - i as i16; // later ones first
        s.enqueue(j, t(0)).await.unwrap();
    }
    let first = s.claim(&req("w", inc, 3), t(1)).await.unwrap();
    let prios: Vec<i16> = first.iter().map(|c| c.job.priority).collect();
    assert_eq!(prios, vec![1, 2, 3], "lowest priority value first, batch of 3");
    assert_eq!(s.claim(&req("w", inc, 10), t(1)).await.unwrap().len(), 2, "no job is held twice");
    assert!(s.claim(&req("w", inc, 10), t(1)).await.unwrap().is_empty());
    // Per kind: a pool claims only its own kind.
    let kill = Task::KillAd { key: IdempotencyKey::new("kill/x"), ad: AdId::new("x") };
    s.enqueue(job(kill, None), t(1)).await.unwrap();
    let mut only_ticks = req("w", inc, 10);
    only_ticks.kinds = vec![JobKind::PollInsights];
    assert!(s.claim(&only_ticks, t(2)).await.unwrap().is_empty(), "a tick pool does not take kills");
}

pub async fn future_jobs_wait_for_run_at<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    let mut j = job(tick(0), None);
    j.run_at = t(500);
    s.enqueue(j, t(0)).await.unwrap();
    assert!(s.claim(&req("w", inc, 1), t(499)).await.unwrap().is_empty());
    claim_one(&s, "w", inc, 500).await;
}

pub async fn expired_lease_is_resumed_and_late_writes_fenced<S: Store>(s: S) {
    let a = boot(&s, "a", 0).await;
    let b = boot(&s, "b", 0).await;
    s.enqueue(job(tick(0), None), t(0)).await.unwrap();
    let old = claim_one(&s, "a", a, 0).await;
    assert!(s.claim(&req("b", b, 1), t(999)).await.unwrap().is_empty(), "leased until 1000");
    s.write(&old.lease, WriteBatch::default(), t(900)).await.unwrap();
    assert!(s.claim(&req("b", b, 1), t(1_500)).await.unwrap().is_empty(), "a write is a heartbeat");
    let new = claim_one(&s, "b", b, 1_900).await;
    assert_eq!((new.job.attempt, new.job.resumes), (2, 1), "a lost lease is a resume, not a retry");
    assert_ne!(new.lease.token, old.lease.token);
    let causes: Vec<(String, String, String)> = s
        .events(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::JobClaimed)
        .map(|e| (e.entity, e.before, e.cause))
        .collect();
    let id = new.lease.job;
    assert_eq!(
        causes,
        vec![
            (id.to_string(), "available".into(), "claim by a".into()),
            (id.to_string(), "running".into(), format!("claim by b: lease of a {a:?} expired")),
        ],
        "claim rows name the claimer and the lease that ran out"
    );
    let late = s.write(&old.lease, WriteBatch::default(), t(2_000)).await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "late write: {late:?}");
    let late = s.finish(&old.lease, Outcome::Completed, vec![], t(2_000)).await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "late finish: {late:?}");
    s.finish(&new.lease, Outcome::Completed, vec![], t(2_000)).await.unwrap();
}

pub async fn boot_releases_earlier_incarnations<S: Store>(s: S) {
    let first = boot(&s, "w", 0).await;
    s.enqueue(job(tick(0), None), t(0)).await.unwrap();
    let held = claim_one(&s, "w", first, 0).await;
    let second = s.boot(&WorkerId::new("w"), t(10)).await.unwrap();
    assert_eq!(second.released, vec![held.job.id]);
    assert!(second.incarnation > first);
    let stale = s.claim(&req("w", first, 1), t(10)).await;
    assert!(matches!(stale, Err(StoreError::StaleIncarnation { .. })), "{stale:?}");
    assert!(s.write(&held.lease, WriteBatch::default(), t(10)).await.is_err());
    let again = claim_one(&s, "w", second.incarnation, 10).await;
    assert_eq!(again.job.resumes, 1, "released immediately, and counted as a resume");
}

pub async fn ghost_amnesty_at_boot<S: Store>(s: S) {
    let a = boot(&s, "gone", 0).await;
    s.enqueue(job(tick(0), None), t(0)).await.unwrap();
    // Runnable only at 4 h, and ahead of the other then.
    let mut later = job(tick(1), None);
    later.priority = -1;
    later.run_at = t(GHOST_AMNESTY.0);
    s.enqueue(later, t(0)).await.unwrap();
    let ghost = claim_one(&s, "gone", a, 0).await; // leased until 1000
    let recent = claim_one(&s, "gone", a, GHOST_AMNESTY.0).await;
    let now = 1_000 + GHOST_AMNESTY.0; // the first lease ran out 4 h ago
    let boot = s.boot(&WorkerId::new("other"), t(now)).await.unwrap();
    assert_eq!(boot.released, vec![ghost.job.id], "only rows stale for 4 h are released at boot");
    let events = s.events(0).await.unwrap();
    assert!(events.iter().any(|e| e.kind == EventKind::JobReleased && e.cause.starts_with("ghost amnesty")));
    let j = s.job(recent.job.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Running, "a recently expired lease is left to the claim");
}

pub async fn idempotent_enqueue_and_slots_fire_once<S: Store>(s: S) {
    let a = s.enqueue(job(tick(0), Some("k")), t(0)).await.unwrap();
    let b = s.enqueue(job(tick(0), Some("k")), t(0)).await.unwrap();
    assert!(matches!(a, Enqueued::Created(_)));
    assert_eq!(b, Enqueued::Duplicate(a.id()));
    let fired = s.fire_slot("tick", t(60), job(tick(60), None), t(0)).await.unwrap();
    let SlotOutcome::Fired(id) = fired else { panic!("first firing: {fired:?}") };
    assert_eq!(s.job(id).await.unwrap().unwrap().schedule.as_deref(), Some("tick"));
    assert_eq!(s.fire_slot("tick", t(60), job(tick(60), None), t(1)).await.unwrap(), SlotOutcome::AlreadyFired);
    // The slot's job has not run yet: the next slot is served by it.
    assert_eq!(s.fire_slot("tick", t(120), job(tick(120), None), t(1)).await.unwrap(), SlotOutcome::Coalesced(id));
    let rows = s.schedules().await.unwrap();
    assert_eq!(rows.iter().find(|r| r.name == "tick").unwrap().last_slot, Some(t(120)));
}

/// A schedule holds at most one job waiting for its first run: a slot that
/// fires while it waits is recorded (once, with its event row) and served
/// by that job. A running job, a job waiting to retry, another schedule's
/// or another brand's job does not serve it.
pub async fn a_slot_is_coalesced_into_the_waiting_job<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    let SlotOutcome::Fired(first) = s.fire_slot("tick", t(60), job(tick(60), None), t(60)).await.unwrap() else {
        panic!("the first slot fires")
    };
    for at in [120, 180] {
        let out = s.fire_slot("tick", t(at), job(tick(at), None), t(at)).await.unwrap();
        assert_eq!(out, SlotOutcome::Coalesced(first), "slot {at} while {first} waits");
        let again = s.fire_slot("tick", t(at), job(tick(at), None), t(at)).await.unwrap();
        assert_eq!(again, SlotOutcome::AlreadyFired, "a coalesced slot is fired: once");
    }
    let other = s.fire_slot("scan", t(180), job(tick(180), None), t(180)).await.unwrap();
    assert!(matches!(other, SlotOutcome::Fired(_)), "another schedule: {other:?}");
    let acme =
        s.fire_slot("tick", t(180), job(tick(180), None).for_brand(&BrandId::new("acme")), t(180)).await.unwrap();
    assert!(matches!(acme, SlotOutcome::Fired(_)), "another brand: {acme:?}");
    let rows = s.schedules().await.unwrap();
    let tick_row = rows.iter().find(|r| r.name == "tick" && r.brand == BrandId::default()).unwrap();
    assert_eq!(tick_row.last_slot, Some(t(180)));
    let events = s.events(0).await.unwrap();
    let coalesced: Vec<_> =
        events.iter().filter(|e| e.kind == EventKind::SlotFired && e.after == "coalesced").collect();
    assert_eq!(coalesced.len(), 2, "one event row per coalesced slot");
    assert!(coalesced.iter().all(|e| e.cause.contains(&first.to_string())), "naming the job that serves it");
    // Once it runs, the next slot has a job of its own.
    let only_tick = ClaimRequest { kinds: vec![JobKind::PollInsights], ..req("w", inc, 1) };
    let claimed = s.claim(&only_tick, t(181)).await.unwrap();
    let running = claimed.iter().find(|c| c.job.id == first).expect("the waiting tick is claimed");
    let SlotOutcome::Fired(second) = s.fire_slot("tick", t(240), job(tick(240), None), t(240)).await.unwrap() else {
        panic!("a running job serves no new slot")
    };
    s.finish(&running.lease, Outcome::Completed, vec![], t(241)).await.unwrap();
    // A job waiting to retry serves no new slot either: it failed once.
    let all_ticks = ClaimRequest { limit: 10, ..only_tick.clone() };
    let c = s.claim(&all_ticks, t(242)).await.unwrap().into_iter().find(|c| c.job.id == second).unwrap();
    s.finish(&c.lease, Outcome::Retry { at: t(400), error: "insights 503".into() }, vec![], t(243)).await.unwrap();
    let third = s.fire_slot("tick", t(300), job(tick(300), None), t(300)).await.unwrap();
    assert!(matches!(third, SlotOutcome::Fired(id) if id != second), "a retrying job does not serve it: {third:?}");
    let r = replay(&s.events(0).await.unwrap()).expect("the log replays");
    assert_eq!(r.jobs.len(), 5, "five jobs, no more: {:?}", r.jobs);
}

/// A tick pages every bucket of its lookback: a batch of a thousand rows
/// and more. Only the buckets that changed are logged (one row each, in the
/// order given, the last of two rows of one bucket winning), and the ledger
/// then holds every bucket as last written.
/// What the estimator reads: the window's matured rows summed per ad (per
/// pair of currencies), the newer ones as they are; the same rows as
/// `fold_spend` makes of the ledger, and another brand's rows never.
pub async fn the_spend_summary_folds_matured_buckets<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    s.enqueue(NewJob { brand: brand("acme"), ..job(tick(0), None) }, t(0)).await.unwrap();
    s.enqueue(NewJob { brand: brand("zest"), ..job(tick(0), None) }, t(0)).await.unwrap();
    let row = |ad: &str, bucket: u64, minor: i64, purchases: u32, cur: Currency| InsightRow {
        ad: AdId::new(ad),
        bucket_start: t(bucket * 60),
        spend: Money::new(minor, cur),
        purchases,
        revenue: Money::new(i64::from(purchases) * 1_000, cur),
    };
    let acme: Vec<InsightRow> = (0..6)
        .flat_map(|b| {
            [row("ad-1", b, 100 + b as i64, (b % 2) as u32, Currency::EUR), row("ad-2", b + 1, 7, 1, Currency::EUR)]
        })
        .chain([row("ad-3", 2, 50, 0, Currency::USD)])
        .collect();
    for (b, rows) in [("acme", acme.clone()), ("zest", vec![row("ad-1", 1, 1_000_000, 9, Currency::EUR)])] {
        let c = claim_one(&s, "w", inc, 0).await;
        assert_eq!(c.job.brand, brand(b));
        s.write(&c.lease, WriteBatch { insights: rows, ..Default::default() }, t(1)).await.unwrap();
        s.finish(&c.lease, Outcome::Completed, vec![], t(1)).await.unwrap();
    }
    let summary = s.spend_summary(&brand("acme"), t(60), t(4 * 60)).await.unwrap();
    let ledger = s.spend_ledger(&brand("acme"), t(60)).await.unwrap();
    assert_eq!(summary, fold_spend(&ledger, t(4 * 60)));
    let ad1 = summary.iter().find(|r| r.ad.as_str() == "ad-1").unwrap();
    assert_eq!((ad1.bucket_start, ad1.spend.minor, ad1.purchases), (t(60), 101 + 102 + 103, 2), "buckets 1..=3 summed");
    assert_eq!(ad1.revenue.minor, 2_000);
    assert_eq!(summary.iter().filter(|r| r.ad.as_str() == "ad-1").count(), 1 + 2, "buckets 4 and 5 as they are");
    assert!(summary.iter().any(|r| r.ad.as_str() == "ad-3" && r.spend.currency == Currency::USD));
    assert!(summary.iter().all(|r| r.spend.minor < 1_000_000), "another brand's rows never");
    // Nothing matured in the window: every row as it is.
    let unfolded = s.spend_summary(&brand("acme"), t(5 * 60), t(60)).await.unwrap();
    assert_eq!(unfolded, s.spend_ledger(&brand("acme"), t(5 * 60)).await.unwrap());
}

pub async fn a_tick_of_many_buckets_writes_what_changed<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    s.enqueue(job(tick(0), None), t(0)).await.unwrap();
    let c = claim_one(&s, "w", inc, 0).await;
    let row = |ad: u32, bucket: u64, minor: i64| InsightRow {
        ad: AdId::new(format!("ad-{ad:03}")),
        bucket_start: t(bucket * 60),
        spend: Money::new(minor, Currency::EUR),
        purchases: (minor % 3) as u32,
        revenue: Money::zero(Currency::EUR),
    };
    let first: Vec<InsightRow> = (0..120).flat_map(|ad| (0..9).map(move |b| row(ad, b, 100 + i64::from(ad)))).collect();
    assert_eq!(first.len(), 1_080);
    s.write(&c.lease, WriteBatch { insights: first.clone(), ..Default::default() }, t(1)).await.unwrap();
    let spend_rows = |events: &[Event]| events.iter().filter(|e| e.kind == EventKind::LedgerSpend).count();
    assert_eq!(spend_rows(&s.events(0).await.unwrap()), 1_080, "every new bucket logged once");
    let seq = s.last_event_seq().await.unwrap();
    // The same page again, but the newest bucket of every tenth ad grew, and
    // one bucket comes twice (its second row is what it now holds).
    let mut second = first.clone();
    for r in second.iter_mut().filter(|r| r.bucket_start == t(8 * 60)) {
        if r.ad.as_str().ends_with('0') {
            r.spend = Money::new(r.spend.minor + 7, Currency::EUR);
        }
    }
    second.push(row(5, 3, 999));
    s.write(&c.lease, WriteBatch { insights: second, ..Default::default() }, t(2)).await.unwrap();
    let logged: Vec<Event> =
        s.events(seq).await.unwrap().into_iter().filter(|e| e.kind == EventKind::LedgerSpend).collect();
    let entities: Vec<&str> = logged.iter().map(|e| e.entity.as_str()).collect();
    let mut expected: Vec<String> = (0..120).filter(|ad| ad % 10 == 0).map(|ad| format!("ad-{ad:03}@480")).collect();
    expected.push("ad-005@180".into());
    assert_eq!(entities, expected, "only what changed, in the order given");
    let ledger = s.spend_ledger(&BrandId::default(), t(0)).await.unwrap();
    assert_eq!(ledger.len(), 1_080);
    let of = |ad: u32, bucket: u64| {
        ledger.iter().find(|r| r.ad.as_str() == format!("ad-{ad:03}") && r.bucket_start == t(bucket * 60)).unwrap()
    };
    assert_eq!(of(5, 3).spend.minor, 999);
    assert_eq!(of(10, 8).spend.minor, 117);
    assert_eq!(of(11, 8).spend.minor, 111);
    assert_eq!(of(11, 8).purchases, 0);
}

pub async fn disabled_schedules_fire_nothing<S: Store>(s: S) {
    s.set_schedule(&BrandId::default(), "scan", false, "operator: maintenance", t(0)).await.unwrap();
    assert_eq!(s.fire_slot("scan", t(60), job(tick(60), None), t(60)).await.unwrap(), SlotOutcome::Disabled);
    s.set_schedule(&BrandId::default(), "scan", true, "operator: done", t(61)).await.unwrap();
    assert!(matches!(s.fire_slot("scan", t(60), job(tick(60), None), t(62)).await.unwrap(), SlotOutcome::Fired(_)));
}

pub async fn breaker_trip_discards_and_disables<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    s.fire_slot("scan", t(0), job(tick(0), None), t(0)).await.unwrap();
    let c = claim_one(&s, "w", inc, 0).await;
    s.finish(&c.lease, Outcome::Trip { error: "4 resumes".into() }, vec![], t(5)).await.unwrap();
    let j = s.job(c.job.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Discarded);
    let row = s.schedules().await.unwrap().into_iter().find(|r| r.name == "scan").unwrap();
    assert!(!row.enabled, "the breaker disabled the schedule");
    assert!(row.reason.contains("4 resumes"), "and recorded why: {}", row.reason);
    let events = s.events(0).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::BreakerOpened).count(), 1);
    assert_eq!(s.fire_slot("scan", t(60), job(tick(60), None), t(60)).await.unwrap(), SlotOutcome::Disabled);
}

/// What the breaker reads to tell a crash loop that outlives its slot: a
/// brand's schedule's finished jobs, newest first, with their state and
/// resumes; another brand's, another schedule's and live jobs are not among them.
pub async fn finished_jobs_of_a_schedule_newest_first<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    let default = BrandId::default();
    assert!(s.finished_of_schedule(&default, "tick", 5).await.unwrap().is_empty());
    s.fire_slot("tick", t(0), job(tick(0), None), t(0)).await.unwrap();
    let first = claim_one(&s, "w", inc, 0).await;
    s.finish(&first.lease, Outcome::Discard { error: "4 resumes".into() }, vec![], t(5)).await.unwrap();
    s.fire_slot("tick", t(60), job(tick(60), None), t(60)).await.unwrap();
    let second = claim_one(&s, "w", inc, 60).await;
    s.finish(&second.lease, Outcome::Completed, vec![], t(65)).await.unwrap();
    s.fire_slot("tick", t(120), job(tick(120), None).for_brand(&BrandId::new("acme")), t(120)).await.unwrap();
    let other = claim_one(&s, "w", inc, 120).await;
    s.finish(&other.lease, Outcome::Discard { error: "x".into() }, vec![], t(125)).await.unwrap();
    s.fire_slot("tick", t(180), job(tick(180), None), t(180)).await.unwrap(); // live: not finished
    s.fire_slot("scan", t(0), job(tick(1), None), t(0)).await.unwrap();
    let seen = |jobs: Vec<crate::store::Job>| jobs.iter().map(|j| (j.id, j.state, j.resumes)).collect::<Vec<_>>();
    assert_eq!(
        seen(s.finished_of_schedule(&default, "tick", 5).await.unwrap()),
        vec![(second.job.id, JobState::Completed, 0), (first.job.id, JobState::Discarded, 0)]
    );
    assert_eq!(seen(s.finished_of_schedule(&default, "tick", 1).await.unwrap()).len(), 1);
    let acme = s.finished_of_schedule(&BrandId::new("acme"), "tick", 5).await.unwrap();
    assert_eq!(seen(acme), vec![(other.job.id, JobState::Discarded, 0)]);
    assert!(s.finished_of_schedule(&default, "scan", 5).await.unwrap().is_empty());
}

pub async fn release_hands_the_attempt_back<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    s.enqueue(job(tick(0), None), t(0)).await.unwrap();
    let c = claim_one(&s, "w", inc, 0).await;
    s.release(&c.lease, t(5)).await.unwrap();
    let again = claim_one(&s, "w", inc, 5).await;
    assert_eq!((again.job.attempt, again.job.resumes), (1, 0), "a graceful release costs nothing");
    assert!(s.release(&c.lease, t(6)).await.is_err(), "the old lease is gone");
}

pub async fn retry_then_discard_keeps_error_history<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    let id = s.enqueue(job(tick(0), None), t(0)).await.unwrap().id();
    let c = claim_one(&s, "w", inc, 0).await;
    let retry = Outcome::Retry { at: t(100), error: "first".into() };
    s.finish(&c.lease, retry, vec![], t(1)).await.unwrap();
    assert!(s.claim(&req("w", inc, 1), t(99)).await.unwrap().is_empty(), "backoff honoured");
    let c = claim_one(&s, "w", inc, 100).await;
    assert_eq!(c.job.resumes, 0, "an error retry is not a resume");
    s.finish(&c.lease, Outcome::Discard { error: "second".into() }, vec![], t(101)).await.unwrap();
    let j = s.job(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Discarded);
    assert_eq!(j.errors, vec!["first".to_string(), "second".to_string()]);
}

pub async fn checkpoints_survive_a_crash<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    s.enqueue(job(tick(0), None), t(0)).await.unwrap();
    let c = claim_one(&s, "w", inc, 0).await;
    let cp = Checkpoint { step: "fetched".into(), state: serde_json::json!({"ads": 3}) };
    let batch = WriteBatch { checkpoint: Some(cp.clone()), ..WriteBatch::default() };
    s.write(&c.lease, batch, t(1)).await.unwrap();
    let inc2 = boot(&s, "w", 2).await; // the worker died and came back
    let resumed = claim_one(&s, "w", inc2, 2).await;
    assert_eq!(resumed.job.checkpoint, Some(cp), "the resumed attempt starts from the checkpoint");
    let steps = s.events(0).await.unwrap().into_iter().filter(|e| e.kind == EventKind::PipelineStep).count();
    assert_eq!(steps, 1, "one typed row per pipeline step");
}

/// A job reads its brand's intents through a filter (kinds, and whatever is
/// open): a tick reads kills and open intents, not a month of refunds.
pub async fn state_rows_are_a_brands_own_and_log_their_changes<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    s.enqueue(NewJob { brand: brand("acme"), ..job(tick(0), None) }, t(0)).await.unwrap();
    s.enqueue(NewJob { brand: brand("zest"), ..job(tick(1), None) }, t(0)).await.unwrap();
    let c = claim_one(&s, "w", inc, 0).await;
    let d = claim_one(&s, "w", inc, 0).await;
    let (acme, zest) = if c.job.brand == brand("acme") { (c, d) } else { (d, c) };
    let put = |scope: &str, key: &str, body: &str| StateOp {
        scope: scope.into(),
        key: key.into(),
        body: Some(body.into()),
        event: None,
    };
    let opened = StateOp {
        event: Some(StateEvent {
            block: crate::telemetry::Block::Policy,
            before: "closed".into(),
            after: "open".into(),
            cause: "5 failures in 5 calls".into(),
        }),
        ..put("breaker", "anthropic/haiku", "{\"state\":\"open\"}")
    };
    let batch =
        WriteBatch { state: vec![put("thread", "t-2", "2"), put("thread", "t-1", "1"), opened], ..Default::default() };
    s.write(&acme.lease, batch, t(1)).await.unwrap();
    let batch = WriteBatch { state: vec![put("thread", "t-1", "other brand")], ..Default::default() };
    s.write(&zest.lease, batch, t(1)).await.unwrap();
    let rows = |b: &'static str, scope: &'static str| {
        let s = &s;
        async move { s.state(&brand(b), scope).await.unwrap() }
    };
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(rows("acme", "thread").await, vec![kv("t-1", "1"), kv("t-2", "2")], "by key, its own only");
    assert_eq!(rows("zest", "thread").await, vec![kv("t-1", "other brand")]);
    assert_eq!(rows("acme", "breaker").await.len(), 1);
    // Overwritten, and dropped.
    let drop = StateOp { body: None, ..put("thread", "t-2", "") };
    let batch = WriteBatch { state: vec![put("thread", "t-1", "3"), drop], ..Default::default() };
    s.write(&acme.lease, batch, t(2)).await.unwrap();
    assert_eq!(rows("acme", "thread").await, vec![kv("t-1", "3")]);
    assert_eq!(rows("zest", "thread").await, vec![kv("t-1", "other brand")]);
    // One event row for the change that carried one, with its cause.
    let changes: Vec<Event> =
        s.events(0).await.unwrap().into_iter().filter(|e| e.kind == EventKind::StateChanged).collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    let e = &changes[0];
    assert_eq!(
        (e.entity.as_str(), e.before.as_str(), e.after.as_str(), e.cause.as_str()),
        ("breaker/anthropic/haiku", "closed", "open", "5 failures in 5 calls")
    );
    assert_eq!(e.brand, Some(brand("acme")));
}

pub async fn a_brand_reads_the_intents_its_filter_admits<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    s.enqueue(NewJob { brand: brand("acme"), ..job(tick(0), None) }, t(0)).await.unwrap();
    let c = claim_one(&s, "w", inc, 0).await;
    let (done, open) = (new_intent("ad-1"), new_intent("ad-2"));
    let batch =
        WriteBatch { intents: vec![IntentOp::Open(done.clone()), IntentOp::Open(open.clone())], ..Default::default() };
    let kills = s.write(&c.lease, batch, t(1)).await.unwrap().intents;
    let node = crate::sense::ads::AdNode { level: crate::sense::ads::Level::AdSet, id: "set-1".into() };
    let pause = crate::act::escalate::pause_intent(&kills[0], &AdId::new("ad-1"), node, t(2));
    let batch = WriteBatch {
        intents: vec![
            step(&done.key, IntentPhase::Intended, IntentPhase::Abandoned, None),
            IntentOp::Open(pause.clone()),
        ],
        ..Default::default()
    };
    s.write(&c.lease, batch, t(2)).await.unwrap();
    let read = |filter: IntentFilter| {
        let s = &s;
        async move {
            let got = s.brand_intents(&brand("acme"), &filter).await.unwrap();
            got.into_iter().map(|i| i.key.to_string()).collect::<Vec<_>>()
        }
    };
    let key = |i: &NewIntent| i.key.to_string();
    let mut every = vec![key(&done), key(&open), key(&pause)];
    every.sort();
    assert_eq!(read(IntentFilter::all()).await, every);
    let mut kills = vec![key(&done), key(&open)];
    kills.sort();
    assert_eq!(read(IntentFilter::kinds(&[Action::KILL_AD])).await, kills, "kills, final or not");
    assert_eq!(read(IntentFilter::kinds(&[Action::PAUSE_NODE])).await, vec![key(&pause)]);
    assert!(read(IntentFilter::kinds(&[Action::PAYOUT])).await.is_empty());
    let mut open_ones = vec![key(&open), key(&pause)];
    open_ones.sort();
    assert_eq!(read(IntentFilter::open()).await, open_ones, "the abandoned kill is final");
    assert_eq!(read(IntentFilter::kinds(&[Action::PAYOUT]).and_open()).await, open_ones);
    assert_eq!(read(IntentFilter::kinds(&[Action::KILL_AD]).and_open()).await, every);
    let keyed = IntentFilter::kinds(&[Action::PAYOUT]).and_keys([done.key.clone(), IdempotencyKey::new("kill/none")]);
    assert_eq!(read(keyed).await, vec![key(&done)], "asked for by key, final or not");
    assert_eq!(read(IntentFilter::open().and_keys([done.key.clone()])).await, every);
    assert!(s.brand_intents(&brand("zest"), &IntentFilter::all()).await.unwrap().is_empty(), "its own brand's only");
    let theirs = IntentFilter::open().and_keys([done.key.clone()]);
    assert!(s.brand_intents(&brand("zest"), &theirs).await.unwrap().is_empty(), "not another brand's by key");
}

pub async fn intents_advance_once_and_batches_are_atomic<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    s.enqueue(job(tick(0), None), t(0)).await.unwrap();
    let c = claim_one(&s, "w", inc, 0).await;
    let intent = new_intent("ad-1");
    let key = intent.key.clone();
    let open =
        WriteBatch { intents: vec![IntentOp::Open(intent.clone()), IntentOp::Open(intent)], ..Default::default() };
    let r = s.write(&c.lease, open, t(1)).await.unwrap();
    assert_eq!(r.intents[0], r.intents[1], "opening twice is one intent");
    let adv = |from, to| IntentOp::Advance {
        key: key.clone(),
        from,
        to,
        count_attempt: true,
        cause: "t".into(),
        amount: None,
    };
    let batch = WriteBatch { intents: vec![adv(IntentPhase::Intended, IntentPhase::Applied)], ..Default::default() };
    s.write(&c.lease, batch.clone(), t(2)).await.unwrap();
    let replayed = s.write(&c.lease, batch, t(3)).await.unwrap();
    assert_eq!(replayed.intents[0].phase, IntentPhase::Applied, "a replayed write is a success");
    // A counted attempt without a phase change is a state change too: one row.
    let count = IntentOp::CountAttempt { key: key.clone(), cause: "call failed".into() };
    // (A replayed advance counts its attempt again: conservative for the cap.)
    let before = replayed.intents[0].attempts;
    let r = s.write(&c.lease, WriteBatch { intents: vec![count], ..Default::default() }, t(3)).await.unwrap();
    assert_eq!(r.intents[0].attempts, before + 1);
    let rows: Vec<_> = s.events(0).await.unwrap().into_iter().filter(|e| e.kind == EventKind::IntentAttempt).collect();
    assert_eq!(rows.len(), 1, "one event row per counted attempt");
    let (from, to) = (format!("attempts={before}"), format!("attempts={}", before + 1));
    assert_eq!((rows[0].before.as_str(), rows[0].after.as_str()), (from.as_str(), to.as_str()));
    assert_eq!((rows[0].entity.as_str(), rows[0].cause.as_str()), (key.as_str(), "call failed"));
    let row = InsightRow {
        ad: AdId::new("ad-1"),
        bucket_start: t(0),
        spend: Money::new(5, Currency::EUR),
        purchases: 0,
        revenue: Money::zero(Currency::EUR),
    };
    let bad = WriteBatch {
        insights: vec![row],
        intents: vec![adv(IntentPhase::Abandoned, IntentPhase::Committed)],
        ..Default::default()
    };
    assert!(matches!(s.write(&c.lease, bad, t(4)).await, Err(StoreError::Conflict { .. })));
    assert!(s.spend_ledger(&BrandId::default(), t(0)).await.unwrap().is_empty(), "atomic: nothing half-written");
    let batch = WriteBatch { intents: vec![adv(IntentPhase::Applied, IntentPhase::Committed)], ..Default::default() };
    s.write(&c.lease, batch, t(5)).await.unwrap();
    assert_eq!(s.intent(&key).await.unwrap().unwrap().phase, IntentPhase::Committed);
}

pub async fn the_log_rebuilds_every_state<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    for i in 0..3 {
        s.enqueue(job(tick(i), None), t(0)).await.unwrap();
    }
    let a = claim_one(&s, "w", inc, 0).await;
    s.finish(&a.lease, Outcome::Completed, vec![], t(1)).await.unwrap();
    let b = claim_one(&s, "w", inc, 1).await;
    s.finish(&b.lease, Outcome::Retry { at: t(5), error: "e".into() }, vec![], t(2)).await.unwrap();
    let c = claim_one(&s, "w", inc, 2).await;
    s.release(&c.lease, t(3)).await.unwrap();
    boot(&s, "w", 4).await;
    let log = s.events(0).await.unwrap();
    assert_eq!(s.last_event_seq().await.unwrap(), log.last().map_or(0, |e| e.seq), "the newest row's seq");
    let rebuilt = replay(&log).expect("a log without gaps");
    for (id, state) in &rebuilt.jobs {
        let job = s.job(*id).await.unwrap().expect("every logged job exists");
        assert_eq!(state, job.state.as_str(), "{id}: the log and the table agree");
    }
    assert_eq!(rebuilt.jobs.len(), 3);
}

pub async fn bad_jobs_are_discarded_with_their_reason<S: Store>(s: S) {
    let unknown = NewJob {
        brand: BrandId::default(),
        kind: "launch_rocket".into(),
        payload: serde_json::json!({"kind": "launch_rocket"}),
        priority: 0,
        run_at: t(0),
        idempotency_key: None,
    };
    let bad_id = s.enqueue(unknown, t(0)).await.unwrap().id();
    let good_id = s.enqueue(job(tick(0), None), t(0)).await.unwrap().id();
    let known: Vec<String> = JobKind::ALL.iter().map(|k| k.as_str().to_string()).collect();
    assert_eq!(s.discard_unknown_kinds(&known, t(1)).await.unwrap(), vec![bad_id]);
    let bad = s.job(bad_id).await.unwrap().unwrap();
    assert_eq!(bad.state, JobState::Discarded);
    assert!(bad.errors[0].contains("unknown job kind \"launch_rocket\""), "{:?}", bad.errors);
    assert_eq!(s.job(good_id).await.unwrap().unwrap().state, JobState::Available, "nothing else disturbed");
    // A payload that does not deserialize is stored as is; decoding says why.
    let garbled = NewJob {
        brand: BrandId::default(),
        kind: "kill_ad".into(),
        payload: serde_json::json!({"kind": "kill_ad", "ad": 7}),
        priority: 0,
        run_at: t(0),
        idempotency_key: None,
    };
    let id = s.enqueue(garbled, t(2)).await.unwrap().id();
    let err = s.job(id).await.unwrap().unwrap().task().unwrap_err();
    assert!(err.contains("does not deserialize"), "{err}");
}

pub async fn released_orphans_resume_ahead_of_newer_work<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    s.enqueue(job(tick(0), None), t(0)).await.unwrap();
    let orphan = claim_one(&s, "w", inc, 0).await;
    let mut newer = job(tick(1), None);
    newer.run_at = t(5);
    s.enqueue(newer, t(5)).await.unwrap();
    let inc2 = boot(&s, "w", 10).await; // the worker died and came back
    let first = claim_one(&s, "w", inc2, 10).await;
    assert_eq!(first.job.id, orphan.job.id, "the interrupted job resumes first");
}

pub async fn batched_completion_is_per_job_and_fenced<S: Store>(s: S) {
    let a = boot(&s, "a", 0).await;
    for i in 0..4u64 {
        s.enqueue(job(tick(i), None), t(0)).await.unwrap();
    }
    let stale = s.claim(&req("a", a, 4), t(0)).await.unwrap();
    assert_eq!(stale.len(), 4);
    // Every lease of `a` runs out and `b` takes the four jobs.
    let b = boot(&s, "b", 2_000).await;
    let fresh = s.claim(&req("b", b, 4), t(2_000)).await.unwrap();
    assert_eq!(fresh.len(), 4, "every lease ran out");
    let all_stale: Vec<(Lease, Vec<CostRow>)> = stale.iter().map(|c| (c.lease.clone(), vec![])).collect();
    let fenced = s.complete_batch(all_stale, t(2_001)).await.unwrap();
    assert_eq!(fenced.len(), 4, "stale leases complete nothing");
    for c in &fresh {
        assert_eq!(s.job(c.lease.job).await.unwrap().unwrap().state, JobState::Running);
    }
    // `b` completes three in one batch with a stale lease among them.
    let cost = CostRow {
        call_id: "c1".into(),
        brand: BrandId::default(),
        at: t(2_001),
        vendor: "meta".into(),
        op: "insights".into(),
        ok: true,
        cost: Money::new(3, Currency::EUR),
    };
    let batch = vec![
        (fresh[0].lease.clone(), vec![cost]),
        (stale[3].lease.clone(), vec![]),
        (fresh[1].lease.clone(), vec![]),
        (fresh[2].lease.clone(), vec![]),
    ];
    let fenced = s.complete_batch(batch, t(2_002)).await.unwrap();
    assert_eq!(fenced, vec![stale[3].lease.clone()], "only the stale lease is returned");
    let mut states = Vec::new();
    for c in &fresh {
        states.push(s.job(c.lease.job).await.unwrap().unwrap().state);
    }
    assert_eq!(states, vec![JobState::Completed, JobState::Completed, JobState::Completed, JobState::Running]);
    let completed: Vec<String> = s
        .events(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::JobCompleted)
        .map(|e| e.entity)
        .collect();
    let expect: Vec<String> = fresh[..3].iter().map(|c| c.lease.job.to_string()).collect();
    assert_eq!(completed, expect, "one row per completed job, in the order given");
    assert!(s.complete_batch(vec![], t(2_003)).await.unwrap().is_empty(), "an empty batch is a no-op");
    s.finish(&fresh[3].lease, Outcome::Completed, vec![], t(2_004)).await.unwrap();
    assert!(replay(&s.events(0).await.unwrap()).is_ok(), "the log still replays");
}

pub async fn one_allocation_per_slot_with_its_event<S: Store>(s: S) {
    use crate::propose::allocation::{Allocation, Share};
    let inc = boot(&s, "w", 0).await;
    s.enqueue(job(tick(0), None), t(0)).await.unwrap();
    let c = claim_one(&s, "w", inc, 0).await;
    assert_eq!(s.allocation(&BrandId::default()).await.unwrap(), None);
    let share = |ad: &str, bp| Share { ad: AdId::new(ad), trials: 10, purchases: 1, share_bp: bp };
    let first = Allocation {
        brand: BrandId::default(),
        slot: t(3_600_000),
        shares: vec![share("ad-1", 7_000), share("ad-2", 3_000)],
    };
    let again = Allocation { brand: BrandId::default(), slot: t(3_600_000), shares: vec![share("ad-1", 10_000)] };
    let later = Allocation { brand: BrandId::default(), slot: t(7_200_000), shares: vec![share("ad-2", 10_000)] };
    for (a, at) in [(first.clone(), 1), (again, 2), (later.clone(), 3)] {
        s.write(&c.lease, WriteBatch { allocation: Some(a), ..WriteBatch::default() }, t(at)).await.unwrap();
    }
    assert_eq!(s.allocation(&BrandId::default()).await.unwrap(), Some(later), "the newest slot's allocation");
    let rolled: Vec<Event> =
        s.events(0).await.unwrap().into_iter().filter(|e| e.kind == EventKind::AllocationRolled).collect();
    assert_eq!(rolled.len(), 2, "one row per slot: a second write of a slot changes nothing");
    assert_eq!((rolled[0].before.as_str(), rolled[0].after.as_str()), ("none", "3600000"));
    assert_eq!((rolled[1].before.as_str(), rolled[1].after.as_str()), ("3600000", "7200000"));
    assert_eq!(rolled[0].cause, first.summary());
    // A stale attempt writes no allocation.
    let inc2 = boot(&s, "w", 10).await;
    let _ = claim_one(&s, "w", inc2, 10).await;
    let late = Allocation { brand: BrandId::default(), slot: t(10_800_000), shares: vec![] };
    let r = s.write(&c.lease, WriteBatch { allocation: Some(late), ..WriteBatch::default() }, t(11)).await;
    assert!(matches!(r, Err(StoreError::Fenced { .. }) | Err(StoreError::StaleIncarnation { .. })), "{r:?}");
    assert_eq!(s.allocation(&BrandId::default()).await.unwrap().map(|a| a.slot), Some(t(7_200_000)));
}

pub async fn an_empty_write_is_a_fenced_heartbeat<S: Store>(s: S) {
    let a = boot(&s, "a", 0).await;
    s.enqueue(job(tick(0), None), t(0)).await.unwrap();
    let c = claim_one(&s, "a", a, 0).await; // a 1 s lease
    // Beating every 600 ms keeps it well past its first second.
    for at in [600, 1_200, 1_800, 2_400] {
        s.write(&c.lease, WriteBatch::default(), t(at)).await.unwrap();
    }
    let b = boot(&s, "b", 3_000).await;
    assert!(s.claim(&req("b", b, 1), t(3_000)).await.unwrap().is_empty(), "a beating lease is not expired");
    let events = s.events(0).await.unwrap().len();
    // Once it stops beating, the lease runs out, another attempt takes the
    // job, and the old attempt's beat is fenced.
    let taken = s.claim(&req("b", b, 1), t(3_500)).await.unwrap();
    assert_eq!(taken.len(), 1);
    let r = s.write(&c.lease, WriteBatch::default(), t(3_600)).await;
    assert!(matches!(r, Err(StoreError::Fenced { .. })), "{r:?}");
    assert_eq!(s.events(0).await.unwrap().len(), events + 1, "heartbeats write no event rows (only the claim did)");
}

/// A worker's presence beat records where its incarnation runs and when it
/// last beat; a newer boot of the same id hides the old presence and
/// refuses the old incarnation's beats (so a replaced worker learns it
/// even when it has no job to claim).
pub async fn presence_beats_are_kept_and_refused_once_replaced<S: Store>(s: S) {
    let first = boot(&s, "w-1", 0).await;
    boot(&s, "w-2", 0).await;
    let rows = s.workers().await.unwrap();
    assert_eq!(rows.iter().map(|r| r.worker.as_str()).collect::<Vec<_>>(), ["w-1", "w-2"], "by id");
    assert_eq!(rows[0].beat_at, None, "no beat yet");
    let p = |inc, pid| Presence { worker: WorkerId::new("w-1"), incarnation: inc, host: "host-a".into(), pid };
    s.beat(&p(first, 41), t(5)).await.unwrap();
    s.beat(&p(first, 41), t(9)).await.unwrap();
    let row = s.workers().await.unwrap().into_iter().find(|r| r.worker.as_str() == "w-1").unwrap();
    assert_eq!((row.incarnation, row.host.as_str(), row.pid, row.beat_at), (first, "host-a", 41, Some(t(9))));
    let second = boot(&s, "w-1", 20).await;
    let row = s.workers().await.unwrap().into_iter().find(|r| r.worker.as_str() == "w-1").unwrap();
    assert_eq!(row.incarnation, second);
    assert_eq!(row.beat_at, None, "the old incarnation's beat is not the new one's");
    let err = s.beat(&p(first, 41), t(21)).await.unwrap_err();
    assert!(matches!(err, StoreError::StaleIncarnation { .. }), "a replaced incarnation may not beat: {err:?}");
    s.beat(&p(second, 42), t(22)).await.unwrap();
    let unknown = Presence { worker: WorkerId::new("nobody"), incarnation: Incarnation(1), host: "h".into(), pid: 1 };
    assert!(s.beat(&unknown, t(23)).await.is_err(), "an id that never booted may not beat");
}

fn brand(b: &str) -> BrandId {
    BrandId::new(b)
}

pub async fn claims_are_fair_across_brands<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    // One brand floods the queue with earlier, more urgent work.
    for i in 0..30u64 {
        s.enqueue(job(tick(i), None).for_brand(&brand("acme")), t(0)).await.unwrap();
    }
    let mut quiet = job(tick(99), None).for_brand(&brand("zest"));
    quiet.priority = 5;
    quiet.run_at = t(3);
    let quiet = s.enqueue(quiet, t(3)).await.unwrap().id();
    let got = s.claim(&req("w", inc, 2), t(4)).await.unwrap();
    let brands: Vec<&str> = got.iter().map(|c| c.job.brand.as_str()).collect();
    assert_eq!(brands, vec!["acme", "zest"], "the quiet brand's job is in the first batch");
    assert_eq!(got[1].job.id, quiet);
    // Round-robin by rank, in (priority, run_at, id) order within a brand.
    for i in 0..3u64 {
        s.enqueue(job(tick(100 + i), None).for_brand(&brand("zest")), t(5)).await.unwrap();
    }
    let got = s.claim(&req("w", inc, 4), t(6)).await.unwrap();
    let brands: Vec<&str> = got.iter().map(|c| c.job.brand.as_str()).collect();
    assert_eq!(brands, vec!["acme", "zest", "acme", "zest"]);
    let acme: Vec<_> = got.iter().filter(|c| c.job.brand.as_str() == "acme").map(|c| c.job.payload.clone()).collect();
    assert_eq!(
        acme,
        vec![
            serde_json::json!({"kind": "poll_insights", "slot": 1}),
            serde_json::json!({"kind": "poll_insights", "slot": 2})
        ]
    );
    // A worker claims only for the brands it serves.
    let only_zest = ClaimRequest { brands: vec![brand("zest")], ..req("w", inc, 10) };
    let got = s.claim(&only_zest, t(7)).await.unwrap();
    assert!(got.iter().all(|c| c.job.brand.as_str() == "zest") && got.len() == 1, "{got:?}");
    let claimed: Vec<Event> =
        s.events(0).await.unwrap().into_iter().filter(|e| e.kind == EventKind::JobClaimed).collect();
    assert!(claimed.iter().all(|e| e.brand.is_some()), "every claim row names its brand");
}

pub async fn a_brand_writes_only_its_own_rows<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    s.enqueue(job(tick(0), None).for_brand(&brand("acme")), t(0)).await.unwrap();
    let a = claim_one(&s, "w", inc, 0).await;
    assert_eq!(a.job.brand, brand("acme"));
    let spent = |minor| InsightRow {
        ad: AdId::new("ad-a"),
        bucket_start: t(0),
        spend: Money::new(minor, Currency::EUR),
        purchases: 0,
        revenue: Money::zero(Currency::EUR),
    };
    let row = spent(500);
    let cost = CostRow {
        call_id: "acme-1".into(),
        brand: BrandId::default(), // the store stamps the writer's brand
        at: t(1),
        vendor: "meta".into(),
        op: "insights".into(),
        ok: true,
        cost: Money::zero(Currency::EUR),
    };
    let batch = WriteBatch {
        insights: vec![row],
        intents: vec![IntentOp::Open(new_intent("ad-a"))],
        // Asked for the default brand: a job's enqueue is its own brand's.
        enqueue: vec![job(tick(1), None)],
        costs: vec![cost],
        ..WriteBatch::default()
    };
    let out = s.write(&a.lease, batch, t(1)).await.unwrap();
    assert_eq!(out.intents[0].brand, brand("acme"), "the intent is the writer's brand's");
    let keys = |v: Vec<Intent>| v.into_iter().map(|i| i.key).collect::<Vec<_>>();
    let all = IntentFilter::all();
    assert_eq!(keys(s.brand_intents(&brand("acme"), &all).await.unwrap()), vec![new_intent("ad-a").key]);
    assert!(s.brand_intents(&brand("zest"), &all).await.unwrap().is_empty(), "a brand reads its own intents only");
    assert_eq!(s.spend_ledger(&brand("acme"), t(0)).await.unwrap().len(), 1);
    assert!(s.spend_ledger(&BrandId::default(), t(0)).await.unwrap().is_empty(), "no other brand sees it");
    s.finish(&a.lease, Outcome::Completed, vec![], t(2)).await.unwrap();
    let next = claim_one(&s, "w", inc, 3).await;
    assert_eq!(next.job.brand, brand("acme"), "the enqueued job is the writer's brand's");
    // Another brand's job may not touch the intent.
    s.enqueue(job(tick(2), None).for_brand(&brand("zest")), t(3)).await.unwrap();
    let z = claim_one(&s, "w", inc, 4).await;
    assert_eq!(z.job.brand, brand("zest"));
    let key = new_intent("ad-a").key;
    let advance = IntentOp::Advance {
        key: key.clone(),
        from: IntentPhase::Intended,
        to: IntentPhase::Applied,
        count_attempt: true,
        cause: "zest's job".into(),
        amount: None,
    };
    let r = s.write(&z.lease, WriteBatch { intents: vec![advance], ..WriteBatch::default() }, t(5)).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(s.intent(&key).await.unwrap().unwrap().phase, IntentPhase::Intended, "nothing written");
    // Another brand's account may reuse an ad id: its spend is its own.
    let w = s.write(&z.lease, WriteBatch { insights: vec![spent(700)], ..WriteBatch::default() }, t(6)).await;
    w.unwrap();
    let minor = |rows: Vec<InsightRow>| rows.iter().map(|r| r.spend.minor).collect::<Vec<_>>();
    assert_eq!(minor(s.spend_ledger(&brand("acme"), t(0)).await.unwrap()), vec![500]);
    assert_eq!(minor(s.spend_ledger(&brand("zest"), t(0)).await.unwrap()), vec![700]);
    let events = s.events(0).await.unwrap();
    for e in events.iter().filter(|e| e.kind != EventKind::WorkerBooted) {
        assert!(e.brand.is_some(), "event {} names no brand", e.seq);
    }
    let acme_rows = events.iter().filter(|e| e.brand.as_ref() == Some(&brand("acme"))).count();
    assert!(acme_rows >= 6, "enqueue, claim, spend, intent, enqueue, finish: {acme_rows}");
}

pub async fn one_brands_breaker_leaves_the_others_running<S: Store>(s: S) {
    let inc = boot(&s, "w", 0).await;
    for b in ["acme", "zest"] {
        let fired = s.fire_slot("tick", t(60), job(tick(60), None).for_brand(&brand(b)), t(0)).await.unwrap();
        assert!(matches!(fired, SlotOutcome::Fired(_)), "{b}: each brand's slot fires once: {fired:?}");
    }
    let again = s.fire_slot("tick", t(60), job(tick(60), None).for_brand(&brand("acme")), t(0)).await.unwrap();
    assert_eq!(again, SlotOutcome::AlreadyFired);
    let acme_only = ClaimRequest { brands: vec![brand("acme")], ..req("w", inc, 1) };
    let c = s.claim(&acme_only, t(1)).await.unwrap().remove(0);
    s.finish(&c.lease, Outcome::Trip { error: "crash loop".into() }, vec![], t(2)).await.unwrap();
    let rows = s.schedules().await.unwrap();
    let row = |b: &str| rows.iter().find(|r| r.name == "tick" && r.brand == brand(b)).unwrap().clone();
    assert!(!row("acme").enabled, "the breaker turned off acme's tick");
    assert!(row("zest").enabled, "and left zest's running");
    let tick_of = |b: &str, at| job(tick(at), None).for_brand(&brand(b));
    assert_eq!(s.fire_slot("tick", t(120), tick_of("acme", 120), t(120)).await.unwrap(), SlotOutcome::Disabled);
    // zest's tick of 60 never ran: its schedule, still on, coalesces the slot into it.
    assert!(matches!(
        s.fire_slot("tick", t(120), tick_of("zest", 120), t(120)).await.unwrap(),
        SlotOutcome::Coalesced(_)
    ));
    let opened: Vec<Event> =
        s.events(0).await.unwrap().into_iter().filter(|e| e.kind == EventKind::BreakerOpened).collect();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].brand, Some(brand("acme")));
    // An operator turns it back on for that brand only.
    s.set_schedule(&brand("acme"), "tick", true, "operator: fixed", t(130)).await.unwrap();
    assert!(matches!(s.fire_slot("tick", t(180), tick_of("acme", 180), t(180)).await.unwrap(), SlotOutcome::Fired(_)));
}

fn paying(key: &str, minor: i64) -> NewIntent {
    let mut new = new_intent(key);
    new.reserve =
        Some(Reserve { purpose: Purpose::Payout, amount: Money::new(minor, Currency::EUR), counterparty: None });
    new
}

fn berlin_caps() -> Budgets {
    let cap = |window, minor| Cap::brand(Purpose::Payout, window, Money::new(minor, Currency::EUR));
    Budgets::new(Zone::parse("Europe/Berlin").unwrap(), vec![cap(Window::Daily, 1_000), cap(Window::Monthly, 2_500)])
        .unwrap()
}

fn step(key: &IdempotencyKey, from: IntentPhase, to: IntentPhase, amount: Option<i64>) -> IntentOp {
    IntentOp::Advance {
        key: key.clone(),
        from,
        to,
        count_attempt: false,
        cause: "t".into(),
        amount: amount.map(|m| Money::new(m, Currency::EUR)),
    }
}

/// 2026-12-02 10:00 UTC, in milliseconds (11:00 in Berlin).
const DEC_2: u64 = 1_796_205_600_000;

/// A brand cap of 10.00 a day and a cap of 4.00 a day on payee cp-1: money
/// to cp-1 holds against both accounts, money to cp-2 against the brand's
/// only; each account is its own row, read back with its payee.
pub async fn a_counterparty_cap_bounds_its_payee_only<S: Store>(s: S) {
    let now = DEC_2;
    let brand = BrandId::default();
    let eur = |minor| Money::new(minor, Currency::EUR);
    let caps = vec![
        Cap::brand(Purpose::Payout, Window::Daily, eur(1_000)),
        Cap { counterparty: Some("cp-1".into()), ..Cap::brand(Purpose::Payout, Window::Daily, eur(400)) },
    ];
    let budgets = Budgets::new(Zone::parse("Europe/Berlin").unwrap(), caps).unwrap();
    s.set_budgets(&brand, &budgets, t(now)).await.unwrap();
    assert_eq!(s.budgets().await.unwrap(), vec![(brand.clone(), budgets)], "the payee survives the store");
    let to = |key: &str, minor, cp: &str| {
        let mut new = paying(key, minor);
        new.reserve.as_mut().unwrap().counterparty = Some(cp.into());
        new
    };
    let inc = boot(&s, "w", now).await;
    s.enqueue(job(tick(0), None), t(now)).await.unwrap();
    let c = claim_one(&s, "w", inc, now).await;
    let ops = [to("a", 300, "cp-1"), to("b", 200, "cp-1"), to("c", 500, "cp-2"), to("d", 300, "cp-2")]
        .map(IntentOp::Open)
        .to_vec();
    let r = s.write(&c.lease, WriteBatch { intents: ops, ..Default::default() }, t(now)).await.unwrap();
    assert_eq!(r.intents.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), vec!["kill/a", "kill/c"]);
    let why: Vec<(&str, &str)> = r.refused.iter().map(|(k, why)| (k.as_str(), why.as_str())).collect();
    assert_eq!(why.len(), 2, "{why:?}");
    assert!(why[0].1.starts_with("daily payout cp-1 cap 4.00 EUR for 2026-12-02: 3.00 EUR held"), "{why:?}");
    assert!(why[1].1.starts_with("daily payout cap 10.00 EUR for 2026-12-02: 8.00 EUR held"), "{why:?}");
    let accounts: Vec<(Option<String>, i64, i64)> =
        s.accounts(Some(&brand)).await.unwrap().into_iter().map(|a| (a.key.counterparty, a.limit, a.pending)).collect();
    assert_eq!(accounts, vec![(None, 1_000, 800), (Some("cp-1".into()), 400, 300)]);
    let t_a = s.transfers().await.unwrap().into_iter().find(|t| t.id.as_str() == "kill/a").unwrap();
    assert_eq!(t_a.accounts.len(), 2, "the brand's account and cp-1's");
    assert_eq!(t_a.accounts[1].counterparty.as_deref(), Some("cp-1"));
    // The payee's money that was voided returns to both accounts.
    let key = IdempotencyKey::new("kill/a");
    let void = vec![step(&key, IntentPhase::Intended, IntentPhase::Abandoned, None)];
    s.write(&c.lease, WriteBatch { intents: void, ..Default::default() }, t(now + 1)).await.unwrap();
    let pending: Vec<i64> = s.accounts(None).await.unwrap().into_iter().map(|a| a.pending).collect();
    assert_eq!(pending, vec![500, 0]);
}

/// A model cap of 1.00 EUR a day: charges of 0.60 and 0.40 are booked
/// (reserved and posted at once), one of 0.50 between them is refused with
/// its verdict row and books nothing; a charge in a currency no cap covers
/// is refused; a charge booked once is a conflict the second time.
pub async fn charges_are_booked_only_under_their_caps<S: Store>(s: S) {
    let now = DEC_2;
    let brand = BrandId::default();
    let cap = Cap::brand(Purpose::Model, Window::Daily, Money::new(100, Currency::EUR));
    s.set_budgets(&brand, &Budgets::new(Zone::parse("Europe/Berlin").unwrap(), vec![cap]).unwrap(), t(now))
        .await
        .unwrap();
    let inc = boot(&s, "w", now).await;
    s.enqueue(job(tick(0), None), t(now)).await.unwrap();
    let c = claim_one(&s, "w", inc, now).await;
    let charge = |id: &str, minor, currency| Charge {
        purpose: Purpose::Model,
        row: CostRow {
            call_id: id.into(),
            brand: BrandId::default(),
            at: t(now),
            vendor: "anthropic".into(),
            op: "complete/claude-haiku".into(),
            ok: true,
            cost: Money::new(minor, currency),
        },
    };
    let charges = vec![charge("a", 60, Currency::EUR), charge("b", 50, Currency::EUR), charge("c", 40, Currency::EUR)];
    let r = s.write(&c.lease, WriteBatch { charges, ..Default::default() }, t(now)).await.unwrap();
    assert_eq!(r.refused.len(), 1, "{r:?}");
    assert_eq!(r.refused[0].0.as_str(), "cost/b");
    assert!(r.refused[0].1.starts_with("daily model cap 1.00 EUR for 2026-12-02: 0.60 EUR held"), "{r:?}");
    let transfers: Vec<(String, TransferState, i64)> =
        s.transfers().await.unwrap().into_iter().map(|t| (t.id.as_str().to_string(), t.state, t.posted)).collect();
    assert_eq!(
        transfers,
        vec![("cost/a".into(), TransferState::Posted, 60), ("cost/c".into(), TransferState::Posted, 40)]
    );
    let accounts: Vec<(Purpose, i64, i64)> =
        s.accounts(Some(&brand)).await.unwrap().into_iter().map(|a| (a.key.purpose, a.pending, a.posted)).collect();
    assert_eq!(accounts, vec![(Purpose::Model, 0, 100)], "charged: posted at once, nothing left pending");
    let verdicts: Vec<Event> =
        s.events(0).await.unwrap().into_iter().filter(|e| e.kind == EventKind::Verdict).collect();
    assert_eq!(verdicts.iter().map(|e| e.entity.as_str()).collect::<Vec<_>>(), vec!["cost/b"]);
    let booked = s.events(0).await.unwrap().into_iter().filter(|e| e.kind == EventKind::BudgetTransfer).count();
    assert_eq!(booked, 2, "one row per charge booked");
    let usd = vec![charge("d", 1, Currency::USD)];
    let r = s.write(&c.lease, WriteBatch { charges: usd, ..Default::default() }, t(now + 1)).await.unwrap();
    assert!(r.refused[0].1.contains("no cap covers model in USD"), "{r:?}");
    let again = s.write(
        &c.lease,
        WriteBatch { charges: vec![charge("a", 1, Currency::EUR)], ..Default::default() },
        t(now + 2),
    );
    assert!(matches!(again.await, Err(StoreError::Conflict { .. })), "a cost row is charged once");
    assert_eq!(s.transfers().await.unwrap().len(), 2);
}

pub async fn budgets_reserve_on_open_post_on_commit_void_on_abandon<S: Store>(s: S) {
    let now = DEC_2;
    let brand = BrandId::default();
    s.set_budgets(&brand, &berlin_caps(), t(now)).await.unwrap();
    s.set_budgets(&brand, &berlin_caps(), t(now)).await.unwrap();
    assert_eq!(s.budgets().await.unwrap(), vec![(brand.clone(), berlin_caps())]);
    let declared = s.events(0).await.unwrap().into_iter().filter(|e| e.kind == EventKind::BudgetsSet).count();
    assert_eq!(declared, 1, "declaring the same budgets again writes no row");

    let inc = boot(&s, "w", now).await;
    s.enqueue(job(tick(0), None), t(now)).await.unwrap();
    let c = claim_one(&s, "w", inc, now).await;
    let (a, b, c2) = (paying("a", 600), paying("b", 500), paying("c", 400));
    let ops = vec![IntentOp::Open(a.clone()), IntentOp::Open(b.clone()), IntentOp::Open(c2.clone())];
    let r = s.write(&c.lease, WriteBatch { intents: ops, ..Default::default() }, t(now)).await.unwrap();
    assert_eq!(r.intents.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), vec!["kill/a", "kill/c"]);
    assert_eq!(r.refused.len(), 1, "{r:?}");
    assert_eq!(r.refused[0].0, b.key);
    assert!(r.refused[0].1.starts_with("daily payout cap 10.00 EUR for 2026-12-02"), "{}", r.refused[0].1);
    assert!(s.intent(&b.key).await.unwrap().is_none(), "a refused open opens nothing");
    let verdicts: Vec<Event> =
        s.events(0).await.unwrap().into_iter().filter(|e| e.kind == EventKind::Verdict).collect();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].entity, b.key.as_str());
    assert_eq!(verdicts[0].after, serde_json::to_string(&Decision::Deny(DenyReason::OverBudget)).unwrap());
    let held = |accounts: Vec<crate::envelope::budget::Account>| {
        accounts.iter().map(|a| (a.key.window, a.key.period.clone(), a.pending, a.posted)).collect::<Vec<_>>()
    };
    assert_eq!(
        held(s.accounts(Some(&brand)).await.unwrap()),
        vec![(Window::Daily, "2026-12-02".into(), 1_000, 0), (Window::Monthly, "2026-12".into(), 1_000, 0)]
    );
    // Opening again reserves nothing more.
    s.write(&c.lease, WriteBatch { intents: vec![IntentOp::Open(a.clone())], ..Default::default() }, t(now))
        .await
        .unwrap();
    assert_eq!(s.accounts(None).await.unwrap()[0].pending, 1_000);

    // The commit posts what was read back (550 of 600); the abandonment voids.
    let commit = vec![
        step(&a.key, IntentPhase::Intended, IntentPhase::Applied, None),
        step(&a.key, IntentPhase::Applied, IntentPhase::Committed, Some(550)),
        step(&c2.key, IntentPhase::Intended, IntentPhase::Abandoned, None),
    ];
    s.write(&c.lease, WriteBatch { intents: commit, ..Default::default() }, t(now + 1)).await.unwrap();
    let replayed = vec![step(&a.key, IntentPhase::Applied, IntentPhase::Committed, Some(550))];
    s.write(&c.lease, WriteBatch { intents: replayed, ..Default::default() }, t(now + 2)).await.unwrap();
    assert_eq!(
        held(s.accounts(None).await.unwrap()),
        vec![(Window::Daily, "2026-12-02".into(), 0, 550), (Window::Monthly, "2026-12".into(), 0, 550)],
        "posted once, the rest returned"
    );
    let transfers = s.transfers().await.unwrap();
    let states: Vec<(&str, TransferState, i64)> =
        transfers.iter().map(|t| (t.id.as_str(), t.state, t.posted)).collect();
    assert_eq!(states, vec![("kill/a", TransferState::Posted, 550), ("kill/c", TransferState::Voided, 0)]);
    assert_eq!(transfers[0].reversed_at, None);

    // The money of a posted transfer came back (a reversal): booked once,
    // the caps unchanged (they count what left); only a committed action
    // with a posted transfer is reversed.
    let reverse = |key: &IdempotencyKey| IntentOp::Reverse { key: key.clone(), cause: "the bank reverted it".into() };
    for _ in 0..2 {
        s.write(&c.lease, WriteBatch { intents: vec![reverse(&a.key)], ..Default::default() }, t(now + 3))
            .await
            .unwrap();
    }
    let ta = s.transfers().await.unwrap().into_iter().find(|t| t.id == a.key).unwrap();
    assert_eq!((ta.state, ta.posted, ta.reversed_at), (TransferState::Reversed, 550, Some(t(now + 3))));
    let reversals = s.events(0).await.unwrap().into_iter().filter(|e| e.after == "reversed").count();
    assert_eq!(reversals, 1, "booked once");
    assert_eq!(s.accounts(None).await.unwrap()[0].posted, 550, "the caps keep what left");
    let refused = s.write(&c.lease, WriteBatch { intents: vec![reverse(&c2.key)], ..Default::default() }, t(now + 3));
    assert!(matches!(refused.await, Err(StoreError::Conflict { .. })), "an abandoned intent has nothing to reverse");

    // The next day in Berlin (23:00 UTC) is a new daily account; the month is shared.
    let tomorrow = DEC_2 + 13 * 3_600_000;
    let d = paying("d", 1_000);
    let e = paying("e", 1_000);
    let ops = vec![IntentOp::Open(d), IntentOp::Open(e.clone())];
    let r = s.write(&c.lease, WriteBatch { intents: ops, ..Default::default() }, t(tomorrow)).await.unwrap();
    assert_eq!(r.refused.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![e.key]);
    assert!(r.refused[0].1.starts_with("daily payout cap 10.00 EUR for 2026-12-03"), "{}", r.refused[0].1);

    // A brand that declared no caps moves no money.
    s.enqueue(job(tick(1), None).for_brand(&BrandId::new("acme")), t(now)).await.unwrap();
    let z = claim_one(&s, "w", inc, now + 3).await;
    let r = s
        .write(&z.lease, WriteBatch { intents: vec![IntentOp::Open(paying("z", 1))], ..Default::default() }, t(now))
        .await
        .unwrap();
    assert!(r.refused[0].1.contains("no cap covers payout in EUR"), "{r:?}");
    assert!(s.accounts(Some(&BrandId::new("acme"))).await.unwrap().is_empty());

    // The log alone rebuilds every transfer's state.
    let rebuilt = replay(&s.events(0).await.unwrap()).expect("the log replays");
    let from_log: Vec<(String, String)> =
        rebuilt.transfers.iter().map(|(k, v)| (k.as_str().to_string(), v.clone())).collect();
    let from_store: Vec<(String, String)> = s
        .transfers()
        .await
        .unwrap()
        .iter()
        .map(|t| (t.id.as_str().to_string(), t.state.as_str().to_string()))
        .collect();
    assert_eq!(from_log, from_store);
}

pub async fn a_reservation_is_atomic_with_its_batch<S: Store>(s: S) {
    let now = DEC_2;
    s.set_budgets(&BrandId::default(), &berlin_caps(), t(now)).await.unwrap();
    let inc = boot(&s, "w", now).await;
    s.enqueue(job(tick(0), None), t(now)).await.unwrap();
    let c = claim_one(&s, "w", inc, now).await;
    // A good reservation in a batch whose later op fails: nothing is written.
    let ghost = IdempotencyKey::new("kill/ghost");
    let ops = vec![IntentOp::Open(paying("a", 600)), step(&ghost, IntentPhase::Intended, IntentPhase::Applied, None)];
    let r = s.write(&c.lease, WriteBatch { intents: ops, ..Default::default() }, t(now)).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert!(s.accounts(None).await.unwrap().is_empty(), "no account moved");
    assert!(s.transfers().await.unwrap().is_empty());
    assert!(s.intent(&IdempotencyKey::new("kill/a")).await.unwrap().is_none());
    // A resolution that the machine does not make is refused with the ledger untouched.
    let ok = s
        .write(&c.lease, WriteBatch { intents: vec![IntentOp::Open(paying("a", 600))], ..Default::default() }, t(now))
        .await
        .unwrap();
    assert!(ok.refused.is_empty());
    let key = IdempotencyKey::new("kill/a");
    let bad = vec![step(&key, IntentPhase::Applied, IntentPhase::Committed, Some(600))];
    let r = s.write(&c.lease, WriteBatch { intents: bad, ..Default::default() }, t(now)).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "committing an intended intent: {r:?}");
    let tr = s.transfers().await.unwrap();
    assert_eq!((tr.len(), tr[0].state), (1, TransferState::Pending));
    // A fenced writer reserves nothing.
    s.finish(&c.lease, Outcome::Completed, vec![], t(now)).await.unwrap();
    let r = s
        .write(&c.lease, WriteBatch { intents: vec![IntentOp::Open(paying("b", 100))], ..Default::default() }, t(now))
        .await;
    assert!(matches!(r, Err(StoreError::Fenced { .. })), "{r:?}");
    assert_eq!(s.accounts(None).await.unwrap()[0].pending, 600);
}
