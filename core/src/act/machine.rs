//! The write-ahead machine: one state machine for every irreversible action.
//!
//! Pure transitions only ([`next_step`], [`after_call`], [`after_read_back`]);
//! the async shell that carries them out for any action is
//! `jobs::drive`. An actuator contributes an [`Effect`]: its call (made
//! under the intent's idempotency key), its read-back, and the probe sites
//! between them. Nothing else about an action is special.

use std::future::Future;

use crate::ids::IdempotencyKey;
use crate::probe::Sabotage;
use crate::probe::Site;
use crate::time::Millis;

use super::intent::{Intent, IntentPhase};

/// What to do next for an intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Done,
    /// The attempt cap is reached without a commit: stop and flag it.
    Abandon,
    /// Make the action's call.
    Call,
    ReadBack,
    /// Sabotage only: commit on the call's word.
    CommitBlind,
}

pub fn next_step(intent: &Intent, max_attempts: u32, sabotage: Sabotage) -> Step {
    match intent.phase {
        IntentPhase::Committed | IntentPhase::Abandoned => Step::Done,
        IntentPhase::Intended if intent.attempts >= max_attempts => Step::Abandon,
        IntentPhase::Intended => Step::Call,
        IntentPhase::Applied if sabotage == Sabotage::SkipReadBack => Step::CommitBlind,
        IntentPhase::Applied => Step::ReadBack,
    }
}

/// How a vendor's error bears on an action's call.
pub trait CallError: std::fmt::Display {
    /// The call may or may not have happened (a timeout, a reply lost or
    /// garbled): read back before calling again.
    fn outcome_unknown(&self) -> bool;
    /// The vendor asked us to wait: the call did not happen, and the wait
    /// is not counted against the attempt cap.
    fn retry_after(&self) -> Option<Millis>;
}

/// What a call's result means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome<E> {
    /// Move to applied (counting the attempt).
    Applied,
    /// It may or may not have happened: read back before calling again.
    Unknown(E),
    /// It did not happen: count the attempt and retry later.
    Failed(E),
    /// Rate limited: it did not happen; wait as told, without counting.
    Throttled(E),
}

pub fn after_call<E: CallError>(result: Result<(), E>) -> CallOutcome<E> {
    match result {
        Ok(()) => CallOutcome::Applied,
        Err(e) if e.outcome_unknown() => CallOutcome::Unknown(e),
        Err(e) if e.retry_after().is_some() => CallOutcome::Throttled(e),
        Err(e) => CallOutcome::Failed(e),
    }
}

/// What a read-back found of the action.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The effect is there (an ad stopped; a payment completed).
    Effected,
    /// The action exists and is on its way (a payment created or pending):
    /// neither call again nor give up; read again later.
    InFlight,
    /// No effect: call again (under the same key).
    Absent,
    /// The world refused it for good (a payment declined, failed or
    /// reverted): abandon, and release what it reserved.
    Failed,
}

/// What a read-back found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub found: Found,
    /// The vendor's state as read, for event rows (`Paused`, `Active`).
    pub detail: String,
    /// The money the effect moved, as read back (posted to the intent's
    /// reservation on commit); `None` for actions that move none.
    pub amount: Option<crate::money::Money>,
}

impl Seen {
    pub fn effected(&self) -> bool {
        self.found == Found::Effected
    }
}

/// The phase a read-back moves an applied intent to; `None`: stay applied
/// and read again later (the action is in flight).
pub fn after_read_back(seen: &Seen) -> Option<IntentPhase> {
    match seen.found {
        Found::Effected => Some(IntentPhase::Committed),
        Found::Absent => Some(IntentPhase::Intended),
        Found::Failed => Some(IntentPhase::Abandoned),
        Found::InFlight => None,
    }
}

/// The probe sites of an action's phases (crash points for the sim and the
/// real crash test).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Sites {
    pub before_call: Site,
    pub after_call: Site,
    pub after_applied: Site,
    pub after_read_back: Site,
}

/// What one actuator contributes to the machine: its call and its read-back
/// on the platform `A`, and its names.
pub trait Effect<A>: Sync {
    type Error: CallError + Send;
    /// The vendor, for cost rows.
    const VENDOR: &'static str;
    /// The call's name, for cost rows and event causes (`pause`).
    const CALL: &'static str;
    /// The read-back's name (`status`).
    const READ: &'static str;
    const SITES: Sites;
    /// What the probe sites are told (the ad id).
    fn subject(&self) -> &str;
    /// The action's call, under the intent's idempotency key.
    fn call(&self, platform: &A, key: &IdempotencyKey) -> impl Future<Output = Result<(), Self::Error>> + Send;
    fn read_back(&self, platform: &A) -> impl Future<Output = Result<Seen, Self::Error>> + Send;
    /// The error that stands for "the outcome is unknown and the read-back
    /// did not find the effect" (the job retries after it).
    fn unconfirmed() -> Self::Error;
}

/// Intents for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use crate::act::intent::{Action, Evidence, Intent, NewIntent, fresh_intent};
    use crate::envelope::{Decision, Verdict};
    use crate::estimate::estimator::AdEstimate;
    use crate::ids::{AdId, BrandId, IdempotencyKey};
    use crate::money::{Currency, Money};
    use crate::time::Timestamp;

    /// A freshly opened kill of `ad` (key `kill/{ad}`), opened at 1000.
    pub fn kill_intent(ad: &str) -> Intent {
        let ad = AdId::new(ad);
        let key = IdempotencyKey::new(format!("kill/{ad}"));
        let zero = Money::zero(Currency::EUR);
        let estimate = AdEstimate {
            ad: ad.clone(),
            first_bucket: Timestamp(0),
            matured_until: Timestamp(0),
            matured_spend: zero,
            matured_purchases: 0,
            matured_revenue: zero,
            in_learning: false,
        };
        let verdict = Verdict {
            ad: ad.clone(),
            key: key.clone(),
            decision: Decision::Approve,
            at: Timestamp(0),
            reason: "".into(),
        };
        let new = NewIntent {
            key,
            action: Action::KillAd { ad },
            evidence: Evidence::Kill(estimate),
            verdict,
            reserve: None,
        };
        fresh_intent(&new, &BrandId::default(), Timestamp(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(phase: IntentPhase, attempts: u32) -> Intent {
        Intent { phase, attempts, ..super::tests_support::kill_intent("ad-1") }
    }

    #[test]
    fn next_step_table() {
        let none = Sabotage::None;
        assert_eq!(next_step(&intent(IntentPhase::Intended, 0), 3, none), Step::Call);
        assert_eq!(next_step(&intent(IntentPhase::Intended, 2), 3, none), Step::Call);
        assert_eq!(next_step(&intent(IntentPhase::Intended, 3), 3, none), Step::Abandon, "the attempt cap");
        assert_eq!(next_step(&intent(IntentPhase::Applied, 3), 3, none), Step::ReadBack, "applied: only read");
        assert_eq!(next_step(&intent(IntentPhase::Committed, 0), 3, none), Step::Done);
        assert_eq!(next_step(&intent(IntentPhase::Abandoned, 0), 3, none), Step::Done);
        assert_eq!(next_step(&intent(IntentPhase::Applied, 1), 3, Sabotage::SkipReadBack), Step::CommitBlind);
    }

    #[test]
    fn phases_move_only_as_the_machine_moves_them() {
        use IntentPhase::*;
        let all = [Intended, Applied, Committed, Abandoned];
        let moves: Vec<(IntentPhase, IntentPhase)> =
            all.iter().flat_map(|a| all.iter().map(move |b| (*a, *b))).filter(|(a, b)| a.may_move_to(*b)).collect();
        assert_eq!(
            moves,
            vec![
                (Intended, Applied),
                (Intended, Abandoned),
                (Applied, Intended),
                (Applied, Committed),
                (Applied, Abandoned)
            ]
        );
    }
}
