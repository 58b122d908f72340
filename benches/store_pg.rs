//! Claim+complete throughput of the PostgreSQL store beside the raw SQL
//! limit, measured in the same run with pgbench (one "element" = one job).
//!
//! - `raw_pgbench/batch_N`: pgbench runs a two-statement script per
//!   transaction of the benchmark: a `FOR NO KEY UPDATE SKIP LOCKED` claim
//!   of N rows (one statement, marking them running) and a `DELETE` of the
//!   claimed ids. Same table shape and indexes as the store's hot table;
//!   nothing else: no events, no fencing, no history.
//! - `store_sql_pgbench/batch_N`: the store's own two statements (the claim
//!   with its event rows, the completion moving rows to `dlft_jobs_done`
//!   with theirs), run by pgbench: what the store's data model costs the
//!   server, without our client.
//! - `store/batch_N`: the store, through the `Store` port: `claim` of N
//!   (incarnation check, the batched CTE claim, one event row per job) and
//!   then `complete_batch` (fenced, rows moved to `dlft_jobs_done`, one event
//!   row per job); for N = 1, `claim` and `finish`, as a worker does. Both
//!   are one statement each on PostgreSQL.
//!
//! Both sides use 8 clients (8 connections; pgbench with 2 threads, the store
//! on a 2-thread tokio runtime) against the same server, each on a backlog
//! twice the size of the jobs it will take. The claim and the completion are
//! separate transactions on both sides, as they must be in a real queue (the
//! job runs between them).
//!
//! Needs PostgreSQL (`DLFT_TEST_PG_URL`, default the local server) and
//! `pgbench` on the PATH.

#![allow(clippy::disallowed_methods, reason = "a wall-clock benchmark of a real database")]

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dlft_core::ids::WorkerId;
use dlft_core::schedule::task::{JobKind, Task};
use dlft_core::store::{ClaimRequest, NewJob, Outcome, Store};
use dlft_core::time::{Millis, Timestamp};
use dlft_live::store::{PgStore, PoolOptions, open_pg};
use dlft_live::testenv::{PG_DEFAULT_URL, PG_URL_VAR};

const CLIENTS: u64 = 8;
const SCHEMA: &str = "dlft_bench";

fn pg_url() -> String {
    std::env::var(PG_URL_VAR).unwrap_or_else(|_| PG_DEFAULT_URL.to_string())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn exec(store: &PgStore, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(store.pool()).await.unwrap();
}

/// Empties both tables and fills each with `n` ready jobs.
async fn refill(store: &PgStore, n: u64) {
    let new = NewJob::new(&Task::PollInsights { slot: Timestamp(0) }, 0, Timestamp(0), None);
    // The store's table names each job's brand; the minimal one has none.
    let fill = |table: &str, brand: (&str, &str)| {
        format!(
            "INSERT INTO {table} ({}kind, payload, priority, run_at, created_at, state) \
             SELECT {}'{}', '{}', 0, 0, 0, 'available' FROM generate_series(1, {n})",
            brand.0, brand.1, new.kind, new.payload
        )
    };
    exec(store, "TRUNCATE dlft_jobs, dlft_jobs_done, dlft_events, dlft_raw_jobs").await;
    exec(store, "INSERT INTO dlft_workers VALUES ('pgbench', 1) ON CONFLICT (worker) DO UPDATE SET incarnation = 1")
        .await;
    exec(store, &fill("dlft_jobs", ("brand, ", "'default', "))).await;
    exec(store, &fill("dlft_raw_jobs", ("", ""))).await;
    exec(store, "VACUUM ANALYZE dlft_jobs").await;
    exec(store, "VACUUM ANALYZE dlft_raw_jobs").await;
}

/// `iters` claim+complete cycles of `batch` jobs, spread over the clients.
async fn store_cycles(store: &PgStore, batch: u32, iters: u64) -> Duration {
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let worker = WorkerId::new(format!("bench-{c}"));
        let inc = store.boot(&worker, Timestamp(1)).await.unwrap().incarnation;
        let cycles = iters / CLIENTS + u64::from(c < iters % CLIENTS);
        let req = ClaimRequest {
            brands: vec![dlft_core::ids::BrandId::default()],
            worker,
            incarnation: inc,
            kinds: vec![JobKind::PollInsights],
            limit: batch,
            lease_for: Millis(600_000),
        };
        clients.push((store.clone(), req, cycles));
    }
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(store, req, cycles)| {
            tokio::spawn(async move {
                for _ in 0..cycles {
                    let claims = store.claim(&req, Timestamp(2)).await.unwrap();
                    assert_eq!(claims.len() as u32, req.limit, "the backlog never runs dry");
                    if req.limit == 1 {
                        store.finish(&claims[0].lease, Outcome::Completed, vec![], Timestamp(3)).await.unwrap();
                    } else {
                        let done = claims.into_iter().map(|c| (c.lease, vec![])).collect();
                        assert!(store.complete_batch(done, Timestamp(3)).await.unwrap().is_empty());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

/// The minimal claim + delete script, on a copy of the hot table.
fn raw_script(batch: u32) -> String {
    format!(
        "WITH ready AS (SELECT id FROM {SCHEMA}.dlft_raw_jobs WHERE kind = 'poll_insights' AND state = 'available' \
           AND run_at <= 2 ORDER BY priority, run_at, id LIMIT {batch} FOR NO KEY UPDATE SKIP LOCKED), \
         claimed AS (UPDATE {SCHEMA}.dlft_raw_jobs j SET state = 'running', lease_token = 1, lease_worker = 'raw', \
           lease_expires_at = 600002 FROM ready WHERE j.id = ready.id RETURNING j.id) \
         SELECT coalesce(array_agg(id), '{{}}') AS ids FROM claimed \\gset\n\
         DELETE FROM {SCHEMA}.dlft_raw_jobs WHERE id = ANY(:ids::bigint[]);\n"
    )
}

/// The store's own two statements (claim with its event rows; completion
/// moving rows to the done table with theirs), driven by pgbench instead of
/// sqlx: what the data model costs, without our client.
fn store_sql_script(batch: u32) -> String {
    let claim = dlft_live::store::pg::CLAIM_ONE_KIND_SQL
        .replace("$1", "'{poll_insights}'::text[]")
        .replace("$2", "2")
        .replace("$3", &batch.to_string())
        .replace("$4", "'pgbench'")
        .replace("$5", "1")
        .replace("$6", "600000")
        .replace("$7", "'scheduler'")
        .replace("$8", "'job_claimed'")
        .replace("$9", "'{default}'::text[]")
        .replace(
            "SELECT * FROM claimed",
            "SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(lease_token), '{}') AS toks FROM claimed",
        );
    let complete = dlft_live::store::pg::COMPLETE_SQL
        .replace("$1", ":ids")
        .replace("$2", ":toks")
        .replace("$3", "3")
        .replace("$4", "'scheduler'")
        .replace("$5", "'job_completed'");
    format!("{claim} \\gset\n{complete};\n")
}

/// pgbench: `iters` script runs over the clients; the time is pgbench's own
/// (transactions over its tps, connection set-up excluded).
fn pgbench_cycles(url: &str, name: &str, script: String, iters: u64) -> Duration {
    let dir = std::env::temp_dir().join(format!("dlft-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.sql"));
    std::fs::write(&file, script).unwrap();
    let per_client = iters.div_ceil(CLIENTS);
    let out = Command::new("pgbench")
        .env("PGOPTIONS", format!("-c search_path={SCHEMA}"))
        .args(["-n", "-M", "prepared", "-c", &CLIENTS.to_string(), "-j", "2", "-t", &per_client.to_string(), "-f"])
        .arg(&file)
        .arg(url)
        .output()
        .expect("pgbench runs (apt install postgresql-contrib or postgresql-client)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let tps: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tps line in pgbench output:\n{stdout}"));
    let failed = stdout.lines().find(|l| l.starts_with("number of failed transactions")).unwrap_or("");
    assert!(failed.is_empty() || failed.contains(": 0 "), "pgbench transactions failed: {failed}");
    // pgbench may run a few more than `iters` (a multiple of the clients): time `iters` at its rate.
    Duration::from_secs_f64(iters as f64 / tps)
}

fn claim_complete(c: &mut Criterion) {
    let url = pg_url();
    let rt = runtime();
    let opts =
        PoolOptions { max_connections: CLIENTS as u32, pg_schema: Some(SCHEMA.into()), ..PoolOptions::default() };
    let store = match rt.block_on(open_pg(&url, &opts)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "\n!!!!!!!! SKIPPED store_pg: no PostgreSQL at {url} ({e}).\n!!!!!!!! Set {PG_URL_VAR}=postgres://... \n"
            );
            return;
        }
    };
    rt.block_on(exec(
        &store,
        "CREATE TABLE IF NOT EXISTS dlft_raw_jobs (LIKE dlft_jobs INCLUDING ALL); \
         ALTER TABLE dlft_raw_jobs SET (autovacuum_enabled = true)",
    ));
    let mut g = c.benchmark_group("pg_claim_complete");
    g.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    for batch in [1u32, 50] {
        g.throughput(Throughput::Elements(u64::from(batch)));
        g.bench_function(BenchmarkId::new("raw_pgbench", format!("batch_{batch}")), |b| {
            b.iter_custom(|iters| {
                rt.block_on(refill(&store, 2 * iters * u64::from(batch) + 1_000));
                pgbench_cycles(&url, &format!("raw_{batch}"), raw_script(batch), iters)
            })
        });
        g.bench_function(BenchmarkId::new("store_sql_pgbench", format!("batch_{batch}")), |b| {
            b.iter_custom(|iters| {
                rt.block_on(refill(&store, 2 * iters * u64::from(batch) + 1_000));
                pgbench_cycles(&url, &format!("store_sql_{batch}"), store_sql_script(batch), iters)
            })
        });
        g.bench_function(BenchmarkId::new("store", format!("batch_{batch}")), |b| {
            b.iter_custom(|iters| {
                rt.block_on(refill(&store, 2 * iters * u64::from(batch) + 1_000));
                rt.block_on(store_cycles(&store, batch, iters))
            })
        });
    }
    g.finish();
    rt.block_on(exec(&store, &format!("DROP SCHEMA {SCHEMA} CASCADE")));
}

criterion_group!(benches, claim_complete);
criterion_main!(benches);
