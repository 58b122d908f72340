//! The loop with no network and no faults, on a manual clock: every external
//! call has exactly one cost row, the log rebuilds the state, and the
//! checker finds nothing.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use dlft_core::config::Sabotage;
use dlft_core::probe::NoProbe;
use dlft_core::store::{IntentPhase, SharedMemStore};
use dlft_core::time::{ManualClock, Millis};
use dlft_core::worker::{Ports, Worker};
use dlft_sim::checker::{CheckInput, check};
use dlft_sim::inproc::InProcessAds;
use dlft_sim::run::{EPOCH, rng_for};
use dlft_sim::scenario::Scenario;
use dlft_sim::world::AdsWorld;

/// Every port here is ready at once and the manual clock's sleep only moves
/// time, so the whole run completes in one poll.
fn block_on<F: Future>(f: F) -> F::Output {
    match pin!(f).as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("in-process run waited on something"),
    }
}

fn scenario() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/ad-kill-container-loss.toml");
    Scenario::load(&path).unwrap()
}

#[test]
fn clean_run_books_every_call_and_kills_losers() {
    let scn = scenario();
    for seed in 0..5 {
        let clock = Arc::new(ManualClock::new(EPOCH));
        let world = Arc::new(Mutex::new(AdsWorld::new(&scn, EPOCH, rng_for(seed, 1))));
        let ads = Arc::new(InProcessAds::new(world.clone(), clock.clone()));
        let store = SharedMemStore::new();
        let mut worker = Worker {
            ports: Ports { store: store.clone(), ads: ads.clone(), clock: clock.clone(), probe: NoProbe },
            cfg: scn.worker_config(Sabotage::None),
            loop_cfg: scn.loop_config(),
            rng: rng_for(seed, 100),
        };
        let end = EPOCH + Millis::from_secs(scn.run.duration_s);
        block_on(worker.run(Some(end))).unwrap();

        let snap = store.lock().snapshot();
        assert_eq!(snap.costs.len() as u64, ads.calls(), "seed {seed}: one cost row per external call");
        let world = world.lock().unwrap().clone();
        let verdict = check(&CheckInput {
            seed,
            world: &world,
            store: &snap,
            end,
            kill_deadline: Millis::from_secs(scn.assertions.kill_deadline_s),
            settled_until: end - Millis(3 * world.bucket().0),
        });
        assert_eq!(verdict.violations, vec![], "seed {seed}");
        let killed: Vec<_> = snap.intents.iter().filter(|i| i.phase == IntentPhase::Committed).collect();
        let losers = world.specs().filter(|s| s.loser).count();
        let losers_killed = killed.iter().filter(|i| world.is_loser(&i.ad)).count();
        assert!(losers_killed * 2 >= losers, "seed {seed}: only {losers_killed} of {losers} losers killed");
    }
}
