//! Kill escalation through the sim: with ad-level pauses acknowledged
//! without effect, the ad set (then the campaign) is paused in time and
//! resumed once the ad is confirmed; each checker invariant about it
//! catches a deliberately broken build.

use dlft_core::config::Sabotage;
use dlft_core::telemetry::EventKind;
use dlft_sim::run::{RunOptions, run_seed};

mod common;
use common::{caught, run, scenario};

/// (sabotage, scenario, the invariant that must catch it).
const SABOTAGES: &[(Sabotage, &str, &str)] = &[
    // No escalation: ads whose own pause keeps failing spend past the deadline.
    (Sabotage::NoEscalation, "escalation-90.toml", "kill_deadline"),
    // No resume: siblings stay paused as collateral after the kills are confirmed.
    (Sabotage::KeepCollateral, "escalation-50.toml", "collateral_restored"),
];

#[test]
fn every_escalation_invariant_catches_a_broken_build() {
    for (sabotage, file, invariant) in SABOTAGES {
        let scn = scenario(file);
        let broken = caught(&run(&scn, 0..6, *sabotage));
        assert!(
            broken.get(*invariant).copied().unwrap_or(0) > 0,
            "{sabotage:?} on {file}: {invariant} silent: {broken:?}"
        );
        let honest = run(&scn, 0..6, Sabotage::None);
        assert!(caught(&honest).is_empty(), "{file} honest: {:?}", caught(&honest));
        assert!(honest.iter().any(|r| r.escalations > 0), "{file}: nothing escalated in 6 seeds");
    }
}

/// Every step is an event row: the ad set's pause opened with its reason,
/// committed on its read-back, and its resume opened only after the kill
/// it served was committed.
#[test]
fn each_escalation_step_is_an_event_row_and_resumes_follow_the_kills() {
    let scn = scenario("escalation-50.toml");
    let mut seen = 0;
    for seed in 0..6 {
        let r = run_seed(&scn, seed, &RunOptions { sabotage: Sabotage::None, keep_events: true }).unwrap();
        let log = r.log.as_ref().unwrap();
        let at = |entity: &str, kind: EventKind, after: &str| {
            log.iter().find(|e| e.entity == entity && e.kind == kind && e.after == after).map(|e| e.seq)
        };
        for opened in log.iter().filter(|e| e.kind == EventKind::IntentOpened && e.entity.ends_with("/adset")) {
            seen += 1;
            let kill = opened.entity.trim_end_matches("/adset");
            assert!(at(kill, EventKind::IntentOpened, "intended").is_some_and(|s| s < opened.seq), "{kill} first");
            assert!(opened.cause.contains("has not taken effect") && opened.cause.contains("adset-"), "{opened:?}");
        }
        // A resume is opened only once the kill of the pause it is keyed by
        // has committed.
        for resume in log.iter().filter(|e| e.kind == EventKind::IntentOpened && e.entity.ends_with("/resume")) {
            let pause = resume.entity.trim_end_matches("/resume");
            let kill = pause.trim_end_matches("/adset").trim_end_matches("/campaign");
            assert!(resume.cause.starts_with("every kill that paused"), "{resume:?}");
            let committed = at(kill, EventKind::IntentAdvanced, "committed");
            assert!(
                committed.is_some_and(|c| c < resume.seq),
                "seed {seed}: {} before {kill} committed",
                resume.entity
            );
            assert!(at(pause, EventKind::IntentAdvanced, "committed").is_some(), "{pause} took effect first");
        }
    }
    assert!(seen > 0, "no escalation in 6 seeds of escalation-50");
}
