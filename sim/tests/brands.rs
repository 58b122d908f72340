//! One worker serving two brands, each on its own ads account (its own
//! world), in one store. A brand whose platform rate-limits every call does
//! not hold back the other's work: the healthy brand kills exactly what it
//! kills when it runs alone, at the same instants, and every row either
//! brand wrote is its own.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use dlft_core::act::intent::IntentPhase;
use dlft_core::config::Sabotage;
use dlft_core::ids::{AdId, BrandId, IdempotencyKey};
use dlft_core::jobs::Ports;
use dlft_core::probe::NoProbe;
use dlft_core::sense::ads::{AdStatus, AdsError, AdsPlatform, BatchPause, InsightsPage, InsightsQuery, LibraryAd};
use dlft_core::sense::models::{ModelError, Models, Summary};
use dlft_core::store::SharedMemStore;
use dlft_core::telemetry::EventKind;
use dlft_core::time::Millis;
use dlft_core::worker::{Tenant, Worker};
use dlft_sim::inproc::{InProcessAds, VirtualClock, run_in_process, virtual_runtime};
use dlft_sim::run::{EPOCH, rng_for};
use dlft_sim::scenario::Scenario;
use dlft_sim::world::AdsWorld;

fn scenario() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/ad-kill-container-loss.toml");
    Scenario::load(&path).unwrap()
}

/// A brand's account: served from its world, or rate-limited on every call.
enum Account {
    Healthy(Arc<InProcessAds<VirtualClock>>),
    Throttled,
}

fn throttled<T>() -> Result<T, AdsError> {
    Err(AdsError::RateLimited { code: 17, retry_after: Millis::from_secs(60) })
}

impl AdsPlatform for Account {
    async fn insights(&self, query: &InsightsQuery) -> Result<InsightsPage, AdsError> {
        match self {
            Account::Healthy(a) => a.insights(query).await,
            Account::Throttled => throttled(),
        }
    }
    async fn pause(&self, ad: &AdId, key: &IdempotencyKey) -> Result<(), AdsError> {
        match self {
            Account::Healthy(a) => a.pause(ad, key).await,
            Account::Throttled => throttled(),
        }
    }
    async fn status(&self, ad: &AdId) -> Result<AdStatus, AdsError> {
        match self {
            Account::Healthy(a) => a.status(ad).await,
            Account::Throttled => throttled(),
        }
    }
    async fn pause_batch(&self, items: &[(AdId, IdempotencyKey)]) -> BatchPause {
        match self {
            Account::Healthy(a) => a.pause_batch(items).await,
            Account::Throttled => throttled(),
        }
    }
    async fn library(&self, page: &str) -> Result<Vec<LibraryAd>, AdsError> {
        match self {
            Account::Healthy(a) => a.library(page).await,
            Account::Throttled => throttled(),
        }
    }
}

impl Models for Account {
    async fn summarize(&self, call_id: &str, page: &str, ads: &[LibraryAd]) -> Result<Summary, ModelError> {
        match self {
            Account::Healthy(a) => a.summarize(call_id, page, ads).await,
            Account::Throttled => Err(ModelError::RateLimited { retry_after: Millis::from_secs(60) }),
        }
    }
}

#[test]
fn a_throttled_brand_does_not_hold_back_another() {
    let scn = scenario();
    let north = BrandId::new("north");
    let south = BrandId::new("south");
    for seed in 0..3 {
        let alone = run_in_process(&scn, seed);
        let snapshot = virtual_runtime().block_on(async {
            let clock = VirtualClock::new(EPOCH);
            let world = Arc::new(Mutex::new(AdsWorld::new(&scn, EPOCH, rng_for(seed, 1))));
            let mut ads = InProcessAds::new(world, clock);
            ads.stale = Millis(scn.platform.stale_read_ms);
            let store = SharedMemStore::new();
            let mut cfg = scn.worker_config(Sabotage::None);
            cfg.brands = vec![north.clone(), south.clone()];
            let tenants = [
                (
                    north.clone(),
                    Tenant {
                        ads: Account::Healthy(Arc::new(ads)),
                        loop_cfg: scn.loop_config(),
                        bank: dlft_core::jobs::NoBank,
                    },
                ),
                (
                    south.clone(),
                    Tenant { ads: Account::Throttled, loop_cfg: scn.loop_config(), bank: dlft_core::jobs::NoBank },
                ),
            ];
            let mut worker = Worker {
                // No brand runs on the worker's own port: each has its account.
                ports: Ports {
                    store: store.clone(),
                    ads: Account::Throttled,
                    clock,
                    probe: NoProbe,
                    bank: dlft_core::jobs::NoBank,
                },
                cfg,
                loop_cfg: scn.loop_config(),
                tenants: tenants.into_iter().collect(),
                rng: rng_for(seed, 100),
                stop: Default::default(),
                pulse: Default::default(),
            };
            worker.run(Some(EPOCH + Millis::from_secs(scn.run.duration_s))).await.unwrap();
            store.lock().snapshot()
        });
        // The healthy brand killed what it kills alone, when it kills it alone.
        let kills = |actions: &[dlft_core::act::intent::ActionRow]| {
            actions.iter().map(|a| (a.subject.clone(), a.committed_at)).collect::<BTreeSet<_>>()
        };
        assert!(!alone.store.actions.is_empty(), "seed {seed}: the scenario kills something");
        assert_eq!(kills(&snapshot.actions), kills(&alone.store.actions), "seed {seed}");
        assert!(snapshot.actions.iter().all(|a| a.brand == north), "seed {seed}");
        assert!(snapshot.intents.iter().all(|i| i.brand == north && i.phase == IntentPhase::Committed));
        // The throttled brand kept trying, on its own schedule, and wrote nothing else.
        let south_rows: Vec<_> = snapshot.events.iter().filter(|e| e.brand.as_ref() == Some(&south)).collect();
        assert!(south_rows.iter().any(|e| e.kind == EventKind::JobRetried), "seed {seed}: south's ticks retried");
        assert!(
            south_rows.iter().all(|e| matches!(
                e.kind,
                EventKind::SlotFired
                    | EventKind::JobEnqueued
                    | EventKind::JobClaimed
                    | EventKind::JobRetried
                    | EventKind::JobDiscarded
                    | EventKind::JobCompleted
                    // Its hourly re-roll splits nothing: it knows no live ad.
                    | EventKind::AllocationRolled
            )),
            "seed {seed}: south wrote no spend, verdict or intent: {:?}",
            south_rows.iter().map(|e| e.kind).collect::<BTreeSet<_>>()
        );
        let south_jobs = snapshot.jobs.iter().filter(|j| j.brand == south).count();
        let north_jobs = snapshot.jobs.iter().filter(|j| j.brand == north).count();
        assert!(south_jobs > 0 && north_jobs > 0, "seed {seed}: {south_jobs} south, {north_jobs} north");
        let brands: BTreeSet<&str> = snapshot.schedules.iter().map(|s| s.brand.as_str()).collect();
        assert_eq!(brands, BTreeSet::from(["north", "south"]), "each brand has its own schedules");
        assert!(snapshot.costs.iter().all(|c| c.brand == north || c.brand == south));
        assert!(
            snapshot.costs.iter().any(|c| c.brand == south && !c.ok),
            "south's refused calls are booked as south's"
        );
    }
}

/// The `multi-brand` scenario's checker catches a brand acting on another
/// brand's ads (every brand's jobs on one shared account), on both drivers,
/// and an honest build breaks nothing.
#[test]
fn the_checker_catches_a_brand_acting_on_another_brands_ads() {
    use dlft_sim::run::{RunOptions, run_seed};
    use dlft_sim::scenario::Driver;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/multi-brand.toml");
    for driver in [Driver::Event, Driver::Turmoil] {
        let mut scn = Scenario::load(&path).unwrap();
        scn.run.driver = driver;
        for (sabotage, seeds) in [(Sabotage::None, 0..3), (Sabotage::SharedAccount, 0..2)] {
            let opts = RunOptions { sabotage, keep_events: false };
            let mut broken = BTreeSet::new();
            for seed in seeds {
                let r = run_seed(&scn, seed, &opts).unwrap();
                broken.extend(r.violations.iter().map(|v| v.invariant.clone()));
                if sabotage == Sabotage::None {
                    assert!(r.faults.revoked_refusals > 0, "{driver:?} seed {seed}: the revoked account was refused");
                }
            }
            match sabotage {
                Sabotage::None => assert!(broken.is_empty(), "{driver:?}: an honest build breaks {broken:?}"),
                _ => assert!(broken.contains("brand_isolation"), "{driver:?} {sabotage:?}: caught {broken:?}"),
            }
        }
    }
}
