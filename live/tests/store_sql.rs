//! What only real engines can show: concurrent claimers on one database never
//! hold a job twice, finished rows leave the hot table, a newer schema is
//! refused, and a bad URL is a clear error.

use std::collections::BTreeMap;

use dlft_core::ids::WorkerId;
use dlft_core::schedule::task::{JobKind, Task};
use dlft_core::store::{ClaimRequest, NewJob, Outcome, Store};
use dlft_core::telemetry::{EventKind, replay};
use dlft_core::time::{Millis, Timestamp};
use dlft_live::store::{OpenError, PoolOptions, SCHEMA_VERSION, open_pg, open_sqlite};
use dlft_live::testenv::pg_url_or_skip;

const JOBS: u64 = 400;

/// Four workers claim in batches of 7 and finish what they claim, all at
/// once; every job must complete exactly once.
async fn race<S: Store + Clone + 'static>(s: S) {
    for i in 0..JOBS {
        let job = NewJob::new(&Task::PollInsights { slot: Timestamp(i) }, 0, Timestamp(0), None);
        s.enqueue(job, Timestamp(0)).await.unwrap();
    }
    let mut handles = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let worker = WorkerId::new(format!("w{w}"));
            let inc = s.boot(&worker, Timestamp(1)).await.unwrap().incarnation;
            let req = ClaimRequest {
                brands: vec![dlft_core::ids::BrandId::default()],
                worker,
                incarnation: inc,
                kinds: vec![JobKind::PollInsights],
                limit: 7,
                lease_for: Millis(600_000),
            };
            let mut done = Vec::new();
            loop {
                let claims = s.claim(&req, Timestamp(2)).await.unwrap();
                if claims.is_empty() {
                    break done;
                }
                for c in claims {
                    s.finish(&c.lease, Outcome::Completed, vec![], Timestamp(3)).await.unwrap();
                    done.push(c.job.id);
                }
            }
        }));
    }
    let mut seen = BTreeMap::new();
    let mut per_worker = Vec::new();
    for h in handles {
        let done = h.await.unwrap();
        per_worker.push(done.len());
        for id in done {
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len() as u64, JOBS, "every job was done");
    assert!(seen.values().all(|&n| n == 1), "no job was done twice");
    let events = s.events(0).await.unwrap();
    let claimed = events.iter().filter(|e| e.kind == EventKind::JobClaimed).count() as u64;
    assert_eq!(claimed, JOBS, "one claim row per job");
    let rebuilt = replay(&events).expect("the log has no gaps");
    assert!(rebuilt.jobs.values().all(|s| s == "completed"));
    eprintln!("jobs per worker: {per_worker:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_claimers_never_share_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("race.db").display());
    race(open_sqlite(&url, &PoolOptions::default()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_claimers_never_share_a_job() {
    let Some(url) = pg_url_or_skip("postgres_concurrent_claimers_never_share_a_job").await else { return };
    let schema = format!("dlft_race_{}", std::process::id());
    let opts = PoolOptions { pg_schema: Some(schema.clone()), ..PoolOptions::default() };
    let store = open_pg(&url, &opts).await.unwrap();
    race(store.clone()).await;
    let hot: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dlft_jobs").fetch_one(store.pool()).await.unwrap();
    let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dlft_jobs_done").fetch_one(store.pool()).await.unwrap();
    assert_eq!((hot, done), (0, JOBS as i64), "finished rows leave the hot table");
    drop_schema(&store, &schema).await;
}

async fn drop_schema(store: &dlft_live::store::PgStore, schema: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(store.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("newer.db").display());
    let store = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', TRUE, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.pool().close().await;
    let err = open_sqlite(&url, &PoolOptions::default()).await.unwrap_err();
    assert!(matches!(err, OpenError::NewerSchema { found: 99, known: SCHEMA_VERSION, .. }), "{err}");
    assert!(err.to_string().contains("newer than this build's"), "{err}");
}

#[tokio::test]
async fn bad_and_unreachable_urls_are_clear_errors() {
    let err = open_pg("postgres://nobody:secret@127.0.0.1:1/none", &PoolOptions::default()).await.unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.starts_with("cannot connect to postgres://nobody:***@127.0.0.1:1/none"), "{msg}");
    assert!(!msg.contains("secret"), "the password is never printed: {msg}");
    let err = dlft_live::store::Engine::of("mysql://x").unwrap_err();
    assert!(err.to_string().contains("expected sqlite://PATH or postgres://"), "{err}");
}

#[tokio::test]
async fn both_engines_share_one_schema_version_gate() {
    // The PostgreSQL side of the newer-schema check, when a server answers.
    let Some(url) = pg_url_or_skip("both_engines_share_one_schema_version_gate").await else { return };
    let schema = format!("dlft_newer_{}", std::process::id());
    let opts = PoolOptions { pg_schema: Some(schema.clone()), ..PoolOptions::default() };
    let store = open_pg(&url, &opts).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', TRUE, '\\x00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let err = open_pg(&url, &opts).await.unwrap_err();
    drop_schema(&store, &schema).await;
    assert!(matches!(err, OpenError::NewerSchema { found: 99, .. }), "{err}");
}

#[tokio::test]
async fn an_unopenable_sqlite_path_is_a_clear_error() {
    let err = open_sqlite("sqlite:///nonexistent-dir/x/dlft.db", &PoolOptions::default()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cannot connect to sqlite:///nonexistent-dir/x/dlft.db: "), "{msg}");
    assert!(msg.contains("unable to open database file"), "{msg}");
}

/// A store written by a build before the write-ahead model was generic
/// (schema 3: an intent held its ad and the bare estimate) opens under this
/// build with every intent an ad kill, its evidence and verdict intact.
#[tokio::test]
async fn intents_of_schema_3_migrate_to_typed_actions() {
    use dlft_core::act::intent::{Action, Evidence, IntentPhase};
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, SqlStr};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    let url = format!("sqlite://{}", path.display());
    {
        let mut conn = SqliteConnectOptions::new().filename(&path).create_if_missing(true).connect().await.unwrap();
        let sql = |s: &'static str| SqlStr::from_static(s);
        Migrator::with_migrations(vec![
            Migration::new(
                1,
                "init".into(),
                MigrationType::Simple,
                sql(include_str!("../migrations/sqlite/0001_init.sql")),
                false,
            ),
            Migration::new(
                2,
                "allocations".into(),
                MigrationType::Simple,
                sql(include_str!("../migrations/sqlite/0002_allocations.sql")),
                false,
            ),
            Migration::new(
                3,
                "presence".into(),
                MigrationType::Simple,
                sql(include_str!("../migrations/sqlite/0003_presence.sql")),
                false,
            ),
        ])
        .run(&mut conn)
        .await
        .unwrap();
        let evidence = r#"{"ad":"ad-7","first_bucket":0,"matured_until":0,"matured_spend":{"minor":9000,"currency":"EUR"},"matured_purchases":0,"matured_revenue":{"minor":0,"currency":"EUR"},"in_learning":false}"#;
        let verdict = r#"{"ad":"ad-7","key":"kill/ad-7","decision":"approve","at":5,"reason":"r"}"#;
        sqlx::query(
            "INSERT INTO dlft_intents (key, ad, evidence, verdict, phase, opened_at, updated_at, attempts) \
             VALUES ('kill/ad-7', 'ad-7', $1, $2, 'committed', 5, 9, 1)",
        )
        .bind(evidence)
        .bind(verdict)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO dlft_actions (key, ad, kind, committed_at) VALUES ('kill/ad-7', 'ad-7', 'ad_kill', 9)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let store = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
    let intents = store.intents().await.unwrap();
    assert_eq!(intents.len(), 1);
    let i = &intents[0];
    assert_eq!(i.action, Action::KillAd { ad: dlft_core::ids::AdId::new("ad-7") });
    let Evidence::Kill(e) = &i.evidence else { panic!("a schema-3 intent is a kill: {i:?}") };
    assert_eq!(e.matured_spend.minor, 9000);
    assert_eq!((i.phase, i.attempts, i.verdict.at), (IntentPhase::Committed, 1, Timestamp(5)));
    let (kind, subject): (String, String) =
        sqlx::query_as("SELECT kind, subject FROM dlft_intents").fetch_one(store.pool()).await.unwrap();
    assert_eq!((kind.as_str(), subject.as_str()), ("ad_kill", "ad-7"));
    let subject: String = sqlx::query_scalar("SELECT subject FROM dlft_actions").fetch_one(store.pool()).await.unwrap();
    assert_eq!(subject, "ad-7");
}

/// Rows of a store written before brands (schema 4), one of each kind.
const SCHEMA_4_ROWS: &[&str] = &[
    "INSERT INTO dlft_jobs (kind, payload, priority, run_at, created_at, state) \
     VALUES ('poll_insights', '{\"kind\":\"poll_insights\",\"slot\":60}', 1, 60, 60, 'available')",
    "INSERT INTO dlft_schedules (name, enabled, reason, changed_at, last_slot) \
     VALUES ('tick', FALSE, 'circuit breaker opened by job#3: crash loop', 50, 60)",
    "INSERT INTO dlft_slots (schedule, slot, job) VALUES ('tick', 60, 1)",
    "INSERT INTO dlft_spend (ad, bucket_start, spend_minor, currency, purchases, revenue_minor, revenue_currency) \
     VALUES ('ad-1', 0, 500, 'EUR', 0, 0, 'EUR')",
    "INSERT INTO dlft_costs (call_id, at, vendor, op, ok, minor, currency) \
     VALUES ('c1', 5, 'meta', 'insights', TRUE, 0, 'EUR')",
    "INSERT INTO dlft_allocations (slot, body) VALUES (3600000, '{\"slot\":3600000,\"shares\":[]}')",
    "INSERT INTO dlft_events (at, block, kind, entity, before, after, cause) \
     VALUES (1, 'scheduler', 'worker_booted', 'w', '', 'inc#1', 'boot')",
    "INSERT INTO dlft_events (at, block, kind, entity, before, after, cause) \
     VALUES (60, 'scheduler', 'job_enqueued', 'job#1', 'none', 'available', 'poll_insights')",
];

/// The first four migrations of an engine, as a migrator.
fn schema_4(files: [&'static str; 4]) -> sqlx::migrate::Migrator {
    use sqlx::SqlStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let names = ["init", "allocations", "presence", "actions"];
    let migrations = files
        .iter()
        .zip(names)
        .enumerate()
        .map(|(i, (f, n))| Migration::new(i as i64 + 1, n.into(), MigrationType::Simple, SqlStr::from_static(f), false))
        .collect();
    Migrator::with_migrations(migrations)
}

/// What a migrated schema-4 store must show: every old row is the default
/// brand's (a worker's boot row is no brand's), an open breaker stays open,
/// a fired slot stays fired, and another brand's same slot is its own.
async fn schema_4_rows_are_the_default_brands<S: Store>(store: &S) {
    use dlft_core::ids::BrandId;
    use dlft_core::store::SlotOutcome;
    let default = BrandId::default();
    let job = store.job(dlft_core::ids::JobId(1)).await.unwrap().unwrap();
    assert_eq!(job.brand, default);
    let schedules = store.schedules().await.unwrap();
    assert_eq!(schedules.len(), 1);
    assert_eq!((&schedules[0].brand, schedules[0].enabled), (&default, false), "an open breaker stays open");
    assert_eq!(store.spend_ledger(&default, Timestamp(0)).await.unwrap().len(), 1);
    assert_eq!(store.allocation(&default).await.unwrap().map(|a| a.slot), Some(Timestamp(3_600_000)));
    let events = store.events(0).await.unwrap();
    assert_eq!(events[0].brand, None, "a boot row is no brand's");
    assert_eq!(events[1].brand, Some(default.clone()));
    let tick =
        |b: &BrandId| NewJob::new(&Task::PollInsights { slot: Timestamp(60) }, 1, Timestamp(70), None).for_brand(b);
    store.set_schedule(&default, "tick", true, "operator", Timestamp(70)).await.unwrap();
    assert_eq!(
        store.fire_slot("tick", Timestamp(60), tick(&default), Timestamp(70)).await.unwrap(),
        SlotOutcome::AlreadyFired
    );
    let other = BrandId::new("acme");
    assert!(matches!(
        store.fire_slot("tick", Timestamp(60), tick(&other), Timestamp(70)).await.unwrap(),
        SlotOutcome::Fired(_)
    ));
}

/// A SQLite store written before brands (schema 4) migrates to schema 5.
#[tokio::test]
async fn rows_of_schema_4_belong_to_the_default_brand() {
    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    let url = format!("sqlite://{}", path.display());
    {
        let mut conn = SqliteConnectOptions::new().filename(&path).create_if_missing(true).connect().await.unwrap();
        schema_4([
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/sqlite/0002_allocations.sql"),
            include_str!("../migrations/sqlite/0003_presence.sql"),
            include_str!("../migrations/sqlite/0004_actions.sql"),
        ])
        .run(&mut conn)
        .await
        .unwrap();
        for stmt in SCHEMA_4_ROWS {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*stmt)).execute(&mut conn).await.unwrap();
        }
    }
    let store = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
    schema_4_rows_are_the_default_brands(&store).await;
    let cost_brand: String = sqlx::query_scalar("SELECT brand FROM dlft_costs").fetch_one(store.pool()).await.unwrap();
    assert_eq!(cost_brand, "default");
}

/// The same on PostgreSQL: a schema-4 store (in its own schema) migrates.
#[tokio::test]
async fn postgres_rows_of_schema_4_belong_to_the_default_brand() {
    use sqlx::ConnectOptions;
    use sqlx::postgres::PgConnectOptions;
    let Some(url) = pg_url_or_skip("postgres_rows_of_schema_4_belong_to_the_default_brand").await else { return };
    let schema = format!("dlft_v4_{}", std::process::id());
    let base: PgConnectOptions = url.parse().unwrap();
    {
        let mut admin = base.clone().connect().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\""))).execute(&mut admin).await.unwrap();
        let mut conn = base.clone().options([("search_path", schema.as_str())]).connect().await.unwrap();
        schema_4([
            include_str!("../migrations/postgres/0001_init.sql"),
            include_str!("../migrations/postgres/0002_allocations.sql"),
            include_str!("../migrations/postgres/0003_presence.sql"),
            include_str!("../migrations/postgres/0004_actions.sql"),
        ])
        .run(&mut conn)
        .await
        .unwrap();
        for stmt in SCHEMA_4_ROWS {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*stmt)).execute(&mut conn).await.unwrap();
        }
    }
    let opts = PoolOptions { pg_schema: Some(schema.clone()), ..PoolOptions::default() };
    let store = open_pg(&url, &opts).await.unwrap();
    schema_4_rows_are_the_default_brands(&store).await;
    let cost_brand: String = sqlx::query_scalar("SELECT brand FROM dlft_costs").fetch_one(store.pool()).await.unwrap();
    assert_eq!(cost_brand, "default");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(store.pool())
        .await
        .unwrap();
}

/// A SQLite store of schema 6 (budgets) keeps its transfers through schema
/// 7's rebuild of their table (SQLite cannot alter a CHECK constraint).
#[tokio::test]
async fn transfers_of_schema_6_survive_the_reversals_migration() {
    use dlft_core::envelope::budget::TransferState;
    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6.db");
    let url = format!("sqlite://{}", path.display());
    {
        let mut conn = SqliteConnectOptions::new().filename(&path).create_if_missing(true).connect().await.unwrap();
        migrator_of(&SQLITE_MIGRATIONS[..6]).run(&mut conn).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO dlft_budget_transfers (id, brand, purpose, currency, amount_minor, state, posted_minor, \
             opened_at, resolved_at, accounts) VALUES ('payout/default/INV-1', 'default', 'payout', 'EUR', 12500, \
             'posted', 12000, 1000, 2000, '[]')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let store = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
    let transfers = store.transfers().await.unwrap();
    assert_eq!(transfers.len(), 1);
    let t = &transfers[0];
    assert_eq!(
        (t.id.as_str(), t.state, t.posted, t.reversed_at),
        ("payout/default/INV-1", TransferState::Posted, 12000, None)
    );
    // The new state is accepted by the rebuilt table's CHECK.
    sqlx::query("UPDATE dlft_budget_transfers SET state = 'reversed', reversed_at = 3000")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.transfers().await.unwrap()[0].state, TransferState::Reversed);
}

/// Every migration of each engine, in order: an older build's schema is a prefix.
const SQLITE_MIGRATIONS: [(&str, &str); 8] = [
    ("init", include_str!("../migrations/sqlite/0001_init.sql")),
    ("allocations", include_str!("../migrations/sqlite/0002_allocations.sql")),
    ("presence", include_str!("../migrations/sqlite/0003_presence.sql")),
    ("actions", include_str!("../migrations/sqlite/0004_actions.sql")),
    ("brands", include_str!("../migrations/sqlite/0005_brands.sql")),
    ("budgets", include_str!("../migrations/sqlite/0006_budgets.sql")),
    ("reversals", include_str!("../migrations/sqlite/0007_reversals.sql")),
    ("counterparty_caps", include_str!("../migrations/sqlite/0008_counterparty_caps.sql")),
];
const PG_MIGRATIONS: [(&str, &str); 8] = [
    ("init", include_str!("../migrations/postgres/0001_init.sql")),
    ("allocations", include_str!("../migrations/postgres/0002_allocations.sql")),
    ("presence", include_str!("../migrations/postgres/0003_presence.sql")),
    ("actions", include_str!("../migrations/postgres/0004_actions.sql")),
    ("brands", include_str!("../migrations/postgres/0005_brands.sql")),
    ("budgets", include_str!("../migrations/postgres/0006_budgets.sql")),
    ("reversals", include_str!("../migrations/postgres/0007_reversals.sql")),
    ("counterparty_caps", include_str!("../migrations/postgres/0008_counterparty_caps.sql")),
];

/// Migrations 1..=n of `files` as a migrator (an older build's schema).
fn migrator_of(files: &[(&'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::SqlStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    let migrations = files
        .iter()
        .enumerate()
        .map(|(i, (n, f))| {
            Migration::new(i as i64 + 1, (*n).into(), MigrationType::Simple, SqlStr::from_static(f), false)
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// A brand cap's account of schema 7, as the older build wrote it.
const SCHEMA_7_ACCOUNT: &str = "INSERT INTO dlft_budget_accounts (brand, purpose, currency, time_window, period, \
     limit_minor, pending_minor, posted_minor) VALUES ('default', 'payout', 'EUR', 'daily', '2026-12-02', 150000, \
     2500, 12000)";

/// After schema 8, the old account is the brand's cap (no payee) and a
/// payee's account of the same cap and period is a row of its own.
async fn schema_7_accounts_are_brand_caps<S: Store>(store: &S, pool_exec: impl AsyncFnOnce(&'static str)) {
    let accounts = store.accounts(None).await.unwrap();
    assert_eq!(accounts.len(), 1);
    let a = &accounts[0];
    assert_eq!(
        (a.key.counterparty.as_deref(), a.key.period.as_str(), a.limit, a.pending, a.posted),
        (None, "2026-12-02", 150_000, 2_500, 12_000)
    );
    pool_exec(
        "INSERT INTO dlft_budget_accounts (brand, purpose, currency, time_window, counterparty, period, limit_minor, \
         pending_minor, posted_minor) VALUES ('default', 'payout', 'EUR', 'daily', 'cp-1', '2026-12-02', 40000, 0, 0)",
    )
    .await;
    let payees: Vec<Option<String>> =
        store.accounts(None).await.unwrap().into_iter().map(|a| a.key.counterparty).collect();
    assert_eq!(payees, vec![None, Some("cp-1".into())]);
}

/// SQLite rebuilds the accounts table for schema 8's key; PostgreSQL alters
/// it. Either way an account of schema 7 survives as a brand cap.
#[tokio::test]
async fn accounts_of_schema_7_survive_the_counterparty_caps_migration() {
    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v7.db");
    let url = format!("sqlite://{}", path.display());
    {
        let mut conn = SqliteConnectOptions::new().filename(&path).create_if_missing(true).connect().await.unwrap();
        migrator_of(&SQLITE_MIGRATIONS[..7]).run(&mut conn).await.unwrap();
        sqlx::raw_sql(SCHEMA_7_ACCOUNT).execute(&mut conn).await.unwrap();
    }
    let store = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
    schema_7_accounts_are_brand_caps(&store, async |sql| {
        sqlx::raw_sql(sql).execute(store.pool()).await.unwrap();
    })
    .await;

    use sqlx::postgres::PgConnectOptions;
    let Some(url) = pg_url_or_skip("accounts_of_schema_7_survive_the_counterparty_caps_migration").await else {
        return;
    };
    let schema = format!("dlft_v7_{}", std::process::id());
    let base: PgConnectOptions = url.parse().unwrap();
    {
        let mut admin = base.clone().connect().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\""))).execute(&mut admin).await.unwrap();
        let mut conn = base.clone().options([("search_path", schema.as_str())]).connect().await.unwrap();
        migrator_of(&PG_MIGRATIONS[..7]).run(&mut conn).await.unwrap();
        sqlx::raw_sql(SCHEMA_7_ACCOUNT).execute(&mut conn).await.unwrap();
    }
    let opts = PoolOptions { pg_schema: Some(schema.clone()), ..PoolOptions::default() };
    let store = open_pg(&url, &opts).await.unwrap();
    schema_7_accounts_are_brand_caps(&store, async |sql| {
        sqlx::raw_sql(sql).execute(store.pool()).await.unwrap();
    })
    .await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(store.pool())
        .await
        .unwrap();
}
