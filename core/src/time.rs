//! Time as the loop sees it: milliseconds on a clock that is handed in.
//!
//! Core never reads the wall clock. The `Clock` port is implemented by
//! turmoil's virtual time (sim), by a manual clock (tests, backtests) and by
//! the real clock (live).

use std::fmt;
use std::future::Future;
use std::ops::{Add, Sub};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

/// A duration in milliseconds.
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub const fn from_secs(secs: u64) -> Millis {
        Millis(secs * 1000)
    }
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl Timestamp {
    /// The start of the `width`-wide slot containing `self` (slots aligned to the epoch).
    pub fn floor_to(self, width: Millis) -> Timestamp {
        assert!(width.0 > 0, "slot width must be positive");
        Timestamp(self.0 - self.0 % width.0)
    }

    /// Time since `earlier`, zero if `earlier` is later (never underflows).
    pub fn since(self, earlier: Timestamp) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Millis> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Millis) -> Timestamp {
        Timestamp(self.0.checked_add(rhs.0).expect("timestamp overflow"))
    }
}

impl Sub<Millis> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Millis) -> Timestamp {
        Timestamp(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}ms", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

impl fmt::Debug for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The clock port. `sleep` is how the loop waits; in the sim it is virtual.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    fn sleep(&self, duration: Millis) -> impl Future<Output = ()> + Send;
}

impl<T: Clock> Clock for &T {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
    fn sleep(&self, duration: Millis) -> impl Future<Output = ()> + Send {
        (**self).sleep(duration)
    }
}

impl<T: Clock> Clock for std::sync::Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
    fn sleep(&self, duration: Millis) -> impl Future<Output = ()> + Send {
        (**self).sleep(duration)
    }
}

/// A clock for tests and backtests: time moves only when told, never backwards.
/// `sleep` advances it, so a loop driven by it runs at full speed.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: std::sync::atomic::AtomicU64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock { now_ms: start.0.into() }
    }

    /// Moves the clock to `to`. Panics if `to` is in the past: time never goes backwards.
    pub fn set(&self, to: Timestamp) {
        let prev = self.now_ms.swap(to.0, std::sync::atomic::Ordering::SeqCst);
        assert!(prev <= to.0, "clock moved backwards: {prev} -> {}", to.0);
    }

    pub fn advance(&self, by: Millis) {
        self.now_ms.fetch_add(by.0, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now_ms.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn sleep(&self, duration: Millis) -> impl Future<Output = ()> + Send {
        self.advance(duration);
        std::future::ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_and_since() {
        assert_eq!(Timestamp(125_000).floor_to(Millis::from_secs(60)), Timestamp(120_000));
        assert_eq!(Timestamp(5).since(Timestamp(9)), Millis(0));
        assert_eq!(Timestamp(9).since(Timestamp(5)), Millis(4));
    }

    #[test]
    #[should_panic(expected = "clock moved backwards")]
    fn manual_clock_refuses_to_go_back() {
        let c = ManualClock::new(Timestamp(10));
        c.set(Timestamp(9));
    }
}

/// The last time something happened, shared across tasks without a lock
/// (a worker's last claim, a vendor's last good answer): ms since the
/// epoch in an atomic, 0 = never. Only ever moves forward.
#[derive(Debug, Default)]
pub struct LastSeen(std::sync::atomic::AtomicU64);

impl LastSeen {
    pub fn mark(&self, at: Timestamp) {
        self.0.fetch_max(at.0, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<Timestamp> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            t => Some(Timestamp(t)),
        }
    }
}
