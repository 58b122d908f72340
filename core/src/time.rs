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

/// Reads a duration as people write it: a whole number and a unit (`ms`,
/// `s`, `m`, `h`, `d`: `"500ms"`, `"5s"`, `"4h"`), in milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?} is not a duration such as \"5s\", \"4h\""))?;
    let per = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("{text:?} has no unit (ms, s, m, h, d)")),
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h, d)")),
    };
    n.checked_mul(per).ok_or_else(|| format!("{text:?} is too long"))
}

/// A duration field in `unit_ms` milliseconds: an integer in that unit, or
/// a string with its own unit that is a whole number of it.
struct DurationIn(u64);

impl serde::de::Visitor<'_> for DurationIn {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number, or a duration such as \"5s\", \"4h\"")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
        let ms = parse_duration_ms(v).map_err(E::custom)?;
        if ms % self.0 != 0 {
            let unit = if self.0 == 1_000 { "second" } else { "unit" };
            return Err(E::custom(format!("{v:?} is not a whole number of {unit}s")));
        }
        Ok(ms / self.0)
    }
}

/// `#[serde(deserialize_with)]` for a `*_s` field: `30` or `"30s"`, `"4h"`.
pub fn de_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(DurationIn(1_000))
}

/// `#[serde(deserialize_with)]` for a `*_ms` field: `500` or `"500ms"`, `"2s"`.
pub fn de_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(DurationIn(1))
}

/// [`de_secs`] for an optional field (with `#[serde(default)]`).
pub fn de_opt_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_secs(d).map(Some)
}

/// [`de_ms`] for an optional field (with `#[serde(default)]`).
pub fn de_opt_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_ms(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        #[derive(Deserialize)]
        struct F {
            #[serde(deserialize_with = "de_secs")]
            every_s: u64,
            #[serde(deserialize_with = "de_ms")]
            poll_ms: u64,
            #[serde(default, deserialize_with = "de_opt_secs")]
            after_s: Option<u64>,
        }
        let f: F = serde_json::from_str(r#"{"every_s": "4h", "poll_ms": "2s", "after_s": 30}"#).unwrap();
        assert_eq!((f.every_s, f.poll_ms, f.after_s), (14_400, 2_000, Some(30)));
        let f: F = serde_json::from_str(r#"{"every_s": 5, "poll_ms": "250ms"}"#).unwrap();
        assert_eq!((f.every_s, f.poll_ms, f.after_s), (5, 250, None));
        for (bad, why) in [
            (r#"{"every_s": "1500ms", "poll_ms": 1}"#, "not a whole number of seconds"),
            (r#"{"every_s": "5", "poll_ms": 1}"#, "no unit"),
            (r#"{"every_s": "5y", "poll_ms": 1}"#, "unknown unit"),
            (r#"{"every_s": -5, "poll_ms": 1}"#, "negative"),
            (r#"{"every_s": "soon", "poll_ms": 1}"#, "not a duration"),
        ] {
            let e = serde_json::from_str::<F>(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

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
