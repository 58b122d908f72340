//! Adaptive scan cadence: a per-store activity score with exponential decay
//! picks how often the store's ad library is scanned (daily → 3-day → weekly).
//! Pure integer arithmetic on milli-points; time comes in as a parameter.

use serde::{Deserialize, Serialize};

use crate::time::{Millis, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CadenceConfig {
    /// The score halves over this long without new activity.
    pub half_life: Millis,
    /// Scan daily at or above this score (milli-points; one new ad = 1000).
    pub daily_at: u64,
    /// Every three days at or above this; weekly below.
    pub three_day_at: u64,
    pub daily: Millis,
    pub three_day: Millis,
    pub weekly: Millis,
}

/// A store's activity as of `at`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub score_milli: u64,
    pub at: Timestamp,
}

/// `score × 2^(−elapsed / half_life)`: whole half-lives by shifting, the rest
/// by linear interpolation between the two neighbouring halvings (exact in
/// integers, monotone, never above the true curve by more than 6 %).
pub fn decay(score_milli: u64, elapsed: Millis, half_life: Millis) -> u64 {
    assert!(half_life.0 > 0, "half-life must be positive");
    let halvings = elapsed.0 / half_life.0;
    if halvings >= 64 {
        return 0;
    }
    let base = score_milli >> halvings;
    let frac = u128::from(elapsed.0 % half_life.0);
    // base − (base/2) × frac/half_life
    base - ((u128::from(base / 2) * frac) / u128::from(half_life.0)) as u64
}

/// The activity after a scan at `now` that found `new_ads` ads not seen before.
pub fn observe(prev: Activity, new_ads: u32, now: Timestamp, cfg: &CadenceConfig) -> Activity {
    let decayed = decay(prev.score_milli, now.since(prev.at), cfg.half_life);
    Activity { score_milli: decayed.saturating_add(u64::from(new_ads) * 1000), at: now }
}

/// How long until the next scan, for the score as of now.
pub fn cadence(score_milli: u64, cfg: &CadenceConfig) -> Millis {
    if score_milli >= cfg.daily_at {
        cfg.daily
    } else if score_milli >= cfg.three_day_at {
        cfg.three_day
    } else {
        cfg.weekly
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: u64 = 86_400_000;

    fn cfg() -> CadenceConfig {
        CadenceConfig {
            half_life: Millis(3 * DAY),
            daily_at: 5_000,
            three_day_at: 1_000,
            daily: Millis(DAY),
            three_day: Millis(3 * DAY),
            weekly: Millis(7 * DAY),
        }
    }

    #[test]
    fn decay_table() {
        let h = Millis(1000);
        for (score, elapsed, want) in
            [(8000, 0, 8000), (8000, 1000, 4000), (8000, 2000, 2000), (8000, 500, 6000), (1, 100_000, 0)]
        {
            assert_eq!(decay(score, Millis(elapsed), h), want, "decay({score}, {elapsed})");
        }
    }

    #[test]
    fn a_busy_store_is_scanned_daily_and_a_quiet_one_slides_to_weekly() {
        let c = cfg();
        let mut a = Activity::default();
        a = observe(a, 6, Timestamp(0), &c);
        assert_eq!(cadence(a.score_milli, &c), c.daily);
        // No new ads for a while: daily → 3-day → weekly as the score decays.
        let later = |days: u64| decay(a.score_milli, Millis(days * DAY), c.half_life);
        assert_eq!(cadence(later(3), &c), c.three_day);
        assert_eq!(cadence(later(9), &c), c.weekly);
    }

    proptest! {
        #[test]
        fn decay_is_monotone_and_bounded(score in 0u64..1_000_000_000, a in 0u64..10_000_000, b in 0u64..10_000_000) {
            let h = Millis(1_000_000);
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(decay(score, Millis(hi), h) <= decay(score, Millis(lo), h));
            prop_assert!(decay(score, Millis(lo), h) <= score);
        }
    }
}
