//! The loop with no network and no faults, on a manual clock: every external
//! call has exactly one cost row, the checker finds nothing, and it catches
//! each kind of corruption of that clean result.

use std::path::Path;

use dlft_core::act::intent::{ActionRow, IntentPhase};
use dlft_core::ids::IdempotencyKey;
use dlft_core::time::{Millis, Timestamp};
use dlft_sim::checker::{CheckInput, Verdict, check};
use dlft_sim::inproc::{InProcessRun, run_in_process};
use dlft_sim::scenario::Scenario;

fn scenario() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/ad-kill-container-loss.toml");
    Scenario::load(&path).unwrap()
}

fn judge(run: &InProcessRun, scn: &Scenario) -> Verdict {
    check(&CheckInput {
        seed: 0,
        world: &run.world,
        store: &run.store,
        end: run.end,
        kill_deadline: Millis::from_secs(scn.assertions.kill_deadline_s),
        settled_until: run.end - Millis(3 * run.world.bucket().0),
        commit_within: Some(Millis::from_secs(60)),
        bank: None,
        shop: None,
        support: None,
        resume_within: Millis(0),
    })
}

#[test]
fn clean_runs_book_every_call_and_kill_losers() {
    let scn = scenario();
    for seed in 0..5 {
        let run = run_in_process(&scn, seed);
        assert_eq!(run.store.costs.len() as u64, run.calls, "seed {seed}: one cost row per external call");
        assert_eq!(judge(&run, &scn), Verdict::default(), "seed {seed}");
        let losers = run.world.specs().filter(|s| s.loser).count();
        let losers_killed = run
            .store
            .intents
            .iter()
            .filter(|i| {
                i.phase == IntentPhase::Committed && i.action.killed_ad().is_some_and(|ad| run.world.is_loser(ad))
            })
            .count();
        assert!(losers_killed * 2 >= losers, "seed {seed}: only {losers_killed} of {losers} losers killed");
    }
}

type Corruption = fn(&mut InProcessRun);

/// Each corruption of a clean run, and the invariant that must catch it.
#[test]
fn the_checker_catches_each_corruption() {
    let scn = scenario();
    let clean = run_in_process(&scn, 3);
    let killed = clean.store.intents.iter().find(|i| i.phase == IntentPhase::Committed).expect("a kill").clone();
    let cases: Vec<(&str, Corruption)> = vec![
        ("ledger_spend", |r| {
            r.store.spend.remove(0);
        }),
        ("at_most_once", |r| {
            let i = r.store.intents.iter().find(|i| i.phase == IntentPhase::Committed).unwrap().clone();
            let t = r.end - Millis::from_secs(200);
            r.world.resume(i.action.killed_ad().unwrap(), t);
            r.world.pause(i.action.killed_ad().unwrap(), &i.key, t + Millis(1_000));
        }),
        ("kill_deadline", |r| {
            let i = r.store.intents.iter().find(|i| i.phase == IntentPhase::Committed).unwrap().clone();
            r.world.resume(i.action.killed_ad().unwrap(), r.end - Millis::from_secs(30));
        }),
        ("receipt_has_effect", |r| {
            let ad = r.world.specs().find(|s| r.world.paused_at(&s.id).is_none()).unwrap().id.clone();
            let key = IdempotencyKey::new(format!("kill/{ad}"));
            r.store.actions.push(ActionRow {
                brand: dlft_core::ids::BrandId::default(),
                key,
                kind: "ad_kill".into(),
                subject: ad.to_string(),
                committed_at: r.end,
            });
        }),
        ("effect_committed", |r| {
            let i = r.store.intents.iter_mut().find(|i| i.phase == IntentPhase::Committed).unwrap();
            i.phase = IntentPhase::Applied;
        }),
        ("write_ahead", |r| {
            let i = r.store.intents.iter_mut().find(|i| i.phase == IntentPhase::Committed).unwrap();
            i.opened_at = Timestamp(u64::MAX / 2);
        }),
        ("reconcile_window", |r| {
            // The kill committed, but two minutes after the pause took effect.
            let a = r.store.actions.first_mut().unwrap();
            a.committed_at = a.committed_at + Millis::from_secs(120);
        }),
        ("log_replay", |r| {
            let pos = r.store.events.iter().position(|e| e.after == "committed").unwrap();
            r.store.events.remove(pos);
        }),
    ];
    for (invariant, corrupt) in cases {
        let mut run =
            InProcessRun { world: clean.world.clone(), store: clean.store.clone(), end: clean.end, calls: clean.calls };
        corrupt(&mut run);
        let v = judge(&run, &scn);
        assert!(
            v.violations.iter().any(|x| x.invariant == invariant),
            "{invariant} not caught; got {:?}",
            v.violations
        );
    }
    // And the kill that the cases above corrupt really was a clean kill.
    assert!(clean.world.paused_at(killed.action.killed_ad().unwrap()).is_some());
}
