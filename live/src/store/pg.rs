//! The PostgreSQL store: batched claims with `FOR NO KEY UPDATE SKIP LOCKED`
//! inside one CTE, row locks for fencing, sequences for tokens.

use dlft_core::store::ClaimRequest as Req;
use sqlx::Postgres as Db;

const FENCE_SQL: &str = concat!(
    "SELECT ",
    job_cols!(),
    " FROM dlft_jobs WHERE id = $1 AND state = 'running' AND lease_token = $2 FOR UPDATE"
);
const BOOT_SWEEP_SQL: &str = concat!(
    "SELECT ",
    job_cols!(),
    " FROM dlft_jobs WHERE state = 'running' AND (lease_worker = $1 OR lease_expires_at <= $2) \
     ORDER BY id FOR UPDATE SKIP LOCKED"
);
const WAITING_SQL: &str =
    concat!("SELECT ", job_cols!(), " FROM dlft_jobs WHERE state = 'available' ORDER BY id FOR UPDATE");
const SCHEDULE_ENABLED_SQL: &str = "SELECT enabled FROM dlft_schedules WHERE name = $1 FOR UPDATE";
const INTENT_LOCK_SQL: &str = "SELECT key, ad, evidence, verdict, phase, opened_at, updated_at, attempts \
     FROM dlft_intents WHERE key = $1 FOR UPDATE";
const SPEND_LOCK_SQL: &str = "SELECT ad, bucket_start, spend_minor, currency, purchases, revenue_minor, \
     revenue_currency FROM dlft_spend WHERE ad = $1 AND bucket_start = $2 FOR UPDATE";

/// One statement: lock up to `limit` ready rows no one else has locked, in
/// claim order, and lease them. Concurrent claimers skip each other's rows.
const CLAIM_SQL: &str = "WITH ready AS ( \
       SELECT id, state AS old_state, lease_worker AS old_worker, lease_incarnation AS old_inc \
       FROM dlft_jobs \
       WHERE kind = ANY($1) \
         AND ((state = 'available' AND run_at <= $2) OR (state = 'running' AND lease_expires_at <= $2)) \
       ORDER BY priority, run_at, id \
       LIMIT $3 \
       FOR NO KEY UPDATE SKIP LOCKED \
     ) \
     UPDATE dlft_jobs j SET state = 'running', attempt = j.attempt + 1, \
       resumes = j.resumes + CASE WHEN j.interrupted OR j.state = 'running' THEN 1 ELSE 0 END, \
       interrupted = FALSE, lease_token = nextval('dlft_claim_token'), lease_worker = $4, \
       lease_incarnation = $5, lease_expires_at = $2 + $6, lease_for = $6 \
     FROM ready WHERE j.id = ready.id \
     RETURNING j.id, j.kind, j.payload, j.priority, j.run_at, j.created_at, j.state, j.attempt, j.resumes, \
       j.interrupted, j.errors, j.lease_token, j.lease_worker, j.lease_incarnation, j.lease_expires_at, \
       j.lease_for, j.idempotency_key, j.schedule, j.checkpoint, ready.old_state, ready.old_worker, ready.old_inc";

async fn begin(pool: &sqlx::Pool<Db>) -> Result<Tx, StoreError> {
    pool.begin().await.map_err(db_err)
}

type Claimed = Vec<(Job, (&'static str, String))>;

async fn claim_rows(tx: &mut Tx, req: &Req, kinds: &[String], now: Timestamp) -> Result<Claimed, StoreError> {
    let rows = sqlx::query(CLAIM_SQL)
        .bind(kinds)
        .bind(ms(now))
        .bind(i64::from(req.limit))
        .bind(req.worker.as_str())
        .bind(req.incarnation.0 as i64)
        .bind(req.lease_for.0 as i64)
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
    rows.iter().map(|r| Ok((job_from_row(r)?, claim_cause(r, req)?))).collect()
}

include!("common.rs");

/// The PostgreSQL store.
pub type PgStore = SqlStore;
