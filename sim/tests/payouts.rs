//! Payouts through the sim: the checker's bank invariants hold on the
//! shipped scenarios and each one catches a deliberately broken build.

use std::collections::BTreeMap;

use dlft_core::config::Sabotage;
use dlft_core::telemetry::EventKind;

mod common;
use common::{caught, run, scenario};

#[test]
fn the_honest_loop_keeps_every_bank_invariant() {
    let scn = scenario("payout-container-loss.toml");
    let reports = run(&scn, 0..3, Sabotage::None);
    assert_eq!(caught(&reports), BTreeMap::new());
    for r in &reports {
        assert!(r.payouts > 0, "seed {}: nothing paid", r.seed);
        assert!(r.payables_refused > 0, "seed {}: no fraudulent invoice refused", r.seed);
    }
}

/// (sabotage, scenario, the invariant that must catch it).
const SABOTAGES: &[(Sabotage, &str, &str)] = &[
    // Committing on the payment's reply: declined payments are posted.
    (Sabotage::SkipReadBack, "payout-container-loss.toml", "bank_ledger"),
    // No reservation: the caps hold nothing back.
    (Sabotage::SkipReservation, "payout-container-loss.toml", "caps_held"),
    // A fresh request id per attempt: a retry after a lost reply pays twice.
    (Sabotage::FreshRequestId, "bank-chaos.toml", "payout_once"),
    // No allow-list, no bank details check.
    (Sabotage::SkipPayeeCheck, "payout-container-loss.toml", "allow_list"),
    // Payout jobs that never drive their intents.
    (Sabotage::DropPayoutJobs, "payout-container-loss.toml", "reservations_resolved"),
    // Reversals never read from the statement.
    (Sabotage::IgnoreReversals, "bank-chaos.toml", "bank_ledger"),
    // Reservations that do not name their payee: its own daily cap holds nothing.
    (Sabotage::BrandCapsOnly, "budget-race.toml", "caps_held"),
];

#[test]
fn every_bank_invariant_catches_a_broken_build() {
    let mut honest_checked = std::collections::BTreeSet::new();
    for (sabotage, file, invariant) in SABOTAGES {
        let scn = scenario(file);
        let broken = caught(&run(&scn, 0..4, *sabotage));
        assert!(
            broken.get(*invariant).copied().unwrap_or(0) > 0,
            "{sabotage:?} on {file}: {invariant} silent: {broken:?}"
        );
        // The same seeds, unbroken: silent.
        if honest_checked.insert(*file) {
            let honest = caught(&run(&scn, 0..4, Sabotage::None));
            assert!(honest.is_empty(), "{file} honest: {honest:?}");
        }
    }
}

/// A tick pool that cannot keep up (a 2 s tick whose insights reads take
/// seconds) still pays: the schedule's slots coalesce into the tick that
/// waits, and the pool serves its kinds oldest first, so the payables run
/// between ticks. Before, every 2 s slot queued a tick of its own, ahead of
/// the payables by priority: the queue grew without bound and nothing was
/// paid (found by the soak; this test fails on that build).
#[test]
fn a_tick_pool_that_falls_behind_still_pays() {
    let mut scn = scenario("payout-container-loss.toml");
    scn.faults.crashes = dlft_sim::scenario::Range { lo: 0, hi: 0 };
    scn.faults.site_crashes = dlft_sim::scenario::Range { lo: 0, hi: 0 };
    scn.platform.latency_ms = dlft_sim::scenario::Range { lo: 1_500, hi: 3_000 };
    scn.control.tick_s = 2;
    let opts = dlft_sim::run::RunOptions { sabotage: Sabotage::None, keep_events: true };
    let reports: Vec<_> = (0..2).map(|s| dlft_sim::run::run_seed(&scn, s, &opts).unwrap()).collect();
    assert_eq!(caught(&reports), BTreeMap::new());
    for r in &reports {
        // 1,800 s with a payables run every 30 s: most invoices are paid.
        assert!(r.payouts >= 10, "seed {}: {} payouts while the ticks fell behind", r.seed, r.payouts);
        assert!(r.kills > 0, "seed {}: and the ticks still kill", r.seed);
        // Ticks enqueued and not yet claimed, at most: one (the slots coalesce).
        let (mut waiting, mut most, mut coalesced) = (std::collections::BTreeSet::new(), 0, 0);
        for e in r.log.as_ref().unwrap() {
            match e.kind {
                EventKind::JobEnqueued if e.cause.starts_with("poll_insights") => drop(waiting.insert(&e.entity)),
                EventKind::JobClaimed => drop(waiting.remove(&e.entity)),
                EventKind::SlotFired if e.after == "coalesced" => coalesced += 1,
                _ => {}
            }
            most = most.max(waiting.len());
        }
        assert!(coalesced > 100, "seed {}: the pool fell behind: {coalesced} slots coalesced", r.seed);
        assert_eq!(most, 1, "seed {}: ticks waiting at once", r.seed);
    }
}
