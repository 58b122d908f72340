//! What this process's adapters heard from each vendor: responses by HTTP
//! status (`timeout` and `transport` when none came back), and when each
//! vendor last answered 2xx. Process-local counters for `/metrics`: each
//! runner exposes its own (Prometheus sums them across runners). Globals
//! and the system clock are fine here: this is the live edge, never the
//! deterministic path.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use dlft_core::ids::BrandId;
use dlft_core::time::{Clock, Timestamp};

/// (vendor, brand, code) → responses.
static RESPONSES: Mutex<BTreeMap<(String, String, String), u64>> = Mutex::new(BTreeMap::new());
/// (vendor, brand) → when it last answered 2xx.
static LAST_OK: Mutex<BTreeMap<(String, String), Timestamp>> = Mutex::new(BTreeMap::new());

/// Counts one exchange with `vendor` on `brand`'s account: its HTTP
/// status, or how it failed.
pub fn observe(vendor: &str, brand: &BrandId, sent: &Result<reqwest::Response, reqwest::Error>) {
    let code = match sent {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "transport".into(),
    };
    if sent.as_ref().is_ok_and(|r| r.status().is_success()) {
        LAST_OK
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((vendor.to_string(), brand.to_string()), crate::SystemClock.now());
    }
    *RESPONSES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry((vendor.to_string(), brand.to_string(), code))
        .or_default() += 1;
}

/// What the counters hold now.
pub struct Heard {
    /// ((vendor, brand, code), responses).
    pub responses: Vec<((String, String, String), u64)>,
    /// ((vendor, brand), when it last answered 2xx).
    pub last_ok: Vec<((String, String), Timestamp)>,
}

pub fn snapshot() -> Heard {
    Heard {
        responses: RESPONSES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect(),
        last_ok: LAST_OK.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(v, t)| (v.clone(), *t)).collect(),
    }
}
