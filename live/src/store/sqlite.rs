//! The SQLite store: the embedded default for one machine. Every write runs
//! in a `BEGIN IMMEDIATE` transaction, which takes the database's one write
//! lock up front, so claims are exclusive without row locks and two writers
//! never deadlock upgrading a read lock.

use dlft_core::store::ClaimRequest as Req;
use sqlx::Sqlite as Db;

const FENCE_SQL: &str =
    concat!("SELECT ", job_cols!(), " FROM dlft_jobs WHERE id = $1 AND state = 'running' AND lease_token = $2");
const BOOT_SWEEP_SQL: &str = concat!(
    "SELECT ",
    job_cols!(),
    " FROM dlft_jobs WHERE state = 'running' AND (lease_worker = $1 OR lease_expires_at <= $2) ORDER BY id"
);
const WAITING_SQL: &str = concat!("SELECT ", job_cols!(), " FROM dlft_jobs WHERE state = 'available' ORDER BY id");
const SCHEDULE_ENABLED_SQL: &str = "SELECT enabled FROM dlft_schedules WHERE name = $1";
const INTENT_LOCK_SQL: &str = "SELECT key, ad, evidence, verdict, phase, opened_at, updated_at, attempts \
     FROM dlft_intents WHERE key = $1";
const SPEND_LOCK_SQL: &str = "SELECT ad, bucket_start, spend_minor, currency, purchases, revenue_minor, \
     revenue_currency FROM dlft_spend WHERE ad = $1 AND bucket_start = $2";

const READY_SQL: &str = "SELECT id, state AS old_state, lease_worker AS old_worker, lease_incarnation AS old_inc \
     FROM dlft_jobs WHERE kind IN (SELECT value FROM json_each($1)) \
       AND ((state = 'available' AND run_at <= $2) OR (state = 'running' AND lease_expires_at <= $2)) \
     ORDER BY priority, run_at, id LIMIT $3";

const LEASE_SQL: &str = concat!(
    "UPDATE dlft_jobs SET state = 'running', attempt = attempt + 1, \
       resumes = resumes + CASE WHEN interrupted OR state = 'running' THEN 1 ELSE 0 END, \
       interrupted = FALSE, \
       lease_token = (SELECT value FROM dlft_counters WHERE name = 'claim_token'), \
       lease_worker = $2, lease_incarnation = $3, lease_expires_at = $4, lease_for = $5 \
     WHERE id = $1 RETURNING ",
    job_cols!()
);

async fn begin(pool: &sqlx::Pool<Db>) -> Result<Tx, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)
}

type Claimed = Vec<(Job, (&'static str, String))>;

async fn claim_rows(tx: &mut Tx, req: &Req, kinds: &[String], now: Timestamp) -> Result<Claimed, StoreError> {
    let ready = sqlx::query(READY_SQL)
        .bind(serde_json::to_string(kinds).expect("strings serialize"))
        .bind(ms(now))
        .bind(i64::from(req.limit))
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err)?;
    let mut out = Vec::with_capacity(ready.len());
    for r in &ready {
        let id: i64 = get(r, "id")?;
        sqlx::query("UPDATE dlft_counters SET value = value + 1 WHERE name = 'claim_token'")
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        let row = sqlx::query(LEASE_SQL)
            .bind(id)
            .bind(req.worker.as_str())
            .bind(req.incarnation.0 as i64)
            .bind(ms(now) + req.lease_for.0 as i64)
            .bind(req.lease_for.0 as i64)
            .fetch_one(&mut **tx)
            .await
            .map_err(db_err)?;
        out.push((job_from_row(&row)?, claim_cause(r, req)?));
    }
    Ok(out)
}

include!("common.rs");

/// The SQLite store.
pub type SqliteStore = SqlStore;
