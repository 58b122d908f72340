//! Payouts through the sim: the checker's bank invariants hold on the
//! shipped scenarios and each one catches a deliberately broken build.

use std::collections::BTreeMap;

use dlft_core::config::Sabotage;

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
