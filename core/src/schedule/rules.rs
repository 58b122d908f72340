//! Scheduler policy: limits, retry backoff, and schedule slots. Pure
//! functions; the worker loop (`worker`) moves the data.

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::ids::IdempotencyKey;
use crate::time::{Millis, Timestamp};

/// The per-minute tick's schedule name.
pub const TICK_SCHEDULE: &str = "insights-tick";

/// At boot, running rows whose lease ran out this long ago are ghosts of a
/// worker that never came back: released and logged.
pub const GHOST_AMNESTY: Millis = Millis(4 * 3600 * 1000);

/// Resumes of a crashed attempt before the circuit breaker opens: the
/// fourth resume is refused, the job discarded and its schedule disabled.
pub const MAX_RESUME_ATTEMPTS: u32 = 3;

/// Slots in a row whose job the breaker discarded for a crash loop before
/// the schedule itself is disabled: a poison input that outlives its slot
/// (each new slot's job crash-loops too, a periodic job the breaker only
/// discards) trips the breaker at the third, so that it stops killing every
/// worker that serves the brand once a slot.
pub const CRASH_LOOP_SLOTS: usize = 3;

/// Whether a scheduled job the breaker refuses now is the
/// [`CRASH_LOOP_SLOTS`]th crash loop of its schedule in a row, given the
/// schedule's newest finished jobs, newest first, as `(discarded, resumes)`.
pub fn crash_loop_outlives_its_slot(previous: impl IntoIterator<Item = (bool, u32)>) -> bool {
    let looped = previous
        .into_iter()
        .take(CRASH_LOOP_SLOTS - 1)
        .take_while(|&(discarded, resumes)| discarded && resumes > MAX_RESUME_ATTEMPTS)
        .count();
    looped + 1 >= CRASH_LOOP_SLOTS
}

/// After downtime a schedule fires at most this many missed slots.
pub const BACKFILL_MAX: usize = 1;
const _: () = assert!(MAX_RESUME_ATTEMPTS >= 1 && BACKFILL_MAX >= 1 && GHOST_AMNESTY.0 > 0 && CRASH_LOOP_SLOTS >= 2);

/// Retries of a failing job: exponential backoff with jitter and a cap,
/// then `discarded` with the error history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub base: Millis,
    pub cap: Millis,
    /// Error retries at most (crash resumes are not counted here).
    pub max_attempts: u32,
    /// No retry is scheduled later than this after the job was created.
    pub window: Millis,
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` after `attempt` failed: `base *
    /// 2^(attempt-1)`, capped, with ±25% jitter from the handed-in RNG.
    pub fn backoff(&self, attempt: u32, rng: &mut dyn RngCore) -> Millis {
        assert!(attempt >= 1, "backoff is for failed attempts");
        let exp = attempt.saturating_sub(1).min(30);
        let raw = self.base.0.saturating_mul(1u64 << exp).min(self.cap.0);
        let jitter = if raw >= 2 { rng.random_range(0..=raw / 2) } else { 0 };
        Millis(raw - raw / 4 + jitter)
    }

    /// Whether a job that failed its `attempt`-th try is done for.
    pub fn exhausted(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }

    /// When a job that just failed (with `errors` failures so far, this one
    /// included) runs again, or `None` if it is out of attempts or the retry
    /// would land outside its window. `floor` is a wait the failure imposed
    /// (a rate limit's retry-after).
    pub fn next_run(
        &self,
        errors: u32,
        created_at: Timestamp,
        now: Timestamp,
        floor: Millis,
        rng: &mut dyn RngCore,
    ) -> Option<Timestamp> {
        if self.exhausted(errors) {
            return None;
        }
        let at = now + self.backoff(errors, rng).max(floor);
        (at <= created_at + self.window).then_some(at)
    }
}

/// What bounds a job besides the circuit breaker, which decides what the
/// breaker does with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Nothing else: the breaker discards it.
    Breaker,
    /// A checkpointed pipeline, whose schedule the breaker disables.
    Pipeline,
    /// An action under an intent whose attempt cap bounds it.
    Intent(IdempotencyKey),
}

/// What to do with a job just claimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Run,
    /// A pipeline in a crash loop: discard it and disable its schedule.
    Trip(String),
    /// Any other job that keeps dying: discard it alone. A process crash has
    /// no culprit, so the jobs that merely ran beside a poison pipeline reach
    /// the cap too; ticks are idempotent re-runs that the next slot redoes,
    /// so their schedules stay on.
    Discard(String),
    /// An action under an intent: spend one of the intent's attempts, then
    /// run. A crash storm cannot hold an approved kill back until the next
    /// tick's sweep (found by `every-fault`: 6 seeds of 14,000 missed their
    /// deadline that way), and an action that crashes its worker every time
    /// is abandoned when its attempts run out (a discarded kill came back
    /// every tick).
    SpendAttempt {
        key: IdempotencyKey,
        why: String,
    },
}

/// The circuit breaker: the fourth resume of a crashed attempt is refused,
/// in the way `bound` says.
pub fn admit(resumes: u32, bound: Bound) -> Admission {
    if resumes <= MAX_RESUME_ATTEMPTS {
        return Admission::Run;
    }
    let why = format!("{resumes} resumes of crashed attempts (max {MAX_RESUME_ATTEMPTS}): a crash loop");
    match bound {
        Bound::Breaker => Admission::Discard(why),
        Bound::Pipeline => Admission::Trip(why),
        Bound::Intent(key) => Admission::SpendAttempt { key, why },
    }
}

/// The slots of a schedule with period `every` and offset `phase` due at
/// `now` after the last fired `last`: the newest `cap` of them, oldest
/// first. Backfill after downtime is capped; the first ever firing is the
/// current slot only.
pub fn due_slots(last: Option<Timestamp>, now: Timestamp, every: Millis, phase: Millis, cap: usize) -> Vec<Timestamp> {
    let current = slot_of(now, every, phase);
    let Some(last) = last else { return vec![current] };
    let mut out = Vec::new();
    let mut slot = current;
    while slot > last && out.len() < cap {
        out.push(slot);
        slot = slot - every;
    }
    out.reverse();
    out
}

/// The slot a schedule with period `every` and offset `phase` (less than
/// `every`) is in at `now`: the latest `phase + k × every` not after `now`
/// (the epoch before the first).
pub fn slot_of(now: Timestamp, every: Millis, phase: Millis) -> Timestamp {
    debug_assert!(phase.0 < every.0, "phase {phase:?} within the period {every:?}");
    let lead = Millis(every.0 - phase.0);
    (now + lead).floor_to(every) - lead
}

/// Where within its period a brand's schedule fires: a stable offset drawn
/// from the brand and the schedule's names (FNV-1a, no process seed), so
/// that a thousand brands' per-minute ticks are spread over the minute
/// instead of all falling due at its first millisecond (each would wait for
/// the ones before it: a minute of claim lag for the last), and one brand's
/// schedules do not fire together. Every worker and restart computes the
/// same offset, so a slot is still fired once.
pub fn slot_phase(brand: &str, schedule: &str, every: Millis) -> Millis {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in brand.bytes().chain([0]).chain(schedule.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Millis(h % every.0.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn retry_window_and_attempts_bound_retries() {
        let p = RetryPolicy { base: Millis(1000), cap: Millis(8000), max_attempts: 5, window: Millis(10_000) };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let t0 = Timestamp(0);
        assert!(p.next_run(1, t0, Timestamp(0), Millis(0), &mut rng).is_some());
        assert_eq!(p.next_run(5, t0, Timestamp(0), Millis(0), &mut rng), None, "out of attempts");
        assert_eq!(p.next_run(1, t0, Timestamp(9_300), Millis(0), &mut rng), None, "outside the window");
        let at = p.next_run(1, t0, Timestamp(0), Millis(6_000), &mut rng).unwrap();
        assert!(at >= Timestamp(6_000), "a rate limit's wait is a floor");
    }

    #[test]
    fn breaker_opens_on_the_fourth_resume() {
        assert_eq!(admit(0, Bound::Pipeline), Admission::Run);
        assert_eq!(admit(MAX_RESUME_ATTEMPTS, Bound::Pipeline), Admission::Run);
        assert!(matches!(admit(MAX_RESUME_ATTEMPTS + 1, Bound::Pipeline), Admission::Trip(_)));
        assert!(matches!(admit(MAX_RESUME_ATTEMPTS + 1, Bound::Breaker), Admission::Discard(_)));
        let key = IdempotencyKey::new("kill/ad-1");
        let spend = admit(MAX_RESUME_ATTEMPTS + 1, Bound::Intent(key.clone()));
        assert!(matches!(spend, Admission::SpendAttempt { key: k, .. } if k == key));
    }

    #[test]
    fn a_crash_loop_that_outlives_its_slot_trips_at_the_third() {
        let looped = (true, MAX_RESUME_ATTEMPTS + 1);
        assert!(crash_loop_outlives_its_slot([looped, looped]));
        assert!(crash_loop_outlives_its_slot([looped, looped, (false, 0)]), "only the newest count");
        assert!(!crash_loop_outlives_its_slot([looped]), "two in a row is not yet a loop");
        assert!(!crash_loop_outlives_its_slot([]));
        // A completed slot, or a discard for another reason, breaks the run.
        assert!(!crash_loop_outlives_its_slot([looped, (false, MAX_RESUME_ATTEMPTS + 1)]));
        assert!(!crash_loop_outlives_its_slot([(true, 0), looped]));
        assert!(!crash_loop_outlives_its_slot([(true, MAX_RESUME_ATTEMPTS), looped]));
    }

    #[test]
    fn due_slots_table() {
        let (m, z) = (Millis(60), Millis(0));
        assert_eq!(due_slots(None, Timestamp(130), m, z, 5), vec![Timestamp(120)]);
        assert_eq!(due_slots(Some(Timestamp(120)), Timestamp(170), m, z, 5), vec![]);
        assert_eq!(due_slots(Some(Timestamp(60)), Timestamp(130), m, z, 5), vec![Timestamp(120)]);
        // Down for ten periods: only the newest `cap` fire.
        assert_eq!(due_slots(Some(Timestamp(0)), Timestamp(600), m, z, 2), vec![Timestamp(540), Timestamp(600)]);
        // With a phase, slots fall at phase + k × every.
        let p = Millis(25);
        assert_eq!(due_slots(None, Timestamp(130), m, p, 5), vec![Timestamp(85)]);
        assert_eq!(due_slots(Some(Timestamp(85)), Timestamp(144), m, p, 5), vec![]);
        assert_eq!(due_slots(Some(Timestamp(85)), Timestamp(145), m, p, 5), vec![Timestamp(145)]);
    }

    #[test]
    fn slot_of_with_phase_is_the_latest_slot_not_after_now() {
        let every = Millis(60_000);
        for phase in [0, 1, 25_000, 59_999] {
            for now in [0u64, 1, 24_999, 25_000, 59_999, 60_000, 1_767_225_600_123] {
                let s = slot_of(Timestamp(now), every, Millis(phase));
                assert!(s.0 <= now, "phase {phase}, now {now}: slot {s:?} after now");
                assert!(s.0 == 0 || (s.0 % every.0 == phase && now - s.0 < every.0), "phase {phase}, now {now}: {s:?}");
            }
        }
    }

    #[test]
    fn phases_are_stable_and_spread_brands_over_the_period() {
        let every = Millis(60_000);
        assert_eq!(slot_phase("acme", TICK_SCHEDULE, every), slot_phase("acme", TICK_SCHEDULE, every));
        assert_ne!(slot_phase("acme", TICK_SCHEDULE, every), slot_phase("acme", "payables", every));
        // A thousand brands: every second of the minute holds a few ticks, none a crowd.
        let mut per_second = [0u32; 60];
        for b in 0..1000 {
            let p = slot_phase(&format!("brand-{b:04}"), TICK_SCHEDULE, every);
            assert!(p.0 < every.0);
            per_second[(p.0 / 1000) as usize] += 1;
        }
        assert!(per_second.iter().all(|&n| (3..=40).contains(&n)), "{per_second:?}");
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let p = RetryPolicy { base: Millis(1000), cap: Millis(30_000), max_attempts: 5, window: Millis(3_600_000) };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for attempt in 1..=12u32 {
            let raw = (1000u64 << (attempt - 1).min(30)).min(30_000);
            for _ in 0..50 {
                let d = p.backoff(attempt, &mut rng).0;
                assert!(d >= raw * 3 / 4 && d <= raw * 5 / 4, "attempt {attempt}: {d} vs {raw}");
            }
        }
        assert!(!p.exhausted(4));
        assert!(p.exhausted(5));
    }
}
