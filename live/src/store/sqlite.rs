//! The SQLite store: the embedded default for one machine. Every write runs
//! in a `BEGIN IMMEDIATE` transaction, which takes the database's one write
//! lock up front, so claims are exclusive without row locks and two writers
//! never deadlock upgrading a read lock.

use dlft_core::store::ClaimRequest as Req;
use sqlx::Sqlite as Db;

const FENCE_SQL: &str =
    concat!("SELECT ", job_cols!(), " FROM dlft_jobs WHERE id = $1 AND state = 'running' AND lease_token = $2");
/// Locks the rows a read returns until the transaction ends.
const ROW_LOCK: &str = "";
const BOOT_SWEEP_SQL: &str = concat!(
    "SELECT ",
    job_cols!(),
    " FROM dlft_jobs WHERE state = 'running' AND (lease_worker = $1 OR lease_expires_at <= $2) ORDER BY id"
);
const WAITING_SQL: &str = concat!("SELECT ", job_cols!(), " FROM dlft_jobs WHERE state = 'available' ORDER BY id");
const SCHEDULE_ENABLED_SQL: &str = "SELECT enabled FROM dlft_schedules WHERE name = $1 AND brand = $2";
const INTENT_LOCK_SQL: &str = "SELECT key, brand, action, evidence, verdict, phase, opened_at, updated_at, attempts, reserve \
     FROM dlft_intents WHERE key = $1";

/// Lease tokens drawn so far: one per claim ever made.
const CLAIMS_ISSUED_SQL: &str = "SELECT value FROM dlft_counters WHERE name = 'claim_token'";

/// Ready rows, fair across the brands served (`$4`): each brand's first
/// `limit` in claim order (a correlated subquery per brand), ranked within
/// the brand and taken round-robin by rank: core's `fair_order`.
const READY_SQL: &str = "SELECT id, old_state, old_worker, old_inc FROM ( \
       SELECT j.id, j.priority, j.run_at, j.state AS old_state, j.lease_worker AS old_worker, \
         j.lease_incarnation AS old_inc, \
         ROW_NUMBER() OVER (PARTITION BY j.brand ORDER BY j.priority, j.run_at, j.id) AS rnk \
       FROM json_each($4) b JOIN dlft_jobs j ON j.id IN ( \
         SELECT id FROM dlft_jobs WHERE brand = b.value AND kind IN (SELECT value FROM json_each($1)) \
           AND ((state = 'available' AND run_at <= $2) OR (state = 'running' AND lease_expires_at <= $2)) \
         ORDER BY priority, run_at, id LIMIT $3) \
     ) ORDER BY rnk, priority, run_at, id LIMIT $3";

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

/// The batched claim, in one `BEGIN IMMEDIATE` transaction: the incarnation
/// check, the lease of each ready row, one event row per claim.
async fn claim_jobs(
    pool: &sqlx::Pool<Db>,
    req: &Req,
    kinds: &[String],
    now: Timestamp,
) -> Result<Vec<Job>, StoreError> {
    let mut tx = begin(pool).await?;
    check_incarnation(&mut *tx, req).await?;
    let ready = sqlx::query(READY_SQL)
        .bind(serde_json::to_string(kinds).expect("strings serialize"))
        .bind(ms(now))
        .bind(i64::from(req.limit))
        .bind(serde_json::to_string(&req.brands).expect("strings serialize"))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    let mut jobs = Vec::with_capacity(ready.len());
    let mut rows = Vec::with_capacity(ready.len());
    for r in &ready {
        let id: i64 = get(r, "id")?;
        sqlx::query("UPDATE dlft_counters SET value = value + 1 WHERE name = 'claim_token'")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let row = sqlx::query(LEASE_SQL)
            .bind(id)
            .bind(req.worker.as_str())
            .bind(req.incarnation.0 as i64)
            .bind(ms(now) + req.lease_for.0 as i64)
            .bind(req.lease_for.0 as i64)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let job = job_from_row(&row)?;
        let (before, cause) = claim_cause(r, req)?;
        rows.push((
            Some(job.brand.clone()),
            sched(EventKind::JobClaimed, job.id.to_string(), before, "running", cause),
        ));
        jobs.push(job);
    }
    log_many(&mut tx, now, rows).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(jobs)
}

async fn complete_jobs(
    pool: &sqlx::Pool<Db>,
    done: Vec<(Lease, Vec<CostRow>)>,
    now: Timestamp,
) -> Result<Vec<Lease>, StoreError> {
    complete_in_tx(pool, done, now).await
}

/// The claim's event row: the state before, and why (a lease that ran out
/// names its holder). PostgreSQL writes the same text in SQL (`pg.rs`).
fn claim_cause(r: &DbRow, req: &Req) -> Result<(&'static str, String), StoreError> {
    let old_state: String = get(r, "old_state")?;
    let before = if old_state == "running" { "running" } else { "available" };
    let old_worker: Option<String> = get(r, "old_worker")?;
    let cause = match old_worker {
        Some(w) => {
            let inc = Incarnation(get::<Option<i64>>(r, "old_inc")?.unwrap_or_default() as u64);
            format!("claim by {}: lease of {w} {inc:?} expired", req.worker)
        }
        None => format!("claim by {}", req.worker),
    };
    Ok((before, cause))
}

include!("common.rs");

/// The SQLite store.
pub type SqliteStore = SqlStore;
