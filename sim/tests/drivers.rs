//! The two drivers judge alike: the same scenario, seeds and sabotages on
//! turmoil and on the event driver break the same invariants, and a build
//! that is not sabotaged breaks none on either.

use std::collections::BTreeSet;
use std::path::Path;

use dlft_core::config::Sabotage;
use dlft_sim::run::{RunOptions, run_seed};
use dlft_sim::scenario::{Driver, Scenario};

fn scenario(driver: Driver) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/webhook-lies.toml");
    let mut scn = Scenario::load(&path).unwrap();
    scn.run.driver = driver;
    scn
}

/// The invariants broken over `seeds`, and the money leaked.
fn broken(driver: Driver, sabotage: Sabotage, seeds: std::ops::Range<u64>) -> (BTreeSet<String>, i64) {
    let scn = scenario(driver);
    let opts = RunOptions { sabotage, keep_events: false };
    let mut invariants = BTreeSet::new();
    let mut leak = 0;
    for seed in seeds {
        let r = run_seed(&scn, seed, &opts).unwrap();
        invariants.extend(r.violations.iter().map(|v| v.invariant.clone()));
        leak += r.leak_cents;
    }
    (invariants, leak)
}

#[test]
fn both_drivers_catch_the_same_sabotages() {
    for sabotage in [Sabotage::None, Sabotage::SkipIntent, Sabotage::SkipReadBack, Sabotage::TrustWebhooks] {
        let (t, t_leak) = broken(Driver::Turmoil, sabotage, 0..6);
        let (e, e_leak) = broken(Driver::Event, sabotage, 0..6);
        println!("{sabotage:?}: turmoil {t:?} ({t_leak} cents), event {e:?} ({e_leak} cents)");
        assert_eq!(t, e, "{sabotage:?}: the drivers disagree on which invariants break");
        assert_eq!(t_leak > 0, e_leak > 0, "{sabotage:?}: one driver sees a leak, the other none");
        match sabotage {
            Sabotage::None => assert!(t.is_empty() && t_leak == 0, "an honest build breaks {t:?}"),
            _ => assert!(!t.is_empty(), "{sabotage:?} went unnoticed on both drivers"),
        }
    }
}

#[test]
fn one_seed_reproduces_its_event_run_faults_and_all() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/every-fault.toml");
    let scn = Scenario::load(&path).unwrap();
    assert_eq!(scn.run.driver, Driver::Event);
    let opts = RunOptions::default();
    let a = run_seed(&scn, 5, &opts).unwrap();
    let b = run_seed(&scn, 5, &opts).unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.mttr_ms, b.mttr_ms);
    assert_eq!(a.faults, b.faults);
    assert_eq!(a.crash_sites, b.crash_sites);
    let c = run_seed(&scn, 6, &opts).unwrap();
    assert_ne!(a.digest, c.digest, "different seeds, different runs");
    assert!(a.crashes > 0 && !a.mttr_ms.is_empty(), "containers were lost and recovered from");
    let f = &a.faults;
    assert!(f.db_partitions > 0 && f.ads_partitions > 0 && f.timeout_storms > 0 && f.webhook_lies > 0, "{f:?}");
}

#[test]
fn shrinking_works_on_the_event_driver() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/every-fault.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("mttr_p99_ms_max = 4200", "mttr_p99_ms_max = 100");
    let strict = Scenario::parse(&text, &path).unwrap();
    let plan = dlft_sim::run::plan_for(&strict, 3);
    assert!(plan.timed.len() + plan.site_crashes.len() >= 4, "the seed plans several faults: {plan}");
    let shrunk = dlft_sim::shrink::shrink(&strict, 3, &RunOptions::default(), plan).unwrap().expect("it fails");
    let m = &shrunk.minimal;
    assert_eq!(m.timed.len() + m.site_crashes.len(), 1, "one container loss is enough: {m}");
    assert!(shrunk.failure.contains("mttr"), "{}", shrunk.failure);
}
