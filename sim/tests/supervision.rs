//! The scheduler as a supervisor, on the event driver: a hang in one job
//! kind does not starve another, and stopping hands every claim back.

use std::path::Path;

use dlft_core::config::Sabotage;
use dlft_core::store::{IntentPhase, JobKind, JobState};
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
    let scan = run.store.jobs.iter().find(|j| j.task.kind() == JobKind::ScanStore && j.state == JobState::Available);
    let scan = scan.expect("an available scan job");
    assert_eq!(scan.resumes, 0, "a handed-back attempt is not a crash resume");
}
