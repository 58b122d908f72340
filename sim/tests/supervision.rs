//! The scheduler as a supervisor, on the event driver: a hang in one job
//! kind does not starve another, and stopping hands every claim back.

use std::path::Path;

use dlft_core::act::intent::IntentPhase;
use dlft_core::config::Sabotage;
use dlft_core::schedule::task::JobKind;
use dlft_core::store::JobState;
use dlft_core::telemetry::EventKind;
use dlft_core::time::Millis;
use dlft_sim::checker::{CheckInput, check};
use dlft_sim::inproc::run_in_process_until;
use dlft_sim::run::EPOCH;
use dlft_sim::scenario::Scenario;

fn scan_scenario() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/scan-crash-loop.toml");
    Scenario::load(&path).unwrap()
}

#[test]
fn a_hanging_kind_does_not_starve_the_others() {
    let scn = scan_scenario();
    let run = run_in_process_until(&scn, 1, Sabotage::None, None, true);
    // Scans hang on the model call; their pool times them out and retries.
    let hung = run.store.events.iter().filter(|e| e.kind == EventKind::JobRetried && e.cause.contains("hung")).count();
    assert!(hung > 0, "scan jobs were abandoned at their timeout");
    assert!(run.store.activities.is_empty(), "no scan ever completed");
    // Meanwhile the kill loop ran as if nothing happened.
    let kills = run.store.intents.iter().filter(|i| i.phase == IntentPhase::Committed).count();
    assert!(kills >= 3, "only {kills} kills");
    let verdict = check(&CheckInput {
        seed: 1,
        world: &run.world,
        store: &run.store,
        end: run.end,
        kill_deadline: Millis::from_secs(scn.assertions.kill_deadline_s),
        settled_until: run.end - Millis(3 * run.world.bucket().0),
        commit_within: None,
        bank: None,
        shop: None,
        support: None,
        resume_within: Millis(0),
    });
    assert!(verdict.violations.is_empty(), "{:?}", verdict.violations);
}

#[test]
fn stopping_hands_every_claim_back_with_its_attempt() {
    let scn = scan_scenario();
    // Stop mid-run while scans hang (one is always held then).
    let run = run_in_process_until(&scn, 2, Sabotage::None, Some(EPOCH + Millis::from_secs(150)), true);
    let running: Vec<_> = run.store.jobs.iter().filter(|j| j.state == JobState::Running).collect();
    assert!(running.is_empty(), "claims left behind: {running:?}");
    let handed_back = run
        .store
        .events
        .iter()
        .filter(|e| e.kind == EventKind::JobReleased && e.cause.starts_with("graceful shutdown"))
        .count();
    assert!(handed_back > 0, "the held scan was handed back");
    let scan = run.store.jobs.iter().find(|j| j.kind == JobKind::ScanStore.as_str() && j.state == JobState::Available);
    let scan = scan.expect("an available scan job");
    assert_eq!(scan.resumes, 0, "a handed-back attempt is not a crash resume");
}

#[test]
fn a_job_whose_payload_does_not_deserialize_is_discarded_with_its_reason() {
    use std::sync::{Arc, Mutex};

    use dlft_core::store::{NewJob, SharedMemStore, Store};
    use dlft_core::time::Timestamp;
    use dlft_sim::inproc::{VirtualClock, virtual_runtime};
    use dlft_sim::run::rng_for;
    use dlft_sim::world::AdsWorld;

    let scn = scan_scenario();
    let store = SharedMemStore::new();
    let garbled = NewJob {
        brand: dlft_core::ids::BrandId::default(),
        kind: "kill_ad".into(),
        payload: serde_json::json!({"kind": "kill_ad", "ad": ["not", "an", "id"]}),
        priority: 0,
        run_at: Timestamp(0),
        idempotency_key: None,
    };
    let bad = futures_lite_block(store.enqueue(garbled, EPOCH)).unwrap().id();
    virtual_runtime().block_on(async {
        let clock = VirtualClock::new(EPOCH);
        let world = Arc::new(Mutex::new(AdsWorld::new(&scn, EPOCH, rng_for(3, 1))));
        let mut worker = in_process_worker(&store, world, clock, &scn, 3, scn.worker_config(Sabotage::None));
        worker.run(Some(EPOCH + Millis::from_secs(300))).await.unwrap();
    });
    let s = store.lock();
    let job = s.job(bad).unwrap();
    assert_eq!(job.state, JobState::Discarded);
    assert!(job.errors.iter().any(|e| e.contains("does not deserialize")), "{:?}", job.errors);
    let ticks = s.events().iter().filter(|e| e.kind == EventKind::JobCompleted).count();
    assert!(ticks > 3, "the rest of the loop ran undisturbed");
}

/// The MemStore's futures are ready at once.
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    match std::pin::pin!(f).as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("not ready"),
    }
}

#[test]
fn a_job_waiting_longer_than_its_lease_keeps_it_by_heartbeat() {
    // Read-backs lag 20 s, so every kill waits in its confirmation window
    // (up to 30 s) without writing, twice its 10 s lease. Heartbeats keep
    // the lease: no other attempt may claim the job meanwhile.
    let mut scn =
        Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/ad-kill-container-loss.toml"))
            .unwrap();
    scn.platform.stale_read_ms = 20_000;
    scn.control.readback_confirm_ms = 30_000;
    assert!(scn.control.lease_ms * 2 <= 20_000);
    let run = run_in_process_until(&scn, 1, Sabotage::None, None, false);
    let stolen: Vec<_> =
        run.store.events.iter().filter(|e| e.kind == EventKind::JobClaimed && e.cause.contains("expired")).collect();
    assert!(stolen.is_empty(), "leases ran out under running jobs: {stolen:?}");
    let kills: Vec<_> = run.store.jobs.iter().filter(|j| j.kind == JobKind::KillAd.as_str()).collect();
    assert!(!kills.is_empty() && kills.iter().all(|j| j.resumes == 0 && j.state == JobState::Completed), "{kills:?}");
    let committed = run.store.intents.iter().filter(|i| i.phase == IntentPhase::Committed).count();
    assert_eq!(committed, kills.len(), "every kill committed once the read-back caught up");
}

#[test]
fn a_brand_day_re_rolls_the_bandit_hourly() {
    let scn = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/brand-day.toml")).unwrap();
    assert_eq!(scn.control.reroll_s, 3_600, "the production cadence");
    let run = run_in_process_until(&scn, 0, Sabotage::None, None, false);
    let slots: Vec<u64> = run.store.allocations.iter().map(|a| (a.slot.0 - EPOCH.0) / 3_600_000).collect();
    assert_eq!(slots, (0..scn.run.duration_s / 3_600).collect::<Vec<_>>(), "one allocation per hour");
    // The first slot comes before any delivery: nothing to split yet.
    assert!(run.store.allocations[0].shares.is_empty());
    for a in &run.store.allocations[1..] {
        assert_eq!(a.shares.iter().map(|s| s.share_bp).sum::<u32>(), dlft_core::propose::allocation::WHOLE_BP, "{a:?}");
        // Killed ads get no budget.
        let killed = |ad: &dlft_core::ids::AdId| {
            run.store.intents.iter().any(|i| i.action.killed_ad() == Some(ad) && i.opened_at <= a.slot)
        };
        assert!(a.shares.iter().all(|s| !killed(&s.ad)), "{a:?}");
    }
    let rolled = run.store.events.iter().filter(|e| e.kind == EventKind::AllocationRolled).count();
    assert_eq!(rolled, run.store.allocations.len(), "one event row per allocation");
}

/// A worker whose id is booted again elsewhere (a second process with the
/// same name) stops every loop at once and says it was replaced, rather
/// than fire schedules forever with pools that can claim nothing (the
/// silent stall). Both ways of learning it are covered: with presence
/// beats, and with claims alone.
#[test]
fn a_replaced_worker_stops_every_loop_at_once() {
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    use dlft_core::config::PresenceConfig;
    use dlft_core::store::{SharedMemStore, Store, StoreError};
    use dlft_core::time::Clock;
    use dlft_core::worker::Pulse;
    use dlft_sim::inproc::{VirtualClock, virtual_runtime};
    use dlft_sim::run::rng_for;
    use dlft_sim::world::AdsWorld;

    for beats in [true, false] {
        let scn = scan_scenario();
        let store = SharedMemStore::new();
        let clock = VirtualClock::new(EPOCH);
        let world = Arc::new(Mutex::new(AdsWorld::new(&scn, EPOCH, rng_for(4, 1))));
        let mut cfg = scn.worker_config(Sabotage::None);
        if beats {
            cfg.presence = Some(PresenceConfig { host: "h".into(), pid: 7, every: Millis(1_000) });
        }
        let id = cfg.worker.clone();
        let pulse = Arc::new(Pulse::default());
        let mut worker = in_process_worker(&store, world, clock, &scn, 4, cfg);
        worker.pulse = pulse.clone();
        let replaced_at = EPOCH + Millis::from_secs(60);
        let (out, stopped_at) = virtual_runtime().block_on(async {
            let rival = store.clone();
            let rival_id = id.clone();
            tokio::spawn(async move {
                clock.sleep(Millis::from_secs(60)).await;
                rival.boot(&rival_id, clock.now()).await.unwrap();
            });
            // Without the fix this never returns: `until` is an hour away.
            let out = worker.run(Some(EPOCH + Millis::from_secs(3_600))).await;
            (out, clock.now())
        });
        assert!(matches!(out, Err(StoreError::StaleIncarnation { .. })), "beats {beats}: {out:?}");
        let took = stopped_at.since(replaced_at);
        assert!(took <= Millis(2_000), "beats {beats}: stopped {took:?} after being replaced");
        assert_eq!(pulse.state.load(Ordering::SeqCst), Pulse::REPLACED);
        if beats {
            let rows = futures_lite_block(store.workers()).unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].beat_at, None, "the new incarnation has not beaten; the old one's beats were refused");
        }
    }
}

#[test]
fn a_kill_past_the_breakers_cap_spends_an_attempt_and_still_stops_the_ad() {
    use std::sync::{Arc, Mutex};

    use dlft_core::act::intent::{IntentOp, NewIntent};
    use dlft_core::envelope::{Decision, Verdict};
    use dlft_core::estimate::estimator::AdEstimate;
    use dlft_core::ids::{AdId, IdempotencyKey, WorkerId};
    use dlft_core::jobs::tick::kill_job;
    use dlft_core::money::{Currency, Money};
    use dlft_core::store::{ClaimRequest, SharedMemStore, Store, WriteBatch};
    use dlft_sim::inproc::{VirtualClock, virtual_runtime};
    use dlft_sim::run::rng_for;
    use dlft_sim::world::AdsWorld;

    let scn = Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/ad-kill-container-loss.toml"))
        .unwrap();
    let world = AdsWorld::new(&scn, EPOCH, rng_for(4, 1));
    let ad: AdId = world.specs().next().unwrap().id.clone();
    let key = IdempotencyKey::new(format!("kill/{ad}"));
    let store = SharedMemStore::new();
    futures_lite_block(store.enqueue(kill_job(&key, &ad, EPOCH), EPOCH)).unwrap();
    // A worker opens the kill's intent and dies holding the job; so does
    // every boot after it, four times in all: one resume past the breaker's cap.
    let crasher = WorkerId::new("crasher");
    for round in 0..=dlft_core::schedule::rules::MAX_RESUME_ATTEMPTS {
        let inc = futures_lite_block(store.boot(&crasher, EPOCH)).unwrap().incarnation;
        let req = ClaimRequest {
            brands: vec![dlft_core::ids::BrandId::default()],
            worker: crasher.clone(),
            incarnation: inc,
            kinds: vec![JobKind::KillAd],
            limit: 1,
            lease_for: Millis::from_secs(60),
        };
        let claim = futures_lite_block(store.claim(&req, EPOCH)).unwrap().remove(0);
        if round == 0 {
            let open = IntentOp::Open(NewIntent {
                key: key.clone(),
                action: dlft_core::act::intent::Action::KillAd { ad: ad.clone() },
                evidence: dlft_core::act::intent::Evidence::Kill(AdEstimate {
                    ad: ad.clone(),
                    first_bucket: EPOCH,
                    matured_until: EPOCH,
                    matured_spend: Money::new(9000, Currency::EUR),
                    matured_purchases: 0,
                    matured_revenue: Money::zero(Currency::EUR),
                    in_learning: false,
                }),
                verdict: Verdict {
                    ad: ad.clone(),
                    key: key.clone(),
                    decision: Decision::Approve,
                    at: EPOCH,
                    reason: String::new(),
                },
                reserve: None,
            });
            let batch = WriteBatch { intents: vec![open], ..WriteBatch::default() };
            futures_lite_block(store.write(&claim.lease, batch, EPOCH)).unwrap();
        }
    }
    futures_lite_block(store.boot(&crasher, EPOCH)).unwrap();
    let job = store.lock().live_jobs().next().unwrap().clone();
    // Resumes are counted at the claim: the next one is past the cap.
    assert_eq!(job.resumes, dlft_core::schedule::rules::MAX_RESUME_ATTEMPTS);
    assert!(job.interrupted);

    virtual_runtime().block_on(async {
        let clock = VirtualClock::new(EPOCH);
        let world = Arc::new(Mutex::new(world));
        let mut worker = in_process_worker(&store, world, clock, &scn, 4, scn.worker_config(Sabotage::None));
        // Well within the minute before the first tick's sweep could re-drive it.
        worker.run(Some(EPOCH + Millis::from_secs(20))).await.unwrap();
    });
    let s = store.lock();
    let intent = s.intent(&key).unwrap();
    assert_eq!(intent.phase, IntentPhase::Committed, "the kill went on instead of waiting for the next tick");
    assert_eq!(intent.attempts, 2, "one attempt spent by the breaker, one by the pause");
    assert_eq!(s.job(job.id).unwrap().state, JobState::Completed);
}

type InProcessWorker = dlft_core::worker::Worker<
    dlft_core::store::SharedMemStore,
    std::sync::Arc<dlft_sim::inproc::InProcessAds<dlft_sim::inproc::VirtualClock>>,
    dlft_sim::inproc::VirtualClock,
    dlft_core::probe::NoProbe,
    rand_chacha::ChaCha8Rng,
>;

/// A worker on `store` and the in-process platform (no faults), on virtual time.
fn in_process_worker(
    store: &dlft_core::store::SharedMemStore,
    world: std::sync::Arc<std::sync::Mutex<dlft_sim::world::AdsWorld>>,
    clock: dlft_sim::inproc::VirtualClock,
    scn: &Scenario,
    seed: u64,
    cfg: dlft_core::config::WorkerConfig,
) -> InProcessWorker {
    dlft_core::worker::Worker {
        ports: dlft_core::jobs::Ports {
            store: store.clone(),
            ads: std::sync::Arc::new(dlft_sim::inproc::InProcessAds::new(world, clock)),
            clock,
            probe: dlft_core::probe::NoProbe,
            bank: dlft_core::jobs::NoBank,
        },
        cfg,
        loop_cfg: scn.loop_config(),
        tenants: Default::default(),
        rng: dlft_sim::run::rng_for(seed, 100),
        stop: Default::default(),
        pulse: Default::default(),
    }
}
