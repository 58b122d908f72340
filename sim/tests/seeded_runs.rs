//! Seeds through the drivers (turmoil, or the event driver where the scenario
//! says so): one seed reproduces a run, and the
//! checker catches a deliberately broken actuator.

use std::path::Path;

use dlft_core::config::Sabotage;
use dlft_sim::run::{RunOptions, SeedReport, run_seed};
use dlft_sim::scenario::Scenario;

fn scenario() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/ad-kill-container-loss.toml");
    Scenario::load(&path).unwrap()
}

fn run(scn: &Scenario, seed: u64, sabotage: Sabotage) -> SeedReport {
    run_seed(scn, seed, &RunOptions { sabotage, keep_events: false }).unwrap()
}

#[test]
fn one_seed_reproduces_its_run_and_seeds_differ() {
    let scn = scenario();
    let a = run(&scn, 11, Sabotage::None);
    let b = run(&scn, 11, Sabotage::None);
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.mttr_ms, b.mttr_ms);
    assert_eq!(a.plan, b.plan);
    let c = run(&scn, 12, Sabotage::None);
    assert_ne!(a.digest, c.digest, "different seeds, different runs");
    assert!(a.crashes > 0 && !a.mttr_ms.is_empty(), "the seed injected container loss");
}

#[test]
fn skipping_the_intent_write_is_caught() {
    let scn = scenario();
    let reports: Vec<_> = (0..4).map(|s| run(&scn, s, Sabotage::SkipIntent)).collect();
    let caught = reports.iter().flat_map(|r| &r.violations).filter(|v| v.invariant == "write_ahead").count();
    assert!(caught > 0, "no write_ahead violation over 4 seeds");
}

#[test]
fn skipping_the_read_back_is_caught() {
    let scn = scenario();
    // The platform acknowledges some pauses without pausing; without a
    // read-back those kills are committed while the ad keeps spending.
    let reports: Vec<_> = (0..10).map(|s| run(&scn, s, Sabotage::SkipReadBack)).collect();
    let leak: i64 = reports.iter().map(|r| r.leak_cents).sum();
    let receipts = reports.iter().flat_map(|r| &r.violations).filter(|v| v.invariant == "receipt_has_effect").count();
    assert!(leak > 0, "no leak over 10 seeds");
    assert!(receipts > 0, "no receipt without effect over 10 seeds");
}

#[test]
fn a_crash_looping_pipeline_trips_the_breaker_after_three_resumes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/scan-crash-loop.toml");
    let scn = Scenario::load(&path).unwrap();
    let price = scn.scan.as_ref().unwrap().model_call_cents;
    for seed in 0..3 {
        let r = run(&scn, seed, Sabotage::None);
        // The first run and three resumes die; the fourth resume is refused.
        assert_eq!(r.loop_crashes, dlft_core::schedule::rules::MAX_RESUME_ATTEMPTS + 1, "seed {seed}");
        assert_eq!(r.breakers.len(), 1, "seed {seed}: {:?}", r.breakers);
        let (schedule, reason) = &r.breakers[0];
        assert_eq!(schedule, "scan/page-2");
        assert!(reason.contains("resumes"), "the reason is recorded: {reason}");
        // No budget burned: one paid call per life of the poisoned scan, no more.
        let burned = r.model_cents_by_page.get("page-2").copied().unwrap_or(0);
        assert!(burned <= 4 * price, "seed {seed}: page-2 cost {burned} cents");
        assert!(r.model_cents_by_page.get("page-1").copied().unwrap_or(0) > 0, "other stores keep being scanned");
        assert_eq!(r.leak_cents, 0);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
    }
}

#[test]
fn shrinking_keeps_exactly_the_fault_the_failure_needs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/ad-kill-container-loss.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("mttr_p99_ms_max = 4200", "mttr_p99_ms_max = 100");
    let strict = Scenario::parse(&text, &path).unwrap();
    let plan = dlft_sim::run::plan_for(&strict, 4);
    let faults = plan.timed.len() + plan.site_crashes.len();
    assert!(faults >= 3, "the seed plans several faults: {plan}");
    let shrunk = dlft_sim::shrink::shrink(&strict, 4, &RunOptions::default(), plan).unwrap().expect("it fails");
    // Any one container loss breaks a 100 ms MTTR bound; nothing else is needed.
    let m = &shrunk.minimal;
    assert_eq!(m.timed.len() + m.site_crashes.len(), 1, "minimal: {m}");
    let one_crash = m.site_crashes.len() == 1 || matches!(m.timed[0].fault, dlft_sim::faults::Fault::Crash { .. });
    assert!(one_crash, "the one fault left is a container loss: {m}");
    assert!(shrunk.failure.contains("mttr"), "{}", shrunk.failure);
    // And a passing seed has nothing to shrink.
    let scn = scenario();
    assert!(
        dlft_sim::shrink::shrink(&scn, 4, &RunOptions::default(), dlft_sim::run::plan_for(&scn, 4)).unwrap().is_none()
    );
}

#[test]
fn two_workers_share_the_work_and_nothing_happens_twice() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/two-workers-racing.toml");
    let scn = Scenario::load(&path).unwrap();
    for seed in 0..3 {
        let r = run(&scn, seed, Sabotage::None);
        let claims = &r.claims_by_worker;
        assert!(claims.get("worker-1").copied().unwrap_or(0) > 0, "seed {seed}: {claims:?}");
        assert!(claims.get("worker-2").copied().unwrap_or(0) > 0, "seed {seed}: {claims:?}");
        // slot_once, at_most_once and the rest are in the checker's verdict.
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
        assert_eq!(r.leak_cents, 0);
    }
}

#[test]
fn trusting_webhooks_is_caught_and_reading_back_is_not() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/webhook-lies.toml");
    let scn = Scenario::load(&path).unwrap();
    // The platform "confirms" pauses it acknowledged without effect: a loop
    // that commits on a webhook's word commits kills that never happened.
    let trusting: Vec<_> = (0..4).map(|s| run(&scn, s, Sabotage::TrustWebhooks)).collect();
    let receipts = trusting.iter().flat_map(|r| &r.violations).filter(|v| v.invariant == "receipt_has_effect").count();
    assert!(receipts > 0, "no receipt without effect over 4 seeds");
    assert!(trusting.iter().map(|r| r.leak_cents).sum::<i64>() > 0);
    // The same seeds, reading back: clean, and some kills were committed by
    // a webhook's reconcile job (the hint made the commit come sooner).
    let honest: Vec<_> = (0..4).map(|s| run(&scn, s, Sabotage::None)).collect();
    for r in &honest {
        assert!(r.violations.is_empty(), "seed {}: {:?}", r.seed, r.violations);
        assert!(r.faults.webhook_lies > 0 && r.faults.webhook_duplicates > 0, "seed {}: the platform lied", r.seed);
    }
    assert!(honest.iter().map(|r| r.webhook_commits).sum::<u32>() > 0, "no kill committed through a webhook");
}

#[test]
fn the_re_roll_writes_one_allocation_per_slot_across_workers_and_crashes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/two-workers-racing.toml");
    let scn = Scenario::load(&path).unwrap();
    let slots = (scn.run.duration_s / scn.control.reroll_s) as u32;
    for seed in 0..3 {
        let r = run(&scn, seed, Sabotage::None);
        assert!(r.crashes > 0, "seed {seed}: containers died");
        assert_eq!(r.rerolls, slots, "seed {seed}: one allocation per slot");
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
    }
}
