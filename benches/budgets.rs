//! Budget reservations through the store, beside the claim path, on SQLite
//! and PostgreSQL (one "element" = one intent opened, or one job).
//!
//! - `open/N`: one fenced write opening N intents that reserve nothing (the
//!   write-ahead intent alone: the intent row and its event row).
//! - `reserve/N`: the same write with every intent reserving against a
//!   brand's daily, monthly and lifetime caps (Europe/Berlin): the budgets
//!   read, three accounts created-if-missing and locked, checked, a
//!   transfer row and its event row. `reserve / open` is what the ledger
//!   costs an intent.
//! - `claim/1`: a claim of one job and its `finish`, as a worker does: the
//!   claim path a reservation rides along with.
//!
//! One client, the store through the `Store` port. PostgreSQL needs
//! `DLFT_TEST_PG_URL` (default the local server); SQLite is a file in a
//! temporary directory.

#![allow(clippy::disallowed_methods, reason = "a wall-clock benchmark of real databases")]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dlft_core::act::intent::{Action, Evidence, IntentOp, NewIntent};
use dlft_core::envelope::budget::{Budgets, Cap, Purpose, Reserve, Window, Zone};
use dlft_core::envelope::{Decision, Verdict};
use dlft_core::estimate::estimator::AdEstimate;
use dlft_core::ids::{AdId, BrandId, IdempotencyKey, WorkerId};
use dlft_core::money::{Currency, Money};
use dlft_core::schedule::task::{JobKind, Task};
use dlft_core::store::{ClaimRequest, Lease, NewJob, Outcome, Store, WriteBatch};
use dlft_core::time::{Millis, Timestamp};
use dlft_live::store::{PoolOptions, open_pg, open_sqlite};
use dlft_live::testenv::{PG_DEFAULT_URL, PG_URL_VAR};

/// 2026-12-02 10:00 UTC.
const NOW: Timestamp = Timestamp(1_796_205_600_000);
const SCHEMA: &str = "dlft_bench_budgets";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn intent(n: u64, reserve: bool) -> IntentOp {
    let ad = AdId::new(format!("ad-{n}"));
    let key = IdempotencyKey::new(format!("pay/{n}"));
    let zero = Money::zero(Currency::EUR);
    IntentOp::Open(NewIntent {
        key: key.clone(),
        action: Action::KillAd { ad: ad.clone() },
        evidence: Evidence::Kill(AdEstimate {
            ad: ad.clone(),
            first_bucket: NOW,
            matured_until: NOW,
            matured_spend: zero,
            matured_purchases: 0,
            matured_revenue: zero,
            in_learning: false,
        }),
        verdict: Verdict { ad, key, decision: Decision::Approve, at: NOW, reason: String::new() },
        reserve: reserve.then(|| Reserve {
            purpose: Purpose::Payout,
            amount: Money::new(100, Currency::EUR),
            counterparty: None,
        }),
    })
}

/// Declares caps no bench run reaches, boots a worker and claims a job
/// whose lease every write is fenced on.
async fn setup<S: Store>(s: &S) -> (ClaimRequest, Lease) {
    let cap = |window| Cap::brand(Purpose::Payout, window, Money::new(i64::MAX / 4, Currency::EUR));
    let caps = vec![cap(Window::Daily), cap(Window::Monthly), cap(Window::Lifetime)];
    let budgets = Budgets::new(Zone::parse("Europe/Berlin").unwrap(), caps).unwrap();
    s.set_budgets(&BrandId::default(), &budgets, NOW).await.unwrap();
    let worker = WorkerId::new("bench");
    let inc = s.boot(&worker, NOW).await.unwrap().incarnation;
    let req = ClaimRequest {
        brands: vec![BrandId::default()],
        worker,
        incarnation: inc,
        kinds: vec![JobKind::PollInsights],
        limit: 1,
        lease_for: Millis(3_600_000_000),
    };
    s.enqueue(NewJob::new(&Task::PollInsights { slot: NOW }, 0, NOW, None), NOW).await.unwrap();
    let lease = s.claim(&req, NOW).await.unwrap().remove(0).lease;
    (req, lease)
}

/// `iters` writes of `batch` fresh intents each (reserving or not).
async fn writes<S: Store>(s: &S, lease: &Lease, next: &mut u64, batch: u64, reserve: bool, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let intents = (0..batch).map(|i| intent(*next + i, reserve)).collect();
        *next += batch;
        let r = s.write(lease, WriteBatch { intents, ..WriteBatch::default() }, NOW).await.unwrap();
        assert!(r.refused.is_empty());
    }
    start.elapsed()
}

/// `iters` claims of one job, each finished.
async fn claims<S: Store>(s: &S, req: &ClaimRequest, iters: u64) -> Duration {
    for i in 0..iters {
        s.enqueue(NewJob::new(&Task::PollInsights { slot: Timestamp(i) }, 0, NOW, None), NOW).await.unwrap();
    }
    let start = Instant::now();
    for _ in 0..iters {
        let c = s.claim(req, NOW).await.unwrap().remove(0);
        s.finish(&c.lease, Outcome::Completed, vec![], NOW).await.unwrap();
    }
    start.elapsed()
}

fn group<S: Store>(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, s: S) {
    let (req, lease) = rt.block_on(setup(&s));
    let mut next = 0u64;
    let mut g = c.benchmark_group(name);
    g.sample_size(10).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for batch in [1u64, 50] {
        g.throughput(Throughput::Elements(batch));
        for (label, reserve) in [("open", false), ("reserve", true)] {
            g.bench_function(BenchmarkId::new(label, batch), |b| {
                b.iter_custom(|iters| rt.block_on(writes(&s, &lease, &mut next, batch, reserve, iters)))
            });
        }
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("claim", 1), |b| b.iter_custom(|iters| rt.block_on(claims(&s, &req, iters))));
    g.finish();
}

fn budgets(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = rt.block_on(open_sqlite(&url, &PoolOptions::default())).unwrap();
    group(c, "budgets_sqlite", &rt, sqlite);

    let url = std::env::var(PG_URL_VAR).unwrap_or_else(|_| PG_DEFAULT_URL.to_string());
    let opts = PoolOptions { pg_schema: Some(SCHEMA.into()), ..PoolOptions::default() };
    let pg = rt.block_on(open_pg(&url, &opts)).unwrap();
    let drop_schema = format!("DROP SCHEMA \"{SCHEMA}\" CASCADE");
    // A schema left by an earlier run (or an older build) starts over.
    rt.block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(drop_schema.clone())).execute(pg.pool())).unwrap();
    let pg = rt.block_on(open_pg(&url, &opts)).unwrap();
    group(c, "budgets_pg", &rt, pg.clone());
    rt.block_on(sqlx::raw_sql(sqlx::AssertSqlSafe(drop_schema)).execute(pg.pool())).unwrap();
}

criterion_group!(benches, budgets);
criterion_main!(benches);
