//! Scheduler policy: limits, retry backoff, and schedule slots. Pure
//! functions; the worker loop (`worker`) moves the data.

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::time::{Millis, Timestamp};

/// The per-minute tick's schedule name.
pub const TICK_SCHEDULE: &str = "insights-tick";

/// Retries of a failing job: exponential backoff with jitter and a cap,
/// then `discarded` with the error history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub base: Millis,
    pub cap: Millis,
    pub max_attempts: u32,
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
}

/// The slot a schedule with period `every` is in at `now`.
pub fn slot_of(now: Timestamp, every: Millis) -> Timestamp {
    now.floor_to(every)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let p = RetryPolicy { base: Millis(1000), cap: Millis(30_000), max_attempts: 5 };
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
