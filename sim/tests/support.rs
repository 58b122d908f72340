//! The support loop through the sim: the checker's support invariants hold
//! on the shipped scenarios, each catches a deliberately broken build, the
//! gate holds without its detector, and the breakers open and close in the
//! store as a vendor goes down and comes back.

use std::collections::BTreeMap;

use dlft_core::config::Sabotage;
use dlft_core::telemetry::EventKind;
use dlft_sim::run::{RunOptions, run_seed};

mod common;
use common::{caught, run, scenario};

#[test]
fn the_honest_loop_answers_every_message_once() {
    for file in ["support-hostile.toml", "model-outage.toml", "model-budget.toml", "support-container-loss.toml"] {
        let scn = scenario(file);
        let reports = run(&scn, 0..3, Sabotage::None);
        assert_eq!(caught(&reports), BTreeMap::new(), "{file}");
        for r in &reports {
            assert!(r.messages > 20, "{file} seed {}: {} messages", r.seed, r.messages);
            assert_eq!(r.replies, r.messages, "{file} seed {}: every message answered once, committed", r.seed);
            assert!(r.replies_flagged > 0, "{file} seed {}: no hostile message flagged", r.seed);
            assert!(r.faults.inbox_lost_replies + r.faults.inbox_server_errors > 0, "{file}: the inbox never failed");
            if file != "model-budget.toml" {
                assert!(r.offer_refunds > 0, "{file} seed {}: no accepted offer was refunded", r.seed);
            }
        }
    }
}

/// (sabotage, scenario, the invariant that must catch it).
const SABOTAGES: &[(Sabotage, &str, &str)] = &[
    // The gate opened: the compromised model's amounts reach customers...
    (Sabotage::OpenGate, "support-hostile.toml", "reply_ceiling"),
    // ... and its leaks, links and image beacons.
    (Sabotage::OpenGate, "support-hostile.toml", "reply_leak"),
    // A fresh marker per attempt: the thread read finds no earlier send,
    // and a retry after a lost reply answers twice.
    (Sabotage::FreshReplyMarker, "support-container-loss.toml", "reply_once"),
    // Calls made without their cost rows: the vendors' bills are unbooked.
    (Sabotage::UnbookedModelCalls, "model-outage.toml", "model_spend"),
    // An accepted offer refunds the whole order: above the order's ceiling.
    (Sabotage::RefundWholeOrder, "support-container-loss.toml", "offer_refund"),
    // Calls booked but never charged to the model cap: the day's bills pass it.
    (Sabotage::UncappedModelCalls, "model-budget.toml", "model_budget"),
];

#[test]
fn every_support_invariant_catches_a_broken_build() {
    let mut honest_checked = std::collections::BTreeSet::new();
    for (sabotage, file, invariant) in SABOTAGES {
        let scn = scenario(file);
        let broken = caught(&run(&scn, 0..3, *sabotage));
        assert!(
            broken.get(*invariant).copied().unwrap_or(0) > 0,
            "{sabotage:?} on {file}: {invariant} silent: {broken:?}"
        );
        if honest_checked.insert(*file) {
            let honest = caught(&run(&scn, 0..3, Sabotage::None));
            assert!(honest.is_empty(), "{file} honest: {honest:?}");
        }
    }
}

/// Detection raises scrutiny; it is never the boundary: without it, the
/// compromised model still gets nothing past the gate.
#[test]
fn the_gate_holds_without_its_detector() {
    let scn = scenario("support-hostile.toml");
    let reports = run(&scn, 0..3, Sabotage::NoDetection);
    assert_eq!(caught(&reports), BTreeMap::new());
    assert!(reports.iter().all(|r| r.replies_flagged == 0 && r.replies == r.messages));
}

/// Anthropic is down from minute 5 to 15: its breaker (kept in the store)
/// opens, lets a probe through after each cooldown, and closes once a
/// probe is answered; the failover vendor answers meanwhile. Each change is
/// one event row, and the down vendor is called a bounded number of times.
#[test]
fn the_breakers_open_during_an_outage_and_close_after_it() {
    let scn = scenario("model-outage.toml");
    for seed in 0..3 {
        let r = run_seed(&scn, seed, &RunOptions { sabotage: Sabotage::None, keep_events: true }).unwrap();
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
        let rows: Vec<_> = r
            .log
            .as_ref()
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::StateChanged && e.entity == "model_breaker/anthropic/claude-haiku")
            .collect();
        let moves: Vec<(&str, &str)> = rows.iter().map(|e| (e.before.as_str(), e.after.as_str())).collect();
        assert_eq!(moves.first(), Some(&("closed", "open")), "seed {seed}: {moves:?}");
        // A failed probe leaves it open (no row: open to open); the probe
        // that is answered closes it.
        assert_eq!(moves.last(), Some(&("open", "closed")), "seed {seed}: {moves:?}");
        assert!(
            rows[0].cause.starts_with("most calls of its window failed: open until 20"),
            "seed {seed}: {}",
            rows[0].cause
        );
        let start = scn.start();
        let opened = rows[0].at.since(start).0 / 1000;
        let closed = rows.last().unwrap().at.since(start).0 / 1000;
        println!(
            "seed {seed}: opened at {opened} s, closed at {closed} s, anthropic {:?}, gemini {:?}",
            r.model_calls["anthropic"], r.model_calls["gemini"]
        );
        // Down from 300 s; the breaker needs 3 calls in its 300 s window,
        // more than half of them failed.
        assert!((300..660).contains(&opened), "seed {seed}: opened at {opened} s");
        assert!((900..1000).contains(&closed), "seed {seed}: closed at {closed} s");
        // A row's before is the last row's after: the log chains.
        for w in rows.windows(2) {
            assert_eq!(w[0].after, w[1].before, "seed {seed}: {moves:?}");
        }
        let (answered, failed) = r.model_calls["anthropic"];
        // Ten minutes down, a read every 20 s: without the breaker every
        // message of the outage would try it first; with it, the calls that
        // trip it and one probe per cooldown.
        assert!(failed <= 40, "seed {seed}: {failed} failed calls to the down vendor");
        assert!(answered > 0 && r.model_calls["gemini"].0 > 0, "seed {seed}: {:?}", r.model_calls);
    }
}
