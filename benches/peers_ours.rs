//! Our queue draining N no-op jobs through the `Store` port, the way
//! `benches/peers/run.sh` drains graphile-worker's and pgqueuer's: the jobs
//! are queued first (not timed), then 8 clients claim batches and complete
//! them until the queue is empty. Prints one JSON line. Run by the peers
//! script (`cargo bench --bench peers_ours -- <jobs> <batch>`), not by CI.
//!
//! Needs PostgreSQL (`DLFT_TEST_PG_URL`, default the local server).

#![allow(clippy::disallowed_methods, reason = "a wall-clock benchmark of a real database")]

use std::time::Instant;

use dlft_core::ids::WorkerId;
use dlft_core::schedule::task::{JobKind, Task};
use dlft_core::store::{ClaimRequest, NewJob, Store};
use dlft_core::time::{Millis, Timestamp};
use dlft_live::store::{PgStore, PoolOptions, open_pg};
use dlft_live::testenv::{PG_DEFAULT_URL, PG_URL_VAR};

const CLIENTS: u64 = 8;
const SCHEMA: &str = "dlft_peers";

async fn exec(store: &PgStore, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(store.pool()).await.unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let jobs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let batch: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let url = std::env::var(PG_URL_VAR).unwrap_or_else(|_| PG_DEFAULT_URL.to_string());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let opts =
            PoolOptions { max_connections: CLIENTS as u32, pg_schema: Some(SCHEMA.into()), ..PoolOptions::default() };
        let store = open_pg(&url, &opts).await.unwrap();
        let new = NewJob::new(&Task::PollInsights { slot: Timestamp(0) }, 0, Timestamp(0), None);
        exec(&store, "TRUNCATE dlft_jobs, dlft_jobs_done, dlft_events").await;
        exec(
            &store,
            &format!(
                "INSERT INTO dlft_jobs (brand, kind, payload, priority, run_at, created_at, state) \
                 SELECT 'default', '{}', '{}', 0, 0, 0, 'available' FROM generate_series(1, {jobs})",
                new.kind, new.payload
            ),
        )
        .await;
        exec(&store, "VACUUM ANALYZE dlft_jobs").await;
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let worker = WorkerId::new(format!("peers-{c}"));
            let inc = store.boot(&worker, Timestamp(1)).await.unwrap().incarnation;
            let req = ClaimRequest {
                brands: vec![dlft_core::ids::BrandId::default()],
                worker,
                incarnation: inc,
                kinds: vec![JobKind::PollInsights],
                limit: batch,
                lease_for: Millis(600_000),
            };
            clients.push((store.clone(), req));
        }
        let start = Instant::now();
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|(store, req)| {
                tokio::spawn(async move {
                    let mut done = 0u64;
                    loop {
                        let claims = store.claim(&req, Timestamp(2)).await.unwrap();
                        if claims.is_empty() {
                            return done;
                        }
                        done += claims.len() as u64;
                        let leases = claims.into_iter().map(|c| (c.lease, vec![])).collect();
                        assert!(store.complete_batch(leases, Timestamp(3)).await.unwrap().is_empty());
                    }
                })
            })
            .collect();
        let mut done = 0;
        for t in tasks {
            done += t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(done, jobs, "every job ran once");
        println!(
            "{{\"peer\":\"dlft\",\"mode\":\"batch {batch}, {CLIENTS} clients\",\"jobs\":{jobs},\"seconds\":{secs:.3},\"jobs_per_s\":{:.0}}}",
            jobs as f64 / secs
        );
        store.pool().close().await;
    });
}
