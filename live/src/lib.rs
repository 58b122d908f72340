//! # dlft-live
//!
//! Production adapters for `dlft-core`'s ports. For now: the real clock.
//! The Meta adapter (reqwest), the SQL stores (sqlx) and the `dlft run`
//! runner land here next; none of them makes a decision: every `if` about
//! domain policy lives in core.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

pub mod calls;
pub mod claims;
pub mod config;
pub mod meta;
pub mod pace;
pub mod payouts;
pub mod revolut;
pub mod shopify;
pub mod store;
pub mod support;
pub mod svix;
pub mod testenv;
pub mod track17;
pub mod webhook;

use dlft_core::time::{Clock, Millis, Timestamp};

/// Wall-clock time: the one place DLFT reads it.
#[derive(Copy, Clone, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // live is where the real clock belongs
    fn now(&self) -> Timestamp {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(since.as_millis() as u64)
    }

    fn sleep(&self, duration: Millis) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration.as_std())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    #[allow(clippy::disallowed_methods, reason = "live is where the real clock lives")]
    async fn sleep_waits_and_now_is_real_time() {
        let c = SystemClock;
        // 2026-01-01 as a floor: a clock reading before it is not the real clock.
        assert!(c.now() >= Timestamp(1_767_225_600_000));
        let before = tokio::time::Instant::now();
        c.sleep(Millis(1500)).await;
        assert!(before.elapsed() >= std::time::Duration::from_millis(1500));
    }
}
