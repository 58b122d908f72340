//! Escalation: when an ad's own pause has not taken effect within a share
//! of the kill deadline (a pause acknowledged without effect), the kill
//! pauses the ad's ad set, then its campaign, each a write-ahead action of
//! its own ([`NodeEffect`]); once every kill that paused a node is
//! confirmed by the ad's own status, the node is resumed (the siblings
//! paused only as collateral spend again), through the same machine.
//!
//! The pure rules: [`next_level`] (when a kill escalates, and to which
//! level) and [`resumes`] (which paused nodes may be resumed). The kill job
//! (`jobs::drive`) escalates; the tick resumes.

use std::collections::{BTreeMap, BTreeSet};

use crate::envelope::{Decision, Verdict};
use crate::ids::{AdId, IdempotencyKey};
use crate::sense::ads::{AdNode, AdStatus, AdsError, AdsPlatform, Level};
use crate::time::{Millis, Timestamp};

use super::intent::{Action, Evidence, Intent, IntentPhase, NewIntent};
use super::kill::KillEffect;
use super::machine::{Effect, Found, Seen, Sites};

/// Pauses (`PAUSE`) or resumes one ad set or campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEffect<const PAUSE: bool> {
    pub node: AdNode,
}

/// What a node's status read back means: a pause is done when the node is
/// paused itself; a resume when it is not (its campaign may still be).
pub fn seen_node(status: &AdStatus, pause: bool) -> Seen {
    let paused = *status == AdStatus::Paused;
    let found = if paused == pause { Found::Effected } else { Found::Absent };
    Seen { found, detail: format!("{status:?}"), amount: None }
}

impl<A: AdsPlatform, const PAUSE: bool> Effect<A> for NodeEffect<PAUSE> {
    type Error = AdsError;
    const VENDOR: &'static str = "meta";
    const CALL: &'static str = if PAUSE { "pause_node" } else { "resume_node" };
    const READ: &'static str = "node_status";
    // A pause one level up is a kill's phase: the same crash points.
    const SITES: Sites = <KillEffect as Effect<A>>::SITES;

    fn subject(&self) -> &str {
        &self.node.id
    }

    async fn call(&self, ads: &A, key: &IdempotencyKey) -> Result<(), AdsError> {
        ads.set_node(&self.node, PAUSE, key).await
    }

    async fn read_back(&self, ads: &A) -> Result<Seen, AdsError> {
        ads.node_status(&self.node).await.map(|s| seen_node(&s, PAUSE))
    }

    fn unconfirmed() -> AdsError {
        AdsError::Timeout
    }
}

/// The key of a kill's escalation to `level`: one per kill and level.
pub fn escalation_key(kill: &IdempotencyKey, level: Level) -> IdempotencyKey {
    IdempotencyKey::new(format!("{kill}/{}", level.as_str()))
}

/// The level the kill escalates to now, if any: the ad set once the kill
/// is `after` old without a commit; the campaign once the ad set's pause
/// was abandoned, or at twice `after` is still unconfirmed or does not
/// hold (`adset_holds`: the ad was read spending although its ad set's
/// pause committed; someone resumed the ad set). At most one pause per
/// level and kill (the keys see to that).
pub fn next_level(
    kill: &Intent,
    adset: Option<&Intent>,
    campaign: Option<&Intent>,
    adset_holds: bool,
    now: Timestamp,
    after: Millis,
) -> Option<Level> {
    if kill.phase.is_final() {
        return None;
    }
    let overdue = now.since(kill.opened_at);
    if overdue < after {
        return None;
    }
    match (adset, campaign) {
        (None, _) => Some(Level::AdSet),
        (Some(a), None)
            if a.phase == IntentPhase::Abandoned
                || ((a.phase != IntentPhase::Committed || !adset_holds)
                    && overdue >= Millis(after.0.saturating_mul(2))) =>
        {
            Some(Level::Campaign)
        }
        _ => None,
    }
}

/// The pause intent of the kill `kill` on `ad`'s `node`.
pub fn pause_intent(kill: &Intent, ad: &AdId, node: AdNode, now: Timestamp) -> NewIntent {
    let key = escalation_key(&kill.key, node.level);
    let reason = format!(
        "the pause of {ad} has not taken effect {} ms after its intent: pause its {} {}",
        now.since(kill.opened_at).0,
        node.level.as_str(),
        node.id
    );
    NewIntent {
        key: key.clone(),
        action: Action::PauseNode { ad: ad.clone(), node, kill: kill.key.clone() },
        evidence: Evidence::Escalation { kill: kill.key.clone(), why: reason.clone() },
        verdict: Verdict { ad: ad.clone(), key, decision: Decision::Approve, at: now, reason },
        reserve: None,
    }
}

/// Whether a resume of `node` (undoing `pauses`) must not be made: another
/// pause of the node, not among them, is still in flight or serves a kill
/// that is not confirmed (resuming would start that kill's ad again).
pub fn superseded<'a>(
    intents: impl IntoIterator<Item = &'a Intent>,
    node: &AdNode,
    pauses: &[IdempotencyKey],
) -> Option<IdempotencyKey> {
    let intents: Vec<&Intent> = intents.into_iter().collect();
    let phase_of = |key: &IdempotencyKey| intents.iter().find(|i| &i.key == key).map(|i| i.phase);
    intents.iter().find_map(|i| match &i.action {
        Action::PauseNode { node: n, kill, .. }
            if n == node
                && !pauses.contains(&i.key)
                && (!i.phase.is_final() || phase_of(kill) != Some(IntentPhase::Committed)) =>
        {
            Some(i.key.clone())
        }
        _ => None,
    })
}

/// Resume intents for every node whose escalation pauses are all final and
/// whose kills are all committed (each ad stopped itself): one intent per
/// node, naming the pauses it undoes, keyed by the last of them. A node
/// with a kill still open or abandoned stays paused (its ad would spend
/// again); a node none of whose pauses took effect is not touched.
pub fn resumes<'a>(intents: impl IntoIterator<Item = &'a Intent>, now: Timestamp) -> Vec<NewIntent> {
    let intents: Vec<&Intent> = intents.into_iter().collect();
    let by_key: BTreeMap<&IdempotencyKey, &Intent> = intents.iter().map(|i| (&i.key, *i)).collect();
    let undone: BTreeSet<&IdempotencyKey> = intents
        .iter()
        .filter_map(|i| match &i.action {
            Action::ResumeNode { pauses, .. } => Some(pauses.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut open: BTreeMap<&AdNode, Vec<&Intent>> = BTreeMap::new();
    for i in &intents {
        if let Action::PauseNode { node, .. } = &i.action
            && !undone.contains(&i.key)
        {
            open.entry(node).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (node, pauses) in open {
        let kill_of = |p: &Intent| match &p.action {
            Action::PauseNode { kill, .. } => by_key.get(kill).copied(),
            _ => None,
        };
        let settled = pauses.iter().all(|p| p.phase.is_final())
            && pauses.iter().all(|p| kill_of(p).is_some_and(|k| k.phase == IntentPhase::Committed));
        let took_effect = pauses.iter().any(|p| p.phase == IntentPhase::Committed);
        if !settled || !took_effect {
            continue;
        }
        let last = pauses.iter().max_by_key(|p| (&p.opened_at, &p.key)).expect("a node has a pause");
        let Action::PauseNode { ad, kill, .. } = &last.action else { unreachable!("filtered to pauses") };
        let key = IdempotencyKey::new(format!("{}/resume", last.key));
        let mut keys: Vec<IdempotencyKey> = pauses.iter().map(|p| p.key.clone()).collect();
        keys.sort();
        let reason = format!(
            "every kill that paused {} {} is confirmed by its ad's own status: resume it",
            node.level.as_str(),
            node.id
        );
        out.push(NewIntent {
            key: key.clone(),
            action: Action::ResumeNode { ad: ad.clone(), node: node.clone(), pauses: keys },
            evidence: Evidence::Escalation { kill: kill.clone(), why: reason.clone() },
            verdict: Verdict { ad: ad.clone(), key, decision: Decision::Approve, at: now, reason },
            reserve: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::intent::fresh_intent;
    use crate::ids::BrandId;

    fn intent(new: &NewIntent, phase: IntentPhase, at: u64) -> Intent {
        Intent { phase, ..fresh_intent(new, &BrandId::default(), Timestamp(at)) }
    }

    fn kill(ad: &str, phase: IntentPhase) -> Intent {
        let mut k = crate::act::machine::tests_support::kill_intent(ad);
        k.phase = phase;
        k
    }

    fn node(level: Level, id: &str) -> AdNode {
        AdNode { level, id: id.into() }
    }

    #[test]
    fn escalates_by_level_and_time() {
        let k = kill("ad-1", IntentPhase::Intended);
        let after = Millis(10_000);
        let at = |ms: u64| Timestamp(k.opened_at.0 + ms);
        assert_eq!(next_level(&k, None, None, true, at(9_999), after), None, "not yet overdue");
        assert_eq!(next_level(&k, None, None, true, at(10_000), after), Some(Level::AdSet));
        let p = pause_intent(&k, &AdId::new("ad-1"), node(Level::AdSet, "as-1"), at(10_000));
        let pending = intent(&p, IntentPhase::Applied, at(10_000).0);
        assert_eq!(next_level(&k, Some(&pending), None, true, at(15_000), after), None, "the ad set still has time");
        assert_eq!(next_level(&k, Some(&pending), None, true, at(20_000), after), Some(Level::Campaign));
        let done = intent(&p, IntentPhase::Committed, at(10_000).0);
        assert_eq!(next_level(&k, Some(&done), None, true, at(30_000), after), None, "the ad set stopped it");
        let undone = next_level(&k, Some(&done), None, false, at(20_000), after);
        assert_eq!(undone, Some(Level::Campaign), "the ad set was resumed under it");
        let gave_up = intent(&p, IntentPhase::Abandoned, at(10_000).0);
        assert_eq!(next_level(&k, Some(&gave_up), None, true, at(12_000), after), Some(Level::Campaign));
        let c = pause_intent(&k, &AdId::new("ad-1"), node(Level::Campaign, "c-1"), at(20_000));
        let c = intent(&c, IntentPhase::Intended, at(20_000).0);
        assert_eq!(next_level(&k, Some(&pending), Some(&c), true, at(90_000), after), None, "no level above");
        let committed = kill("ad-1", IntentPhase::Committed);
        assert_eq!(
            next_level(&committed, None, None, true, at(90_000), after),
            None,
            "a confirmed kill never escalates"
        );
    }

    #[test]
    fn resumes_only_when_every_kill_on_the_node_is_confirmed() {
        let a = kill("ad-1", IntentPhase::Committed);
        let b = kill("ad-2", IntentPhase::Intended);
        let set = node(Level::AdSet, "as-1");
        let pa = intent(&pause_intent(&a, &AdId::new("ad-1"), set.clone(), Timestamp(5)), IntentPhase::Committed, 5);
        let pb = intent(&pause_intent(&b, &AdId::new("ad-2"), set.clone(), Timestamp(6)), IntentPhase::Committed, 6);
        assert!(resumes([&a, &b, &pa, &pb], Timestamp(9)).is_empty(), "ad-2 would spend again");
        let b_done = kill("ad-2", IntentPhase::Committed);
        let r = resumes([&a, &b_done, &pa, &pb], Timestamp(9));
        assert_eq!(r.len(), 1, "one resume per node");
        let Action::ResumeNode { node: n, pauses, .. } = &r[0].action else { panic!("a resume") };
        assert_eq!(n, &set);
        assert_eq!(pauses, &vec![pa.key.clone(), pb.key.clone()]);
        assert_eq!(r[0].key.as_str(), format!("{}/resume", pb.key));
        let resumed = intent(&r[0], IntentPhase::Intended, 9);
        assert!(resumes([&a, &b_done, &pa, &pb, &resumed], Timestamp(10)).is_empty(), "once");
        let b_lost = kill("ad-2", IntentPhase::Abandoned);
        assert!(resumes([&a, &b_lost, &pa, &pb], Timestamp(9)).is_empty(), "an unconfirmed kill holds its node");
        let pb_open =
            intent(&pause_intent(&b_done, &AdId::new("ad-2"), set.clone(), Timestamp(6)), IntentPhase::Applied, 6);
        assert!(resumes([&a, &b_done, &pa, &pb_open], Timestamp(9)).is_empty(), "a pause in flight");
        // A resume planned for ad-1 alone, then ad-2's pause of the same node.
        assert_eq!(superseded([&a, &pa], &set, std::slice::from_ref(&pa.key)), None);
        assert_eq!(superseded([&a, &b, &pa, &pb], &set, std::slice::from_ref(&pa.key)), Some(pb.key.clone()));
        assert_eq!(superseded([&a, &b_done, &pa, &pb], &set, std::slice::from_ref(&pa.key)), None, "ad-2 confirmed");
    }

    #[test]
    fn node_read_backs() {
        assert_eq!(seen_node(&AdStatus::Paused, true).found, Found::Effected);
        assert_eq!(seen_node(&AdStatus::Active, true).found, Found::Absent);
        assert_eq!(seen_node(&AdStatus::Active, false).found, Found::Effected);
        assert_eq!(seen_node(&AdStatus::Other("CAMPAIGN_PAUSED".into()), false).found, Found::Effected);
        assert_eq!(seen_node(&AdStatus::Paused, false).found, Found::Absent);
    }
}
