//! What this process's adapters heard from each vendor: responses by HTTP
//! status (`timeout` and `transport` when none came back), and when each
//! vendor last answered 2xx. Process-local counters for `/metrics`: each
//! runner exposes its own (Prometheus sums them across runners). Globals
//! and the system clock are fine here: this is the live edge, never the
//! deterministic path.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use dlft_core::time::{Clock, Timestamp};

static RESPONSES: Mutex<BTreeMap<(String, String), u64>> = Mutex::new(BTreeMap::new());
static LAST_OK: Mutex<BTreeMap<String, Timestamp>> = Mutex::new(BTreeMap::new());

/// Counts one exchange with `vendor`: its HTTP status, or how it failed.
pub fn observe(vendor: &str, sent: &Result<reqwest::Response, reqwest::Error>) {
    let code = match sent {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "transport".into(),
    };
    if sent.as_ref().is_ok_and(|r| r.status().is_success()) {
        LAST_OK.lock().unwrap_or_else(PoisonError::into_inner).insert(vendor.to_string(), crate::SystemClock.now());
    }
    *RESPONSES.lock().unwrap_or_else(PoisonError::into_inner).entry((vendor.to_string(), code)).or_default() += 1;
}

/// What the counters hold now.
pub struct Heard {
    /// ((vendor, code), responses).
    pub responses: Vec<((String, String), u64)>,
    /// (vendor, when it last answered 2xx).
    pub last_ok: Vec<(String, Timestamp)>,
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
