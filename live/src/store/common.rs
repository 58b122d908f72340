// The SQL store, written once for both engines.
//
// This file is `include!`d by `pg.rs` and `sqlite.rs`, each of which first
// defines, for its engine: `Db` (the sqlx database), `begin` (a write
// transaction), `claim_jobs` and `complete_jobs` (the batched claim and
// completion, the hot path, one statement each on PostgreSQL), `ROW_LOCK` (a row-lock
// suffix, or nothing where the transaction already holds the database) and
// the locking reads (`FENCE_SQL`, `BOOT_SWEEP_SQL`, ...). Everything else
// (the rules) is shared, and most of the rules themselves live in core
// (`dlft_core::store::plan`), so MemStore and both SQL stores cannot disagree.

use std::collections::BTreeMap;
use std::future::Future;

use dlft_core::sense::ads::InsightRow;
use dlft_core::ids::{AdId, BrandId, ClaimToken, IdempotencyKey, Incarnation, JobId, WorkerId};
use dlft_core::money::{Currency, Money};
use dlft_core::schedule::rules::GHOST_AMNESTY;
use dlft_core::store::plan::{Ledger, Transition, intent_keys, ledger_accounts, ledger_needs, plan_intents, spend_transition};
use dlft_core::envelope::budget::{Account, AccountKey, Budgets, Purpose, Transfer, TransferState, Window};
use dlft_core::store::{BatchResult, Boot, Checkpoint, Claim, ClaimRequest, Enqueued, IntentFilter, Job, JobState, Lease, LeaseRow, NewJob, Outcome, PageActivity, Presence, ScheduleRow, SlotOutcome, Store, StoreError, WorkerRow, WriteBatch};
use dlft_core::act::intent::{Intent, IntentPhase};
use dlft_core::telemetry::{Block, CostRow, Event, EventKind};
use dlft_core::time::{Millis, Timestamp};
use sqlx::{Row, Transaction};

type DbRow = <Db as sqlx::Database>::Row;

/// A job by id, live or finished (the same SQL on both engines).
const JOB_BY_ID_SQL: &str = concat!(
    "SELECT ",
    job_cols!(),
    " FROM dlft_jobs WHERE id = $1 UNION ALL SELECT ",
    job_cols!(),
    " FROM dlft_jobs_done WHERE id = $1"
);
type Tx = Transaction<'static, Db>;

/// A store on one database. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: sqlx::Pool<Db>,
}

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("stored row does not decode: {what}"))
}

fn ms(t: Timestamp) -> i64 {
    t.0 as i64
}

fn snake<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => panic!("a unit enum serializes to a string, got {other:?}"),
    }
}

fn unsnake<T: serde::de::DeserializeOwned>(s: String) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.clone())).map_err(|e| corrupt(format!("{s:?}: {e}")))
}

fn get<'r, T>(row: &'r DbRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Db> + sqlx::Type<Db>,
{
    row.try_get(col).map_err(|e| corrupt(format!("column {col}: {e}")))
}

fn job_from_row(r: &DbRow) -> Result<Job, StoreError> {
    let state: String = get(r, "state")?;
    let token: Option<i64> = get(r, "lease_token")?;
    let lease = match token {
        Some(token) => Some(LeaseRow {
            token: ClaimToken(token as u64),
            worker: WorkerId::new(get::<Option<String>>(r, "lease_worker")?.unwrap_or_default()),
            incarnation: Incarnation(get::<Option<i64>>(r, "lease_incarnation")?.unwrap_or_default() as u64),
            expires_at: Timestamp(get::<Option<i64>>(r, "lease_expires_at")?.unwrap_or_default() as u64),
            lease_for: Millis(get::<Option<i64>>(r, "lease_for")?.unwrap_or_default() as u64),
        }),
        None => None,
    };
    let payload: String = get(r, "payload")?;
    let errors: String = get(r, "errors")?;
    let checkpoint: Option<String> = get(r, "checkpoint")?;
    Ok(Job {
        id: JobId(get::<i64>(r, "id")? as u64),
        brand: BrandId::new(get::<String>(r, "brand")?),
        kind: get(r, "kind")?,
        payload: serde_json::from_str(&payload).map_err(corrupt)?,
        priority: get::<i64>(r, "priority")? as i16,
        run_at: Timestamp(get::<i64>(r, "run_at")? as u64),
        created_at: Timestamp(get::<i64>(r, "created_at")? as u64),
        state: unsnake(state)?,
        attempt: get::<i64>(r, "attempt")? as u32,
        resumes: get::<i64>(r, "resumes")? as u32,
        interrupted: get(r, "interrupted")?,
        errors: serde_json::from_str(&errors).map_err(corrupt)?,
        lease,
        idempotency_key: get::<Option<String>>(r, "idempotency_key")?.map(IdempotencyKey::new),
        schedule: get(r, "schedule")?,
        checkpoint: checkpoint.map(|c| serde_json::from_str::<Checkpoint>(&c)).transpose().map_err(corrupt)?,
    })
}

fn intent_from_row(r: &DbRow) -> Result<Intent, StoreError> {
    let action: String = get(r, "action")?;
    let evidence: String = get(r, "evidence")?;
    let verdict: String = get(r, "verdict")?;
    Ok(Intent {
        key: IdempotencyKey::new(get::<String>(r, "key")?),
        brand: BrandId::new(get::<String>(r, "brand")?),
        action: serde_json::from_str(&action).map_err(corrupt)?,
        evidence: serde_json::from_str(&evidence).map_err(corrupt)?,
        verdict: serde_json::from_str(&verdict).map_err(corrupt)?,
        phase: unsnake::<IntentPhase>(get(r, "phase")?)?,
        opened_at: Timestamp(get::<i64>(r, "opened_at")? as u64),
        updated_at: Timestamp(get::<i64>(r, "updated_at")? as u64),
        attempts: get::<i64>(r, "attempts")? as u32,
        reserve: get::<Option<String>>(r, "reserve")?
            .map(|j| serde_json::from_str(&j).map_err(corrupt))
            .transpose()?,
    })
}

fn money(minor: i64, currency: &str) -> Result<Money, StoreError> {
    Ok(Money::new(minor, Currency::parse(currency).map_err(corrupt)?))
}

fn spend_from_row(r: &DbRow) -> Result<InsightRow, StoreError> {
    Ok(InsightRow {
        ad: AdId::new(get::<String>(r, "ad")?),
        bucket_start: Timestamp(get::<i64>(r, "bucket_start")? as u64),
        spend: money(get(r, "spend_minor")?, &get::<String>(r, "currency")?)?,
        purchases: get::<i64>(r, "purchases")? as u32,
        revenue: money(get(r, "revenue_minor")?, &get::<String>(r, "revenue_currency")?)?,
    })
}

fn event_from_row(r: &DbRow) -> Result<Event, StoreError> {
    Ok(Event {
        seq: get::<i64>(r, "seq")? as u64,
        at: Timestamp(get::<i64>(r, "at")? as u64),
        brand: get::<Option<String>>(r, "brand")?.map(BrandId::new),
        block: unsnake::<Block>(get(r, "block")?)?,
        kind: unsnake::<EventKind>(get(r, "kind")?)?,
        entity: get(r, "entity")?,
        before: get(r, "before")?,
        after: get(r, "after")?,
        cause: get(r, "cause")?,
        origin: get(r, "origin")?,
    })
}

fn schedule_from_row(r: &DbRow) -> Result<ScheduleRow, StoreError> {
    Ok(ScheduleRow {
        brand: BrandId::new(get::<String>(r, "brand")?),
        name: get(r, "name")?,
        enabled: get(r, "enabled")?,
        reason: get(r, "reason")?,
        changed_at: Timestamp(get::<i64>(r, "changed_at")? as u64),
        last_slot: get::<Option<i64>>(r, "last_slot")?.map(|s| Timestamp(s as u64)),
    })
}

const ACCOUNT_COLS: &str =
    "brand, purpose, currency, time_window, counterparty, period, limit_minor, pending_minor, posted_minor";

/// An account's counterparty column: `''` for a brand's cap.
fn counterparty_col(key: &AccountKey) -> String {
    key.counterparty.clone().unwrap_or_default()
}
const TRANSFER_COLS: &str =
    "id, brand, purpose, currency, amount_minor, state, posted_minor, opened_at, resolved_at, accounts, reversed_at";

fn account_from_row(r: &DbRow) -> Result<Account, StoreError> {
    Ok(Account {
        key: AccountKey {
            brand: BrandId::new(get::<String>(r, "brand")?),
            purpose: Purpose::parse(&get::<String>(r, "purpose")?).map_err(corrupt)?,
            currency: Currency::parse(&get::<String>(r, "currency")?).map_err(corrupt)?,
            window: Window::parse(&get::<String>(r, "time_window")?).map_err(corrupt)?,
            counterparty: Some(get::<String>(r, "counterparty")?).filter(|c| !c.is_empty()),
            period: get(r, "period")?,
        },
        limit: get(r, "limit_minor")?,
        pending: get(r, "pending_minor")?,
        posted: get(r, "posted_minor")?,
    })
}

fn transfer_from_row(r: &DbRow) -> Result<Transfer, StoreError> {
    let accounts: String = get(r, "accounts")?;
    Ok(Transfer {
        id: IdempotencyKey::new(get::<String>(r, "id")?),
        brand: BrandId::new(get::<String>(r, "brand")?),
        purpose: Purpose::parse(&get::<String>(r, "purpose")?).map_err(corrupt)?,
        amount: money(get(r, "amount_minor")?, &get::<String>(r, "currency")?)?,
        state: unsnake::<TransferState>(get(r, "state")?)?,
        posted: get(r, "posted_minor")?,
        opened_at: Timestamp(get::<i64>(r, "opened_at")? as u64),
        resolved_at: get::<Option<i64>>(r, "resolved_at")?.map(|t| Timestamp(t as u64)),
        accounts: serde_json::from_str(&accounts).map_err(corrupt)?,
        reversed_at: get::<Option<i64>>(r, "reversed_at")?.map(|t| Timestamp(t as u64)),
    })
}

/// Loads, under row locks and in one order (transfers, then accounts, each
/// sorted), what a batch's intent ops need of the budget ledger. Accounts
/// the ops may reserve against are created empty first, so that racing
/// writers lock one row instead of each planning from a row the other has
/// not committed yet.
async fn load_ledger(
    tx: &mut Tx,
    brand: &BrandId,
    current: &BTreeMap<IdempotencyKey, Intent>,
    ops: &[dlft_core::act::intent::IntentOp],
    charges: &[dlft_core::store::Charge],
    now: Timestamp,
) -> Result<Ledger, StoreError> {
    let needs = ledger_needs(current, ops, charges);
    let mut ledger = Ledger::default();
    if needs.is_empty() {
        return Ok(ledger);
    }
    if needs.budgets {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM dlft_budgets WHERE brand = $1")
            .bind(brand.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
        if let Some(b) = body {
            ledger.budgets = serde_json::from_str(&b).map_err(corrupt)?;
        }
    }
    for key in &needs.transfers {
        let sql = format!("SELECT {TRANSFER_COLS} FROM dlft_budget_transfers WHERE id = $1{ROW_LOCK}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key.as_str()).fetch_optional(&mut **tx).await.map_err(db_err)?;
        if let Some(r) = row {
            ledger.transfers.insert(key.clone(), transfer_from_row(&r)?);
        }
    }
    for (key, limit) in ledger_accounts(current, brand, ops, charges, &ledger, now) {
        sqlx::query(
            "INSERT INTO dlft_budget_accounts (brand, purpose, currency, time_window, period, limit_minor, \
             pending_minor, posted_minor, counterparty) VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7) \
             ON CONFLICT DO NOTHING",
        )
        .bind(key.brand.as_str())
        .bind(key.purpose.as_str())
        .bind(key.currency.as_str())
        .bind(key.window.as_str())
        .bind(key.period.clone())
        .bind(limit)
        .bind(counterparty_col(&key))
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        let sql = format!(
            "SELECT {ACCOUNT_COLS} FROM dlft_budget_accounts WHERE brand = $1 AND purpose = $2 AND currency = $3 \
             AND time_window = $4 AND period = $5 AND counterparty = $6{ROW_LOCK}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key.brand.as_str())
            .bind(key.purpose.as_str())
            .bind(key.currency.as_str())
            .bind(key.window.as_str())
            .bind(key.period.clone())
            .bind(counterparty_col(&key))
            .fetch_one(&mut **tx)
            .await
            .map_err(db_err)?;
        ledger.accounts.insert(key, account_from_row(&row)?);
    }
    Ok(ledger)
}

/// Writes what a plan did to the ledger: new transfers inserted (a second
/// writer of one id fails and rolls back), resolved ones and accounts updated.
async fn write_ledger(
    tx: &mut Tx,
    loaded: &std::collections::BTreeSet<IdempotencyKey>,
    transfers: BTreeMap<IdempotencyKey, Transfer>,
    accounts: BTreeMap<AccountKey, Account>,
) -> Result<(), StoreError> {
    for (id, t) in transfers {
        if loaded.contains(&id) {
            sqlx::query(
                "UPDATE dlft_budget_transfers SET state = $2, posted_minor = $3, resolved_at = $4, reversed_at = $5 \
                 WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(t.state.as_str())
            .bind(t.posted)
            .bind(t.resolved_at.map(ms))
            .bind(t.reversed_at.map(ms))
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
        } else {
            sqlx::query(
                "INSERT INTO dlft_budget_transfers (id, brand, purpose, currency, amount_minor, state, posted_minor, \
                 opened_at, resolved_at, accounts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(id.as_str())
            .bind(t.brand.as_str())
            .bind(t.purpose.as_str())
            .bind(t.amount.currency.as_str())
            .bind(t.amount.minor)
            .bind(t.state.as_str())
            .bind(t.posted)
            .bind(ms(t.opened_at))
            .bind(t.resolved_at.map(ms))
            .bind(serde_json::to_string(&t.accounts).expect("serializes"))
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        }
    }
    for (key, a) in accounts {
        sqlx::query(
            "UPDATE dlft_budget_accounts SET limit_minor = $6, pending_minor = $7, posted_minor = $8 \
             WHERE brand = $1 AND purpose = $2 AND currency = $3 AND time_window = $4 AND period = $5 \
             AND counterparty = $9",
        )
        .bind(key.brand.as_str())
        .bind(key.purpose.as_str())
        .bind(key.currency.as_str())
        .bind(key.window.as_str())
        .bind(key.period.clone())
        .bind(a.limit)
        .bind(a.pending)
        .bind(a.posted)
        .bind(counterparty_col(&key))
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// Writes one event row of `brand` (`None`: a worker's own row).
async fn log(tx: &mut Tx, at: Timestamp, brand: Option<&BrandId>, t: Transition) -> Result<(), StoreError> {
    log_many(tx, at, vec![(brand.cloned(), t)]).await
}

/// Rows per multi-row statement: far inside both engines' bind limits.
const ROWS_PER_STATEMENT: usize = 500;

/// Writes event rows, each with its brand, in the order given, a few
/// hundred per statement.
async fn log_many(tx: &mut Tx, at: Timestamp, ts: Vec<(Option<BrandId>, Transition)>) -> Result<(), StoreError> {
    let mut ts = ts.into_iter().peekable();
    while ts.peek().is_some() {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO dlft_events (at, brand, block, kind, entity, before, after, cause, origin) ",
        );
        q.push_values(ts.by_ref().take(ROWS_PER_STATEMENT), |mut b, (brand, t)| {
            b.push_bind(ms(at))
                .push_bind(brand.map(|b| b.0))
                .push_bind(snake(&t.block))
                .push_bind(snake(&t.kind))
                .push_bind(t.entity)
                .push_bind(t.before)
                .push_bind(t.after)
                .push_bind(t.cause)
                .push_bind(super::origin());
        });
        q.build().execute(&mut **tx).await.map_err(db_err)?;
    }
    Ok(())
}

fn sched(kind: EventKind, entity: String, before: &str, after: &str, cause: String) -> Transition {
    Transition { block: Block::Scheduler, kind, entity, before: before.into(), after: after.into(), cause }
}

/// The insight rows of one write, in a few statements however many there
/// are: the rows they may change are read (and locked, on PostgreSQL) at
/// once, each row that changes its bucket is logged (one `ledger_spend`
/// row, in the order given) and the changed buckets are upserted together.
/// Row by row this was three round trips per row, and a tick pages every
/// bucket of its lookback (1,800 rows for 200 ads over 8 hours).
async fn write_spend(tx: &mut Tx, brand: &BrandId, rows: Vec<InsightRow>, now: Timestamp) -> Result<(), StoreError> {
    let (Some(lo), Some(hi)) =
        (rows.iter().map(|r| r.bucket_start).min(), rows.iter().map(|r| r.bucket_start).max())
    else {
        return Ok(());
    };
    let ads: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.ad.as_str()).collect();
    let mut known: BTreeMap<(AdId, Timestamp), InsightRow> = BTreeMap::new();
    let ads: Vec<&str> = ads.into_iter().collect();
    for chunk in ads.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "SELECT ad, bucket_start, spend_minor, currency, purchases, revenue_minor, revenue_currency \
             FROM dlft_spend WHERE brand = ",
        );
        q.push_bind(brand.as_str()).push(" AND bucket_start >= ").push_bind(ms(lo));
        q.push(" AND bucket_start <= ").push_bind(ms(hi)).push(" AND ad IN (");
        let mut list = q.separated(", ");
        for ad in chunk {
            list.push_bind(*ad);
        }
        // One lock order for every writer of these rows.
        q.push(") ORDER BY ad, bucket_start").push(ROW_LOCK);
        for r in q.build().fetch_all(&mut **tx).await.map_err(db_err)? {
            let row = spend_from_row(&r)?;
            known.insert((row.ad.clone(), row.bucket_start), row);
        }
    }
    let mut events = Vec::new();
    let mut changed: BTreeMap<(AdId, Timestamp), InsightRow> = BTreeMap::new();
    for row in rows {
        let key = (row.ad.clone(), row.bucket_start);
        let Some(t) = spend_transition(known.get(&key), &row) else { continue };
        events.push((Some(brand.clone()), t));
        known.insert(key.clone(), row.clone());
        changed.insert(key, row);
    }
    log_many(tx, now, events).await?;
    let changed: Vec<InsightRow> = changed.into_values().collect();
    for chunk in changed.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO dlft_spend (ad, bucket_start, spend_minor, currency, purchases, revenue_minor, \
             revenue_currency, brand) ",
        );
        q.push_values(chunk, |mut b, row| {
            b.push_bind(row.ad.as_str().to_string())
                .push_bind(ms(row.bucket_start))
                .push_bind(row.spend.minor)
                .push_bind(row.spend.currency.as_str().to_string())
                .push_bind(i64::from(row.purchases))
                .push_bind(row.revenue.minor)
                .push_bind(row.revenue.currency.as_str().to_string())
                .push_bind(brand.as_str().to_string());
        });
        q.push(
            " ON CONFLICT (brand, ad, bucket_start) DO UPDATE SET spend_minor = excluded.spend_minor, \
             currency = excluded.currency, purchases = excluded.purchases, revenue_minor = excluded.revenue_minor, \
             revenue_currency = excluded.revenue_currency",
        );
        q.build().execute(&mut **tx).await.map_err(db_err)?;
    }
    Ok(())
}

/// Inserts a job (or finds the live one with its idempotency key) inside `tx`.
async fn enqueue_in(tx: &mut Tx, job: NewJob, schedule: Option<&str>, now: Timestamp) -> Result<Enqueued, StoreError> {
    let payload = job.payload.to_string();
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO dlft_jobs (kind, payload, priority, run_at, created_at, state, idempotency_key, schedule, brand) \
         VALUES ($1, $2, $3, $4, $5, 'available', $6, $7, $8) \
         ON CONFLICT (kind, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
    )
    .bind(&job.kind)
    .bind(&payload)
    .bind(i64::from(job.priority))
    .bind(ms(job.run_at))
    .bind(ms(now))
    .bind(job.idempotency_key.as_ref().map(|k| k.as_str().to_string()))
    .bind(schedule)
    .bind(job.brand.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    match inserted {
        Some(id) => {
            let id = JobId(id as u64);
            let t =
                sched(EventKind::JobEnqueued, id.to_string(), "none", "available", format!("{} {payload}", job.kind));
            log(tx, now, Some(&job.brand), t).await?;
            Ok(Enqueued::Created(id))
        }
        None => {
            let existing: i64 = sqlx::query_scalar("SELECT id FROM dlft_jobs WHERE kind = $1 AND idempotency_key = $2")
                .bind(&job.kind)
                .bind(job.idempotency_key.as_ref().map(|k| k.as_str().to_string()))
                .fetch_one(&mut **tx)
                .await
                .map_err(db_err)?;
            Ok(Enqueued::Duplicate(JobId(existing as u64)))
        }
    }
}

/// Refuses a claim from an incarnation that a newer boot replaced.
async fn check_incarnation<'e, E>(conn: E, req: &ClaimRequest) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    let current: Option<i64> = sqlx::query_scalar("SELECT incarnation FROM dlft_workers WHERE worker = $1")
        .bind(req.worker.as_str())
        .fetch_optional(conn)
        .await
        .map_err(db_err)?;
    if current != Some(req.incarnation.0 as i64) {
        return Err(StoreError::StaleIncarnation { worker: req.worker.clone(), incarnation: req.incarnation });
    }
    Ok(())
}

/// The job `lease` names, locked, if the lease still holds it.
async fn fenced(tx: &mut Tx, lease: &Lease) -> Result<Job, StoreError> {
    let row = sqlx::query(FENCE_SQL)
        .bind(lease.job.0 as i64)
        .bind(lease.token.0 as i64)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
    match row {
        Some(r) => job_from_row(&r),
        None => Err(StoreError::Fenced { job: lease.job, token: lease.token }),
    }
}

async fn set_schedule_in(
    tx: &mut Tx,
    brand: &BrandId,
    name: &str,
    enabled: bool,
    reason: &str,
    now: Timestamp,
    kind: EventKind,
) -> Result<(), StoreError> {
    let before: Option<bool> =
        sqlx::query_scalar(SCHEDULE_ENABLED_SQL).bind(name).bind(brand.as_str()).fetch_optional(&mut **tx).await.map_err(db_err)?;
    sqlx::query(
        "INSERT INTO dlft_schedules (name, enabled, reason, changed_at, brand) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (brand, name) DO UPDATE SET enabled = excluded.enabled, reason = excluded.reason, \
         changed_at = excluded.changed_at",
    )
    .bind(name)
    .bind(enabled)
    .bind(reason)
    .bind(ms(now))
    .bind(brand.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    let word = |on: bool| if on { "enabled" } else { "disabled" };
    let t = sched(kind, name.to_string(), word(before.unwrap_or(true)), word(enabled), reason.to_string());
    log(tx, now, Some(brand), t).await
}

/// Moves finished jobs out of the hot table.
async fn move_to_done(tx: &mut Tx, jobs: &[Job], now: Timestamp) -> Result<(), StoreError> {
    for chunk in jobs.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Db>::new("DELETE FROM dlft_jobs WHERE id IN (");
        let mut ids = q.separated(", ");
        for job in chunk {
            ids.push_bind(job.id.0 as i64);
        }
        q.push(")");
        q.build().execute(&mut **tx).await.map_err(db_err)?;
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO dlft_jobs_done (id, kind, payload, priority, run_at, created_at, state, attempt, resumes, \
             interrupted, errors, idempotency_key, schedule, checkpoint, finished_at, brand) ",
        );
        q.push_values(chunk, |mut b, job| {
            b.push_bind(job.id.0 as i64)
                .push_bind(job.kind.clone())
                .push_bind(job.payload.to_string())
                .push_bind(i64::from(job.priority))
                .push_bind(ms(job.run_at))
                .push_bind(ms(job.created_at))
                .push_bind(job.state.as_str())
                .push_bind(i64::from(job.attempt))
                .push_bind(i64::from(job.resumes))
                .push_bind(job.interrupted)
                .push_bind(serde_json::to_string(&job.errors).expect("strings serialize"))
                .push_bind(job.idempotency_key.as_ref().map(|k| k.as_str().to_string()))
                .push_bind(job.schedule.clone())
                .push_bind(job.checkpoint.as_ref().map(|c| serde_json::to_string(c).expect("checkpoints serialize")))
                .push_bind(ms(now))
                .push_bind(job.brand.as_str().to_string());
        });
        q.build().execute(&mut **tx).await.map_err(db_err)?;
    }
    Ok(())
}

/// Books cost rows as `brand`'s (the calling job's).
async fn insert_costs(tx: &mut Tx, brand: &BrandId, costs: Vec<CostRow>) -> Result<(), StoreError> {
    let mut costs = costs.into_iter().peekable();
    while costs.peek().is_some() {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO dlft_costs (call_id, at, vendor, op, ok, minor, currency, brand) ",
        );
        q.push_values(costs.by_ref().take(ROWS_PER_STATEMENT), |mut b, c| {
            b.push_bind(c.call_id)
                .push_bind(ms(c.at))
                .push_bind(c.vendor)
                .push_bind(c.op)
                .push_bind(c.ok)
                .push_bind(c.cost.minor)
                .push_bind(c.cost.currency.as_str().to_string())
                .push_bind(brand.as_str().to_string());
        });
        q.build().execute(&mut **tx).await.map_err(db_err)?;
    }
    Ok(())
}

/// Batched completion in one transaction, for any engine: lock the named
/// rows, complete those the leases still hold, return the rest.
async fn complete_in_tx(
    pool: &sqlx::Pool<Db>,
    done: Vec<(Lease, Vec<CostRow>)>,
    now: Timestamp,
) -> Result<Vec<Lease>, StoreError> {
    let mut tx = begin(pool).await?;
    // Lock every row the batch names; a lease holds its job only if the token matches.
    let mut held: BTreeMap<JobId, Job> = BTreeMap::new();
    for chunk in done.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Db>::new(concat!(
            "SELECT ",
            job_cols!(),
            " FROM dlft_jobs WHERE state = 'running' AND id IN ("
        ));
        let mut ids = q.separated(", ");
        for (lease, _) in chunk {
            ids.push_bind(lease.job.0 as i64);
        }
        q.push(")").push(ROW_LOCK);
        for r in q.build().fetch_all(&mut *tx).await.map_err(db_err)? {
            let job = job_from_row(&r)?;
            held.insert(job.id, job);
        }
    }
    let (mut completed, mut costs, mut fenced) = (Vec::new(), BTreeMap::<BrandId, Vec<CostRow>>::new(), Vec::new());
    for (lease, c) in done {
        let holds = held.get(&lease.job).is_some_and(|j| j.lease.as_ref().is_some_and(|l| l.token == lease.token));
        // Removed once completed: the same lease named twice is fenced the second time.
        match if holds { held.remove(&lease.job) } else { None } {
            Some(mut job) => {
                job.lease = None;
                job.state = JobState::Completed;
                costs.entry(job.brand.clone()).or_default().extend(c);
                completed.push(job);
            }
            None => fenced.push(lease),
        }
    }
    for (brand, costs) in costs {
        insert_costs(&mut tx, &brand, costs).await?;
    }
    move_to_done(&mut tx, &completed, now).await?;
    let rows = completed
        .iter()
        .map(|j| {
            let t = sched(EventKind::JobCompleted, j.id.to_string(), "running", "completed", "done".to_string());
            (Some(j.brand.clone()), t)
        })
        .collect();
    log_many(&mut tx, now, rows).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(fenced)
}

impl SqlStore {
    pub fn from_pool(pool: sqlx::Pool<Db>) -> SqlStore {
        SqlStore { pool }
    }

    pub fn pool(&self) -> &sqlx::Pool<Db> {
        &self.pool
    }

    async fn do_boot(&self, worker: &WorkerId, now: Timestamp) -> Result<Boot, StoreError> {
        let mut tx = begin(&self.pool).await?;
        let inc: i64 = sqlx::query_scalar(
            "INSERT INTO dlft_workers (worker, incarnation) VALUES ($1, 1) \
             ON CONFLICT (worker) DO UPDATE SET incarnation = dlft_workers.incarnation + 1, \
             host = '', pid = 0, beat_at = NULL RETURNING incarnation",
        )
        .bind(worker.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let incarnation = Incarnation(inc as u64);
        let t = sched(EventKind::WorkerBooted, worker.to_string(), "", &format!("{incarnation:?}"), "boot".into());
        log(&mut tx, now, None, t).await?;
        // Whatever the worker's earlier incarnations hold is orphaned (a worker
        // id runs in one process at a time): release it now, which is what
        // keeps MTTR near the restart delay. Leases of any worker that ran out
        // four hours ago are ghosts: release them too, and say so.
        let rows = sqlx::query(BOOT_SWEEP_SQL)
            .bind(worker.as_str())
            .bind(ms(now) - GHOST_AMNESTY.0 as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        let mut held = rows.iter().map(job_from_row).collect::<Result<Vec<_>, _>>()?;
        // Orphans first, then ghosts, each by id (as MemStore does).
        held.sort_by_key(|j| (j.lease.as_ref().is_none_or(|l| &l.worker != worker), j.id));
        let mut released = Vec::with_capacity(held.len());
        for job in held {
            let lease = job.lease.as_ref().expect("running jobs hold a lease");
            let why = if &lease.worker == worker { "boot sweep" } else { "ghost amnesty" };
            sqlx::query(
                "UPDATE dlft_jobs SET state = 'available', interrupted = TRUE, lease_token = NULL, \
                 lease_worker = NULL, lease_incarnation = NULL, lease_expires_at = NULL, lease_for = NULL \
                 WHERE id = $1",
            )
            .bind(job.id.0 as i64)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let cause = format!("{why}: held by {} {:?} until {}", lease.worker, lease.incarnation, lease.expires_at);
            let t = sched(EventKind::JobReleased, job.id.to_string(), "running", "available", cause);
            log(&mut tx, now, Some(&job.brand), t).await?;
            released.push(job.id);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Boot { incarnation, released })
    }

    async fn do_enqueue(&self, job: NewJob, now: Timestamp) -> Result<Enqueued, StoreError> {
        let mut tx = begin(&self.pool).await?;
        let out = enqueue_in(&mut tx, job, None, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    async fn do_fire_slot(
        &self,
        schedule: &str,
        slot: Timestamp,
        job: NewJob,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        let mut tx = begin(&self.pool).await?;
        let brand = job.brand.clone();
        sqlx::query(
            "INSERT INTO dlft_schedules (name, enabled, reason, changed_at, brand) VALUES ($1, TRUE, 'default', $2, $3) \
             ON CONFLICT (brand, name) DO NOTHING",
        )
        .bind(schedule)
        .bind(ms(now))
        .bind(brand.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let enabled: bool = sqlx::query_scalar(SCHEDULE_ENABLED_SQL)
            .bind(schedule)
            .bind(brand.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if !enabled {
            return Ok(SlotOutcome::Disabled);
        }
        let fresh = sqlx::query(
            "INSERT INTO dlft_slots (schedule, slot, job, brand) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (brand, schedule, slot) DO NOTHING",
        )
        .bind(schedule)
        .bind(ms(slot))
        .bind(brand.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if fresh == 0 {
            return Ok(SlotOutcome::AlreadyFired);
        }
        sqlx::query(
            "UPDATE dlft_schedules SET last_slot = $2 WHERE name = $1 AND brand = $3 \
             AND (last_slot IS NULL OR last_slot < $2)",
        )
        .bind(schedule)
        .bind(ms(slot))
        .bind(brand.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let entity = format!("{schedule}@{}", slot.0);
        // The schedule's job still waiting for its first run serves this slot too.
        let waiting: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM dlft_jobs WHERE brand = $1 AND schedule = $2 AND state = 'available' AND attempt = 0 \
             ORDER BY id LIMIT 1",
        )
        .bind(brand.as_str())
        .bind(schedule)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let (id, outcome) = match waiting {
            Some(id) => {
                let id = JobId(id as u64);
                let t = sched(EventKind::SlotFired, entity, "", "coalesced", format!("{id} still waiting"));
                log(&mut tx, now, Some(&brand), t).await?;
                (id, SlotOutcome::Coalesced(id))
            }
            None => {
                log(&mut tx, now, Some(&brand), sched(EventKind::SlotFired, entity, "", "fired", "tick".into())).await?;
                let id = enqueue_in(&mut tx, job, Some(schedule), now).await?.id();
                (id, SlotOutcome::Fired(id))
            }
        };
        sqlx::query("UPDATE dlft_slots SET job = $3 WHERE schedule = $1 AND slot = $2 AND brand = $4")
            .bind(schedule)
            .bind(ms(slot))
            .bind(id.0 as i64)
            .bind(brand.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(outcome)
    }

    async fn do_set_schedule(
        &self,
        brand: &BrandId,
        name: &str,
        enabled: bool,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = begin(&self.pool).await?;
        set_schedule_in(&mut tx, brand, name, enabled, reason, now, EventKind::ScheduleChanged).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn do_schedules(&self) -> Result<Vec<ScheduleRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT brand, name, enabled, reason, changed_at, last_slot FROM dlft_schedules ORDER BY brand, name",
        )
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(schedule_from_row).collect()
    }

    async fn do_discard_unknown_kinds(&self, known: &[String], now: Timestamp) -> Result<Vec<JobId>, StoreError> {
        let mut tx = begin(&self.pool).await?;
        let rows = sqlx::query(WAITING_SQL).fetch_all(&mut *tx).await.map_err(db_err)?;
        let mut discarded = Vec::new();
        for r in &rows {
            let mut job = job_from_row(r)?;
            if known.contains(&job.kind) {
                continue;
            }
            let error = format!("unknown job kind {:?} (this build runs {known:?})", job.kind);
            job.state = JobState::Discarded;
            job.errors.push(error.clone());
            move_to_done(&mut tx, std::slice::from_ref(&job), now).await?;
            let t = sched(EventKind::JobDiscarded, job.id.to_string(), "available", "discarded", error);
            log(&mut tx, now, Some(&job.brand), t).await?;
            discarded.push(job.id);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(discarded)
    }

    async fn do_release(&self, lease: &Lease, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = begin(&self.pool).await?;
        let job = fenced(&mut tx, lease).await?;
        sqlx::query(
            "UPDATE dlft_jobs SET state = 'available', attempt = attempt - 1, lease_token = NULL, lease_worker = NULL, \
             lease_incarnation = NULL, lease_expires_at = NULL, lease_for = NULL WHERE id = $1",
        )
        .bind(lease.job.0 as i64)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let cause = "graceful shutdown: attempt handed back".to_string();
        let t = sched(EventKind::JobReleased, lease.job.to_string(), "running", "available", cause);
        log(&mut tx, now, Some(&job.brand), t).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn do_claim(&self, req: &ClaimRequest, now: Timestamp) -> Result<Vec<Claim>, StoreError> {
        assert!(
            req.limit <= dlft_core::store::CLAIM_LIMIT_MAX,
            "claim limit {} over {}",
            req.limit,
            dlft_core::store::CLAIM_LIMIT_MAX
        );
        let kinds: Vec<String> = req.kinds.iter().map(|k| k.as_str().to_string()).collect();
        let claimed = claim_jobs(&self.pool, req, &kinds, now).await?;
        Ok(claimed
            .into_iter()
            .map(|job| {
                let token = job.lease.as_ref().expect("claimed jobs hold a lease").token;
                Claim { lease: Lease { job: job.id, token }, job }
            })
            .collect())
    }

    async fn do_write(&self, lease: &Lease, batch: WriteBatch, now: Timestamp) -> Result<BatchResult, StoreError> {
        let mut tx = begin(&self.pool).await?;
        let job = fenced(&mut tx, lease).await?;
        // Plan every intent op before writing anything: the batch is atomic
        // (and the transaction makes it so even if a later statement fails).
        let keys = intent_keys(&batch.intents);
        let mut current = BTreeMap::new();
        for key in keys {
            let row = sqlx::query(INTENT_LOCK_SQL).bind(key.as_str()).fetch_optional(&mut *tx).await.map_err(db_err)?;
            if let Some(r) = row {
                current.insert(key, intent_from_row(&r)?);
            }
        }
        // Everything the job writes is its own brand's.
        let brand = job.brand.clone();
        let b = Some(&brand);
        let ledger = load_ledger(&mut tx, &brand, &current, &batch.intents, &batch.charges, now).await?;
        let loaded: std::collections::BTreeSet<IdempotencyKey> = ledger.transfers.keys().cloned().collect();
        let plan = plan_intents(&current, &brand, batch.intents, batch.charges, ledger, now)?;
        write_ledger(&mut tx, &loaded, plan.transfers, plan.accounts).await?;
        write_spend(&mut tx, &brand, batch.insights, now).await?;
        for v in batch.verdicts {
            let t = Transition {
                block: Block::Envelope,
                kind: EventKind::Verdict,
                entity: v.key.to_string(),
                before: "proposed".into(),
                after: serde_json::to_string(&v.decision).expect("serializes"),
                cause: v.reason,
            };
            log(&mut tx, now, b, t).await?;
        }
        for c in &batch.tier_changes {
            log(&mut tx, now, b, dlft_core::store::plan::tier_transition(&brand, c)).await?;
        }
        for op in batch.state {
            if let Some(t) = op.transition() {
                log(&mut tx, now, b, t).await?;
            }
            match &op.body {
                Some(body) => sqlx::query(
                    "INSERT INTO dlft_state (brand, scope, key, body, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (brand, scope, key) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                )
                .bind(brand.as_str())
                .bind(&op.scope)
                .bind(&op.key)
                .bind(body)
                .bind(ms(now)),
                None => sqlx::query("DELETE FROM dlft_state WHERE brand = $1 AND scope = $2 AND key = $3")
                    .bind(brand.as_str())
                    .bind(&op.scope)
                    .bind(&op.key),
            }
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        for intent in plan.changed.values() {
            sqlx::query(
                "INSERT INTO dlft_intents \
                 (key, kind, subject, action, evidence, verdict, phase, opened_at, updated_at, attempts, brand, reserve) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (key) DO UPDATE SET \
                 phase = excluded.phase, updated_at = excluded.updated_at, attempts = excluded.attempts",
            )
            .bind(intent.key.as_str())
            .bind(intent.action.kind())
            .bind(intent.action.subject())
            .bind(serde_json::to_string(&intent.action).expect("serializes"))
            .bind(serde_json::to_string(&intent.evidence).expect("serializes"))
            .bind(serde_json::to_string(&intent.verdict).expect("serializes"))
            .bind(intent.phase.as_str())
            .bind(ms(intent.opened_at))
            .bind(ms(intent.updated_at))
            .bind(i64::from(intent.attempts))
            .bind(intent.brand.as_str())
            .bind(intent.reserve.as_ref().map(|r| serde_json::to_string(r).expect("serializes")))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        for a in plan.actions {
            sqlx::query("INSERT INTO dlft_actions (key, subject, kind, committed_at, brand) VALUES ($1, $2, $3, $4, $5)")
                .bind(a.key.as_str())
                .bind(a.subject)
                .bind(a.kind)
                .bind(ms(a.committed_at))
                .bind(a.brand.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        log_many(&mut tx, now, plan.events.into_iter().map(|t| (Some(brand.clone()), t)).collect()).await?;
        for j in batch.enqueue {
            enqueue_in(&mut tx, j.for_brand(&brand), None, now).await?;
        }
        insert_costs(&mut tx, &brand, batch.costs.into_iter().chain(plan.charged).collect()).await?;
        if let Some(a) = batch.activity {
            sqlx::query("INSERT INTO dlft_activities (page, body) VALUES ($1, $2) ON CONFLICT (page) DO UPDATE SET body = excluded.body")
                .bind(a.page.clone())
                .bind(serde_json::to_string(&a).expect("serializes"))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        if let Some(a) = batch.allocation {
            let a = dlft_core::propose::allocation::Allocation { brand: brand.clone(), ..a };
            // The first write of a slot stands; its one event row goes with it.
            let inserted = sqlx::query(
                "INSERT INTO dlft_allocations (slot, body, brand) VALUES ($1, $2, $3) ON CONFLICT (brand, slot) DO NOTHING",
            )
                .bind(ms(a.slot))
                .bind(serde_json::to_string(&a).expect("serializes"))
                .bind(brand.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            if inserted == 1 {
                let before: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(slot) FROM dlft_allocations WHERE slot < $1 AND brand = $2")
                    .bind(ms(a.slot))
                    .bind(brand.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
                let (entity, after, cause) = dlft_core::propose::allocation::allocation_event(&a);
                let before = before.map_or("none".to_string(), |s| s.to_string());
                let t = Transition { block: Block::Estimator, kind: EventKind::AllocationRolled, entity, before, after, cause };
                log(&mut tx, now, b, t).await?;
            }
        }
        let lease_for = job.lease.as_ref().map_or(0, |l| l.lease_for.0 as i64);
        let checkpoint = batch.checkpoint.as_ref().map(|c| serde_json::to_string(c).expect("serializes"));
        sqlx::query("UPDATE dlft_jobs SET lease_expires_at = $2, checkpoint = COALESCE($3, checkpoint) WHERE id = $1")
            .bind(lease.job.0 as i64)
            .bind(ms(now) + lease_for)
            .bind(checkpoint)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if let Some(cp) = batch.checkpoint {
            let before = job.checkpoint.as_ref().map_or("none".to_string(), |c| c.step.clone());
            let t = sched(EventKind::PipelineStep, lease.job.to_string(), &before, &cp.step, "checkpoint".into());
            log(&mut tx, now, b, t).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(BatchResult { intents: plan.results, refused: plan.refused })
    }

    async fn do_finish(
        &self,
        lease: &Lease,
        outcome: Outcome,
        costs: Vec<CostRow>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if matches!(outcome, Outcome::Completed) && costs.is_empty() {
            // The hot path: the batched completion's statement, for one lease.
            let fenced = complete_jobs(&self.pool, vec![(lease.clone(), vec![])], now).await?;
            return if fenced.is_empty() {
                Ok(())
            } else {
                Err(StoreError::Fenced { job: lease.job, token: lease.token })
            };
        }
        let mut tx = begin(&self.pool).await?;
        let mut job = fenced(&mut tx, lease).await?;
        insert_costs(&mut tx, &job.brand, costs).await?;
        job.lease = None;
        let mut tripped = None;
        let (kind, cause) = match outcome {
            Outcome::Completed => {
                job.state = JobState::Completed;
                (EventKind::JobCompleted, "done".to_string())
            }
            Outcome::Retry { at, error } => {
                job.state = JobState::Available;
                job.run_at = at;
                job.errors.push(error.clone());
                (EventKind::JobRetried, error)
            }
            Outcome::Discard { error } => {
                job.state = JobState::Discarded;
                job.errors.push(error.clone());
                (EventKind::JobDiscarded, error)
            }
            Outcome::Trip { error } => {
                job.state = JobState::Discarded;
                job.errors.push(error.clone());
                tripped = job.schedule.clone().map(|s| (s, error.clone()));
                (EventKind::JobDiscarded, format!("circuit breaker: {error}"))
            }
        };
        if job.state.is_final() {
            move_to_done(&mut tx, std::slice::from_ref(&job), now).await?;
        } else {
            sqlx::query(
                "UPDATE dlft_jobs SET state = 'available', run_at = $2, errors = $3, lease_token = NULL, \
                 lease_worker = NULL, lease_incarnation = NULL, lease_expires_at = NULL, lease_for = NULL \
                 WHERE id = $1",
            )
            .bind(job.id.0 as i64)
            .bind(ms(job.run_at))
            .bind(serde_json::to_string(&job.errors).expect("strings serialize"))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let t = sched(kind, lease.job.to_string(), "running", job.state.as_str(), cause);
        log(&mut tx, now, Some(&job.brand), t).await?;
        if let Some((schedule, error)) = tripped {
            let reason = format!("circuit breaker opened by {}: {error}", lease.job);
            set_schedule_in(&mut tx, &job.brand, &schedule, false, &reason, now, EventKind::BreakerOpened).await?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn do_complete_batch(
        &self,
        done: Vec<(Lease, Vec<CostRow>)>,
        now: Timestamp,
    ) -> Result<Vec<Lease>, StoreError> {
        if done.is_empty() {
            return Ok(vec![]);
        }
        complete_jobs(&self.pool, done, now).await
    }

    async fn do_finished_of_schedule(&self, brand: &BrandId, schedule: &str, n: usize) -> Result<Vec<Job>, StoreError> {
        let sql = concat!(
            "SELECT ",
            job_cols!(),
            " FROM dlft_jobs_done WHERE brand = $1 AND schedule = $2 ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(sql)
            .bind(brand.as_str())
            .bind(schedule)
            .bind(i64::try_from(n).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn do_job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query(JOB_BY_ID_SQL).bind(id.0 as i64).fetch_optional(&self.pool).await.map_err(db_err)?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn do_events(&self, after: u64) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, brand, block, kind, entity, before, after, cause, origin FROM dlft_events WHERE seq > $1 ORDER BY seq",
        )
        .bind(after as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn do_last_event_seq(&self) -> Result<u64, StoreError> {
        let seq: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM dlft_events")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(seq as u64)
    }

    async fn do_spend_ledger(&self, brand: &BrandId, since: Timestamp) -> Result<Vec<InsightRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT ad, bucket_start, spend_minor, currency, purchases, revenue_minor, revenue_currency \
             FROM dlft_spend WHERE bucket_start >= $1 AND brand = $2 ORDER BY ad, bucket_start",
        )
        .bind(ms(since))
        .bind(brand.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(spend_from_row).collect()
    }

    /// The matured rows summed per ad by the database, the rest as rows:
    /// the same rows as [`dlft_core::store::fold_spend`] makes.
    async fn do_spend_summary(
        &self,
        brand: &BrandId,
        since: Timestamp,
        fold_before: Timestamp,
    ) -> Result<Vec<InsightRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT ad, MIN(bucket_start) AS bucket_start, CAST(SUM(spend_minor) AS BIGINT) AS spend_minor, currency, \
                    CAST(SUM(purchases) AS BIGINT) AS purchases, CAST(SUM(revenue_minor) AS BIGINT) AS revenue_minor, \
                    revenue_currency \
             FROM dlft_spend WHERE brand = $1 AND bucket_start >= $2 AND bucket_start < $3 \
             GROUP BY ad, currency, revenue_currency \
             UNION ALL \
             SELECT ad, bucket_start, spend_minor, currency, purchases, revenue_minor, revenue_currency \
             FROM dlft_spend WHERE brand = $4 AND bucket_start >= $5 \
             ORDER BY ad, bucket_start",
        )
        .bind(brand.as_str())
        .bind(ms(since))
        .bind(ms(fold_before))
        .bind(brand.as_str())
        .bind(ms(since.max(fold_before)))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(spend_from_row).collect()
    }

    async fn do_intents(&self) -> Result<Vec<Intent>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, brand, action, evidence, verdict, phase, opened_at, updated_at, attempts, reserve FROM dlft_intents ORDER BY key",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(intent_from_row).collect()
    }

    async fn do_brand_intents(&self, brand: &BrandId, filter: &IntentFilter) -> Result<Vec<Intent>, StoreError> {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "SELECT key, brand, action, evidence, verdict, phase, opened_at, updated_at, attempts, reserve FROM dlft_intents \
             WHERE brand = ",
        );
        q.push_bind(brand.as_str());
        if let Some(kinds) = &filter.kinds {
            q.push(" AND (kind IN (''");
            for k in kinds {
                q.push(", ").push_bind(k.as_str());
            }
            q.push(")");
            if filter.open {
                q.push(" OR phase NOT IN ('committed', 'abandoned')");
            }
            if !filter.keys.is_empty() {
                q.push(" OR key IN (''");
                for k in &filter.keys {
                    q.push(", ").push_bind(k.as_str());
                }
                q.push(")");
            }
            q.push(")");
        }
        q.push(" ORDER BY key");
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(intent_from_row).collect()
    }

    async fn do_intent(&self, key: &IdempotencyKey) -> Result<Option<Intent>, StoreError> {
        let row = sqlx::query(
            "SELECT key, brand, action, evidence, verdict, phase, opened_at, updated_at, attempts, reserve FROM dlft_intents WHERE key = $1",
        )
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(intent_from_row).transpose()
    }

    async fn do_beat(&self, p: &Presence, now: Timestamp) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE dlft_workers SET host = $3, pid = $4, beat_at = $5 WHERE worker = $1 AND incarnation = $2",
        )
        .bind(p.worker.as_str())
        .bind(p.incarnation.0 as i64)
        .bind(&p.host)
        .bind(i64::from(p.pid))
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::StaleIncarnation { worker: p.worker.clone(), incarnation: p.incarnation });
        }
        Ok(())
    }

    async fn do_workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = sqlx::query("SELECT worker, incarnation, host, pid, beat_at FROM dlft_workers ORDER BY worker")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let pid: i64 = get(r, "pid")?;
                Ok(WorkerRow {
                    worker: WorkerId::new(get::<String>(r, "worker")?),
                    incarnation: Incarnation(get::<i64>(r, "incarnation")? as u64),
                    host: get(r, "host")?,
                    pid: u32::try_from(pid).map_err(|_| corrupt(format!("pid {pid}")))?,
                    beat_at: get::<Option<i64>>(r, "beat_at")?.map(|t| Timestamp(t as u64)),
                })
            })
            .collect()
    }

    async fn do_allocation(
        &self,
        brand: &BrandId,
    ) -> Result<Option<dlft_core::propose::allocation::Allocation>, StoreError> {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body FROM dlft_allocations WHERE brand = $1 ORDER BY slot DESC LIMIT 1")
            .bind(brand.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        body.map(|b| serde_json::from_str(&b).map_err(corrupt)).transpose()
    }

    async fn do_state(&self, brand: &BrandId, scope: &str) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query_as("SELECT key, body FROM dlft_state WHERE brand = $1 AND scope = $2 ORDER BY key")
            .bind(brand.as_str())
            .bind(scope)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn do_activities(&self) -> Result<Vec<PageActivity>, StoreError> {
        let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM dlft_activities ORDER BY page")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        bodies.iter().map(|b| serde_json::from_str(b).map_err(corrupt)).collect()
    }

    async fn do_set_budgets(&self, brand: &BrandId, budgets: &Budgets, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = begin(&self.pool).await?;
        let sql = format!("SELECT body FROM dlft_budgets WHERE brand = $1{ROW_LOCK}");
        let old: Option<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(brand.as_str()).fetch_optional(&mut *tx).await.map_err(db_err)?;
        let before = old
            .map(|b| serde_json::from_str::<Budgets>(&b).map_err(corrupt))
            .transpose()?
            .map_or("none".to_string(), |b| b.describe());
        let after = budgets.describe();
        if before == after {
            return Ok(());
        }
        sqlx::query("INSERT INTO dlft_budgets (brand, body) VALUES ($1, $2) ON CONFLICT (brand) DO UPDATE SET body = excluded.body")
            .bind(brand.as_str())
            .bind(serde_json::to_string(budgets).expect("serializes"))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let t = Transition {
            block: Block::Envelope,
            kind: EventKind::BudgetsSet,
            entity: format!("budgets/{brand}"),
            before,
            after,
            cause: "declared".into(),
        };
        log(&mut tx, now, Some(brand), t).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn do_budgets(&self) -> Result<Vec<(BrandId, Budgets)>, StoreError> {
        let rows = sqlx::query("SELECT brand, body FROM dlft_budgets ORDER BY brand")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let body: String = get(r, "body")?;
                Ok((BrandId::new(get::<String>(r, "brand")?), serde_json::from_str(&body).map_err(corrupt)?))
            })
            .collect()
    }

    async fn do_accounts(&self, brand: Option<&BrandId>) -> Result<Vec<Account>, StoreError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLS} FROM dlft_budget_accounts WHERE ($1 IS NULL OR brand = $1) \
             ORDER BY brand, purpose, currency, time_window, counterparty, period"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(brand.map(|b| b.as_str().to_string())).fetch_all(&self.pool).await.map_err(db_err)?;
        let mut out = rows.iter().map(account_from_row).collect::<Result<Vec<_>, _>>()?;
        // Core's key order (the enums' declaration order), not the text's.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn do_transfers(&self) -> Result<Vec<Transfer>, StoreError> {
        let sql = format!("SELECT {TRANSFER_COLS} FROM dlft_budget_transfers ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(transfer_from_row).collect()
    }

    /// Jobs waiting or running, per kind and state: the runner's queue-depth gauge.
    /// Live jobs per (brand, kind, state).
    pub async fn depth(&self) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT brand, kind, state, COUNT(*) AS n FROM dlft_jobs GROUP BY brand, kind, state \
             ORDER BY brand, kind, state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| Ok((get(r, "brand")?, get(r, "kind")?, get(r, "state")?, get(r, "n")?))).collect()
    }
}

impl Store for SqlStore {
    fn finished_of_schedule(
        &self,
        brand: &BrandId,
        schedule: &str,
        n: usize,
    ) -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send {
        self.do_finished_of_schedule(brand, schedule, n)
    }
    fn boot(&self, worker: &WorkerId, now: Timestamp) -> impl Future<Output = Result<Boot, StoreError>> + Send {
        self.do_boot(worker, now)
    }
    fn enqueue(&self, job: NewJob, now: Timestamp) -> impl Future<Output = Result<Enqueued, StoreError>> + Send {
        self.do_enqueue(job, now)
    }
    fn fire_slot(
        &self,
        schedule: &str,
        slot: Timestamp,
        job: NewJob,
        now: Timestamp,
    ) -> impl Future<Output = Result<SlotOutcome, StoreError>> + Send {
        self.do_fire_slot(schedule, slot, job, now)
    }
    fn schedules(&self) -> impl Future<Output = Result<Vec<ScheduleRow>, StoreError>> + Send {
        self.do_schedules()
    }
    fn set_schedule(
        &self,
        brand: &BrandId,
        name: &str,
        enabled: bool,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.do_set_schedule(brand, name, enabled, reason, now)
    }
    fn discard_unknown_kinds(
        &self,
        known: &[String],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<JobId>, StoreError>> + Send {
        self.do_discard_unknown_kinds(known, now)
    }
    fn release(&self, lease: &Lease, now: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.do_release(lease, now)
    }
    fn claim(&self, req: &ClaimRequest, now: Timestamp) -> impl Future<Output = Result<Vec<Claim>, StoreError>> + Send {
        self.do_claim(req, now)
    }
    fn write(
        &self,
        lease: &Lease,
        batch: WriteBatch,
        now: Timestamp,
    ) -> impl Future<Output = Result<BatchResult, StoreError>> + Send {
        self.do_write(lease, batch, now)
    }
    fn finish(
        &self,
        lease: &Lease,
        outcome: Outcome,
        costs: Vec<CostRow>,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.do_finish(lease, outcome, costs, now)
    }
    fn complete_batch(
        &self,
        done: Vec<(Lease, Vec<CostRow>)>,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Lease>, StoreError>> + Send {
        self.do_complete_batch(done, now)
    }
    fn job(&self, id: JobId) -> impl Future<Output = Result<Option<Job>, StoreError>> + Send {
        self.do_job(id)
    }
    fn events(&self, after: u64) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        self.do_events(after)
    }
    fn last_event_seq(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.do_last_event_seq()
    }
    fn spend_ledger(
        &self,
        brand: &BrandId,
        since: Timestamp,
    ) -> impl Future<Output = Result<Vec<InsightRow>, StoreError>> + Send {
        self.do_spend_ledger(brand, since)
    }
    fn spend_summary(
        &self,
        brand: &BrandId,
        since: Timestamp,
        fold_before: Timestamp,
    ) -> impl Future<Output = Result<Vec<InsightRow>, StoreError>> + Send {
        self.do_spend_summary(brand, since, fold_before)
    }
    fn intents(&self) -> impl Future<Output = Result<Vec<Intent>, StoreError>> + Send {
        self.do_intents()
    }
    fn brand_intents(
        &self,
        brand: &BrandId,
        filter: &IntentFilter,
    ) -> impl Future<Output = Result<Vec<Intent>, StoreError>> + Send {
        self.do_brand_intents(brand, filter)
    }
    fn activities(&self) -> impl Future<Output = Result<Vec<PageActivity>, StoreError>> + Send {
        self.do_activities()
    }
    fn state(
        &self,
        brand: &BrandId,
        scope: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send {
        self.do_state(brand, scope)
    }
    fn intent(&self, key: &IdempotencyKey) -> impl Future<Output = Result<Option<Intent>, StoreError>> + Send {
        self.do_intent(key)
    }
    fn allocation(
        &self,
        brand: &BrandId,
    ) -> impl Future<Output = Result<Option<dlft_core::propose::allocation::Allocation>, StoreError>> + Send {
        self.do_allocation(brand)
    }
    fn beat(&self, presence: &Presence, now: Timestamp) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.do_beat(presence, now)
    }
    fn workers(&self) -> impl Future<Output = Result<Vec<WorkerRow>, StoreError>> + Send {
        self.do_workers()
    }
    fn set_budgets(
        &self,
        brand: &BrandId,
        budgets: &Budgets,
        now: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.do_set_budgets(brand, budgets, now)
    }
    fn budgets(&self) -> impl Future<Output = Result<Vec<(BrandId, Budgets)>, StoreError>> + Send {
        self.do_budgets()
    }
    fn accounts(&self, brand: Option<&BrandId>) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send {
        self.do_accounts(brand)
    }
    fn transfers(&self) -> impl Future<Output = Result<Vec<Transfer>, StoreError>> + Send {
        self.do_transfers()
    }
}

impl crate::store::Stats for SqlStore {
    async fn stats(&self) -> Result<crate::store::StoreStats, StoreError> {
        let depth = self.depth().await?;
        // Every claim draws one lease token: the counter is the count, read
        // in O(1) (a COUNT(*) over the event log grew with its history).
        let claims: i64 = sqlx::query_scalar(CLAIMS_ISSUED_SQL)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        let phases = sqlx::query(
            "SELECT brand, kind, phase, COUNT(*) AS n FROM dlft_intents GROUP BY brand, kind, phase \
             ORDER BY brand, kind, phase",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let intents = phases
            .iter()
            .map(|r| Ok((get(r, "brand")?, get(r, "kind")?, get(r, "phase")?, get(r, "n")?)))
            .collect::<Result<_, StoreError>>()?;
        let leaked = sqlx::query(
            "SELECT s.brand, s.currency, CAST(SUM(s.spend_minor) AS BIGINT) AS n FROM dlft_spend s \
             JOIN dlft_intents i ON i.kind = 'ad_kill' AND i.subject = s.ad AND i.brand = s.brand \
             WHERE i.phase = 'committed' AND s.bucket_start >= i.updated_at \
             GROUP BY s.brand, s.currency ORDER BY s.brand, s.currency",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let spend_after_kill = leaked
            .iter()
            .map(|r| Ok((get(r, "brand")?, get(r, "currency")?, get(r, "n")?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(crate::store::StoreStats {
            depth,
            claims_total: claims,
            intents,
            schedules: self.do_schedules().await?,
            spend_after_kill,
        })
    }

    async fn freshness(&self) -> Result<crate::store::Freshness, StoreError> {
        let oldest = sqlx::query(
            "SELECT brand, kind, CAST(MIN(run_at) AS BIGINT) AS t FROM dlft_jobs WHERE state = 'available' \
             GROUP BY brand, kind ORDER BY brand, kind",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let oldest_available = oldest
            .iter()
            .map(|r| Ok((get(r, "brand")?, get(r, "kind")?, get(r, "t")?)))
            .collect::<Result<_, StoreError>>()?;
        let buckets = sqlx::query(
            "SELECT brand, CAST(MAX(bucket_start) AS BIGINT) AS t FROM dlft_spend GROUP BY brand ORDER BY brand",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let last_bucket =
            buckets.iter().map(|r| Ok((get(r, "brand")?, get(r, "t")?))).collect::<Result<_, StoreError>>()?;
        let kinds = crate::store::SENSING_KINDS.map(|k| format!("'{k}'")).join(", ");
        let reads = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT brand, kind, CAST(MAX(finished_at) AS BIGINT) AS t FROM dlft_jobs_done \
             WHERE state = 'completed' AND kind IN ({kinds}) GROUP BY brand, kind ORDER BY brand, kind"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let last_read = reads
            .iter()
            .map(|r| Ok((get(r, "brand")?, get(r, "kind")?, get(r, "t")?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(crate::store::Freshness { oldest_available, last_bucket, last_read })
    }
}
