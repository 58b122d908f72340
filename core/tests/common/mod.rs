//! Shared by the write-ahead machine tests (each uses part of it).

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use dlft_core::config::{LoopSettings, PlatformShape};
use dlft_core::envelope::budget::{Budgets, Cap, Zone};
use dlft_core::ids::{BrandId, WorkerId};
use dlft_core::money::Currency;
use dlft_core::schedule::task::{JobKind, Task};
use dlft_core::store::{Claim, ClaimRequest, NewJob, SharedMemStore, Store};
use dlft_core::time::{Millis, Timestamp};

/// 2026-12-02 10:00 UTC (11:00 in Berlin).
pub const NOW: Timestamp = Timestamp(1_796_205_600_000);

/// Polls a future that never waits (the MemStore's and the scripted
/// vendors' are ready at once).
pub fn block_on<F: Future>(f: F) -> F::Output {
    match pin!(f).as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future was not ready"),
    }
}

/// The sandbox's loop settings, with 4 attempts and no read-back window.
pub fn loop_cfg() -> dlft_core::config::LoopConfig {
    let settings: LoopSettings = serde_json::from_value(serde_json::json!({
        "kill_cpa_cents": 6000, "envelope_floor_cents": 6000, "maturation_s": 15, "learning_s": 20,
        "lookback_s": 120, "max_attempts": 4, "max_kill_share_pct": 50, "claim_poll_ms": 200, "lease_ms": 5000,
        "rpc_timeout_ms": 2000, "retry_base_ms": 200, "retry_cap_ms": 2000, "retry_max_attempts": 20,
        "retry_window_s": 300, "tick_concurrency": 1, "kill_concurrency": 4, "job_timeout_ms": 20000,
        "readback_confirm_ms": 0, "readback_poll_ms": 500
    }))
    .unwrap();
    let shape = PlatformShape { currency: Currency::EUR, bucket: Millis(5_000), page_limit: 100 };
    settings.loop_config(&shape, Millis::from_secs(600), None)
}

/// A MemStore whose default brand has `caps` in Berlin, and a claimed job
/// to write with.
pub fn claimed_store(caps: Vec<Cap>) -> (SharedMemStore, Claim) {
    let store = SharedMemStore::new();
    let budgets = Budgets::new(Zone::parse("Europe/Berlin").unwrap(), caps).unwrap();
    block_on(store.set_budgets(&BrandId::default(), &budgets, NOW)).unwrap();
    let inc = block_on(store.boot(&WorkerId::new("w"), NOW)).unwrap().incarnation;
    block_on(store.enqueue(NewJob::new(&Task::PollInsights { slot: NOW }, 0, NOW, None), NOW)).unwrap();
    let req = ClaimRequest {
        brands: vec![BrandId::default()],
        worker: WorkerId::new("w"),
        incarnation: inc,
        kinds: JobKind::ALL.to_vec(),
        limit: 1,
        lease_for: Millis(3_600_000),
    };
    let claim = block_on(store.claim(&req, NOW)).unwrap().remove(0);
    (store, claim)
}
