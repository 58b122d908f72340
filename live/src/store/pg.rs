//! The PostgreSQL store: batched claims with `FOR NO KEY UPDATE SKIP LOCKED`
//! inside one CTE, row locks for fencing, sequences for tokens.

use dlft_core::store::ClaimRequest as Req;
use sqlx::Postgres as Db;

const FENCE_SQL: &str = concat!(
    "SELECT ",
    job_cols!(),
    " FROM dlft_jobs WHERE id = $1 AND state = 'running' AND lease_token = $2 FOR UPDATE"
);
/// Lease tokens drawn so far: one per claim ever made.
const CLAIMS_ISSUED_SQL: &str =
    "SELECT CAST(CASE WHEN is_called THEN last_value ELSE 0 END AS BIGINT) FROM dlft_claim_token";
/// Locks the rows a read returns until the transaction ends.
const ROW_LOCK: &str = " FOR UPDATE";
const BOOT_SWEEP_SQL: &str = concat!(
    "SELECT ",
    job_cols!(),
    " FROM dlft_jobs WHERE state = 'running' AND (lease_worker = $1 OR lease_expires_at <= $2) \
     ORDER BY id FOR UPDATE SKIP LOCKED"
);
const WAITING_SQL: &str =
    concat!("SELECT ", job_cols!(), " FROM dlft_jobs WHERE state = 'available' ORDER BY id FOR UPDATE");
const SCHEDULE_ENABLED_SQL: &str = "SELECT enabled FROM dlft_schedules WHERE name = $1 AND brand = $2 FOR UPDATE";
const INTENT_LOCK_SQL: &str = "SELECT key, brand, action, evidence, verdict, phase, opened_at, updated_at, attempts, reserve \
     FROM dlft_intents WHERE key = $1 FOR UPDATE";

/// One statement, one round trip: lock up to `limit` ready rows no one else
/// has locked, in claim order, lease them and write one event row per claim
/// (the same text as SQLite's `claim_cause`; conformance checks both). The
/// incarnation check is a condition of the same statement. Waiting rows are
/// found per brand served (`$9`), each brand's through the ready index on
/// `(kind, brand, priority, run_at, id)`, so a brand's backlog is never read
/// to reach another's; expired leases through their own partial index (an
/// `OR` of the two would scan the table). The candidates are then ranked
/// within their brand and taken round-robin by rank: core's `fair_order`.
/// Rows locked but not taken are free again when the statement ends.
macro_rules! claim_sql {
    ($kind:literal) => {
        concat!(
            "WITH avail AS ( \
               SELECT c.* FROM unnest($9::text[]) AS b(brand) CROSS JOIN LATERAL ( \
                 SELECT id, brand, priority, run_at, state AS old_state, lease_worker AS old_worker, \
                   lease_incarnation AS old_inc \
                 FROM dlft_jobs \
                 WHERE state = 'available' AND ", $kind, " AND brand = b.brand AND run_at <= $2 \
                   AND EXISTS (SELECT 1 FROM dlft_workers w WHERE w.worker = $4 AND w.incarnation = $5) \
                 ORDER BY priority, run_at, id LIMIT $3 FOR NO KEY UPDATE SKIP LOCKED \
               ) c \
             ), expired AS ( \
               SELECT id, brand, priority, run_at, state AS old_state, lease_worker AS old_worker, \
                 lease_incarnation AS old_inc \
               FROM dlft_jobs \
               WHERE state = 'running' AND lease_expires_at <= $2 AND ", $kind, " AND brand = ANY($9) \
                 AND EXISTS (SELECT 1 FROM dlft_workers w WHERE w.worker = $4 AND w.incarnation = $5) \
               ORDER BY priority, run_at, id LIMIT $3 FOR NO KEY UPDATE SKIP LOCKED \
             ), ranked AS ( \
               SELECT c.*, row_number() OVER (PARTITION BY brand ORDER BY priority, run_at, id) AS rnk \
               FROM (SELECT * FROM avail UNION ALL SELECT * FROM expired) c \
             ), ready AS ( \
               SELECT * FROM ranked ORDER BY rnk, priority, run_at, id LIMIT $3 \
             ), claimed AS ( \
               UPDATE dlft_jobs j SET state = 'running', attempt = j.attempt + 1, \
                 resumes = j.resumes + CASE WHEN j.interrupted OR j.state = 'running' THEN 1 ELSE 0 END, \
                 interrupted = FALSE, lease_token = nextval('dlft_claim_token'), lease_worker = $4, \
                 lease_incarnation = $5, lease_expires_at = $2 + $6, lease_for = $6 \
               FROM ready WHERE j.id = ready.id \
               RETURNING j.id, j.brand, j.kind, j.payload, j.priority, j.run_at, j.created_at, j.state, j.attempt, \
                 j.resumes, j.interrupted, j.errors, j.lease_token, j.lease_worker, j.lease_incarnation, \
                 j.lease_expires_at, j.lease_for, j.idempotency_key, j.schedule, j.checkpoint, ready.old_state, \
                 ready.old_worker, ready.old_inc, ready.rnk \
             ), logged AS ( \
               INSERT INTO dlft_events (at, brand, block, kind, entity, before, after, cause) \
               SELECT $2, brand, $7, $8, 'job#' || id, CASE WHEN old_state = 'running' THEN 'running' ELSE 'available' END, \
                 'running', 'claim by ' || $4 || COALESCE(': lease of ' || old_worker || ' inc#' || old_inc || ' expired', '') \
               FROM claimed ORDER BY rnk, priority, run_at, id \
             ) SELECT * FROM claimed"
        )
    };
}
/// A pool claims one kind: an equality, so the ready index is read in claim order.
#[doc(hidden)] // for benches/store_pg.rs, which runs it under pgbench
pub const CLAIM_ONE_KIND_SQL: &str = claim_sql!("kind = ($1::text[])[1]");
const CLAIM_KINDS_SQL: &str = claim_sql!("kind = ANY($1)");

/// Batched completion of leases without costs, in one statement: delete the
/// rows the leases still hold, copy them to the done table, one event row
/// each in the order given. Returns `(id, token)` of what it completed.
#[doc(hidden)] // for benches/store_pg.rs
pub const COMPLETE_SQL: &str = "WITH given AS ( \
       SELECT * FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS g(id, token, ord) \
     ), gone AS ( \
       DELETE FROM dlft_jobs j USING given \
       WHERE j.id = given.id AND j.lease_token = given.token AND j.state = 'running' \
       RETURNING j.*, given.ord \
     ), moved AS ( \
       INSERT INTO dlft_jobs_done (id, brand, kind, payload, priority, run_at, created_at, state, attempt, resumes, \
         interrupted, errors, idempotency_key, schedule, checkpoint, finished_at) \
       SELECT id, brand, kind, payload, priority, run_at, created_at, 'completed', attempt, resumes, interrupted, errors, \
         idempotency_key, schedule, checkpoint, $3 FROM gone \
     ), logged AS ( \
       INSERT INTO dlft_events (at, brand, block, kind, entity, before, after, cause) \
       SELECT $3, brand, $4, $5, 'job#' || id, 'running', 'completed', 'done' FROM gone ORDER BY ord \
     ) SELECT id, lease_token FROM gone";

async fn begin(pool: &sqlx::Pool<Db>) -> Result<Tx, StoreError> {
    pool.begin().await.map_err(db_err)
}

async fn claim_jobs(
    pool: &sqlx::Pool<Db>,
    req: &Req,
    kinds: &[String],
    now: Timestamp,
) -> Result<Vec<Job>, StoreError> {
    let sql = if kinds.len() == 1 { CLAIM_ONE_KIND_SQL } else { CLAIM_KINDS_SQL };
    let rows = sqlx::query(sql)
        .bind(kinds)
        .bind(ms(now))
        .bind(i64::from(req.limit))
        .bind(req.worker.as_str())
        .bind(req.incarnation.0 as i64)
        .bind(req.lease_for.0 as i64)
        .bind(snake(&Block::Scheduler))
        .bind(snake(&EventKind::JobClaimed))
        .bind(req.brands.iter().map(|b| b.as_str().to_string()).collect::<Vec<_>>())
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    if rows.is_empty() {
        // Nothing ready, or a replaced incarnation: tell them apart.
        check_incarnation(pool, req).await?;
    }
    let mut jobs =
        rows.iter().map(|r| Ok((get::<i64>(r, "rnk")?, job_from_row(r)?))).collect::<Result<Vec<_>, StoreError>>()?;
    jobs.sort_by_key(|(rank, j)| (*rank, j.priority, j.run_at, j.id));
    Ok(jobs.into_iter().map(|(_, j)| j).collect())
}

async fn complete_jobs(
    pool: &sqlx::Pool<Db>,
    done: Vec<(Lease, Vec<CostRow>)>,
    now: Timestamp,
) -> Result<Vec<Lease>, StoreError> {
    if done.iter().any(|(_, costs)| !costs.is_empty()) {
        return complete_in_tx(pool, done, now).await;
    }
    let ids: Vec<i64> = done.iter().map(|(l, _)| l.job.0 as i64).collect();
    let tokens: Vec<i64> = done.iter().map(|(l, _)| l.token.0 as i64).collect();
    let rows = sqlx::query(COMPLETE_SQL)
        .bind(ids)
        .bind(tokens)
        .bind(ms(now))
        .bind(snake(&Block::Scheduler))
        .bind(snake(&EventKind::JobCompleted))
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    let mut completed = std::collections::BTreeSet::new();
    for r in &rows {
        completed.insert((get::<i64>(r, "id")?, get::<i64>(r, "lease_token")?));
    }
    // A lease named twice completes once; the second is fenced, as with `finish`.
    Ok(done.into_iter().map(|(l, _)| l).filter(|l| !completed.remove(&(l.job.0 as i64, l.token.0 as i64))).collect())
}

include!("common.rs");

/// The PostgreSQL store.
pub type PgStore = SqlStore;
