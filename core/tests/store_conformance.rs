//! The MemStore passes the store conformance suite; and the event log's
//! replay refuses a log with a gap.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use dlft_core::ids::WorkerId;
use dlft_core::schedule::task::{JobKind, Task};
use dlft_core::store::conformance::cases;
use dlft_core::store::{ClaimRequest, NewJob, Outcome, SharedMemStore, Store};
use dlft_core::telemetry::replay;
use dlft_core::time::{Millis, Timestamp};

/// Drives a future that never waits (the MemStore's are ready at once).
fn block_on<F: Future>(f: F) -> F::Output {
    match pin!(f).as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("store future was not ready"),
    }
}

#[test]
fn mem_store_passes_the_conformance_suite() {
    let all = cases::<SharedMemStore>();
    assert!(all.len() >= 14);
    for (name, case) in all {
        eprintln!("case {name}");
        block_on(case(SharedMemStore::new()));
    }
}

#[test]
fn replay_rejects_a_log_with_a_gap() {
    let s = SharedMemStore::new();
    let job = NewJob::new(&Task::PollInsights { slot: Timestamp(0) }, 0, Timestamp(0), None);
    block_on(s.enqueue(job, Timestamp(0))).unwrap();
    let boot = block_on(s.boot(&WorkerId::new("w"), Timestamp(0))).unwrap();
    let req = ClaimRequest {
        brands: vec![dlft_core::ids::BrandId::default()],
        worker: WorkerId::new("w"),
        incarnation: boot.incarnation,
        kinds: JobKind::ALL.to_vec(),
        limit: 1,
        lease_for: Millis(1000),
    };
    let c = block_on(s.claim(&req, Timestamp(0))).unwrap().remove(0);
    block_on(s.finish(&c.lease, Outcome::Completed, vec![], Timestamp(1))).unwrap();
    let mut events = block_on(s.events(0)).unwrap();
    assert!(replay(&events).is_ok());
    let claimed = events.iter().position(|e| e.after == "running").unwrap();
    events.remove(claimed);
    assert!(replay(&events).is_err(), "a missing transition row is detected");
}
