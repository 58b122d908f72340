//! Refunds through the sim: the checker's shop invariants hold on the
//! shipped scenarios and each one catches a deliberately broken build.

use std::collections::BTreeMap;

use dlft_core::config::Sabotage;
use dlft_sim::run::{RunOptions, run_seed};

mod common;
use common::{caught, run, scenario};

#[test]
fn the_honest_loop_refunds_and_refuses() {
    let scn = scenario("refund-container-loss.toml");
    let reports = run(&scn, 0..3, Sabotage::None);
    assert_eq!(caught(&reports), BTreeMap::new());
    for r in &reports {
        assert!(r.refunds > 0, "seed {}: nothing refunded", r.seed);
        assert!(r.claims_refused > 0, "seed {}: no claim refused", r.seed);
        assert!(r.faults.shop_lost_replies > 0, "seed {}: no reply lost after a refund", r.seed);
        assert!(r.parcels_tracked > 0, "seed {}: no parcel read from the tracker", r.seed);
        assert!(r.orders_mirrored > 0, "seed {}: no order mirrored", r.seed);
    }
}

/// (sabotage, scenario, the invariant that must catch it).
const SABOTAGES: &[(Sabotage, &str, &str)] = &[
    // A fresh key and note per attempt: a retry after a lost reply refunds twice.
    (Sabotage::FreshRefundKey, "refund-container-loss.toml", "refund_once"),
    // Committing on refundCreate's reply: refunds the gateway fails are posted.
    (Sabotage::SkipReadBack, "refund-container-loss.toml", "refund_ledger"),
    // No tier cap: the ring's identities, once caught, are refunded in full.
    (Sabotage::SkipTierCap, "refund-ring.toml", "refund_ceiling"),
    // A profile without chargebacks: double-dippers refunded again.
    (Sabotage::IgnoreChargebacks, "late-chargebacks.toml", "refund_blocked"),
    // The desk's word for the tracking: abusers' "lost" parcels, delivered, refunded.
    (Sabotage::IgnoreTracker, "refund-container-loss.toml", "refund_tracked"),
    // The mirror's next pass bounded by our clock: changes the lagging
    // search showed only after a pass ended are never read.
    (Sabotage::MirrorClockBound, "refund-ring.toml", "mirror_complete"),
    // The call centre's phone kept as a key: customers whose orders staff
    // took by phone are one identity, blocked by an abuser's chargeback.
    (Sabotage::IgnoreSharedValues, "late-chargebacks.toml", "refund_blocked_own"),
    // No reservation: the daily refund cap holds nothing back.
    (Sabotage::SkipReservation, "refund-throttle-storm.toml", "caps_held"),
];

#[test]
fn every_refund_invariant_catches_a_broken_build() {
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

#[test]
fn every_tier_change_is_one_event_row_naming_its_facts() {
    use dlft_core::telemetry::EventKind;
    for (file, tier, fact) in [
        ("refund-ring.toml", "high", "other identities ship to one of its addresses"),
        ("late-chargebacks.toml", "blocked", "chargeback(s) open"),
    ] {
        let scn = scenario(file);
        let r = run_seed(&scn, 0, &RunOptions { sabotage: Sabotage::None, keep_events: true }).unwrap();
        let changes: Vec<_> = r.log.as_ref().unwrap().iter().filter(|e| e.kind == EventKind::TierChanged).collect();
        assert!(
            changes.iter().any(|e| e.after == tier && e.cause.contains(fact)),
            "{file}: no change to {tier} naming {fact:?}: {changes:?}"
        );
        // A change is a change: never the same tier before and after, and
        // one identity's consecutive rows chain.
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        for e in &changes {
            assert_ne!(e.before, e.after, "{file}: {e:?}");
            assert!(e.entity.starts_with("identity/default/") && !e.entity.contains('@'), "no raw data: {e:?}");
            if let Some(prev) = last.insert(e.entity.as_str(), e.after.as_str()) {
                assert_eq!(prev, e.before, "{file}: {} jumped", e.entity);
            }
        }
    }
}
