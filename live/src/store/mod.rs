//! The SQL stores: PostgreSQL (many workers and processes on one database)
//! and SQLite (the embedded default for one machine). One implementation
//! (`common.rs`) with the engine-specific parts beside it; both pass core's
//! store conformance suite unchanged (`live/tests/store_conformance.rs`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Connection, SqlSafeStr};

macro_rules! job_cols {
    () => {
        "id, brand, kind, payload, priority, run_at, created_at, state, attempt, resumes, interrupted, errors, \
         lease_token, lease_worker, lease_incarnation, lease_expires_at, lease_for, idempotency_key, schedule, \
         checkpoint"
    };
}

pub mod pg;
pub mod sqlite;

pub use pg::PgStore;
pub use sqlite::SqliteStore;

/// The schema version this build writes. A database at a newer version is
/// refused rather than written with old assumptions.
pub const SCHEMA_VERSION: i64 = 11;

/// Why a store could not be opened. Every message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("not a database URL: {0:?} (expected sqlite://PATH or postgres://USER@HOST:PORT/DB)")]
    BadUrl(String),
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error(
        "the database at {url} has schema version {found}, newer than this build's {known}: \
         run a newer dlft (refusing to touch it)"
    )]
    NewerSchema { url: String, found: i64, known: i64 },
    #[error("migrating {url}: {source}")]
    Migrate { url: String, source: sqlx::migrate::MigrateError },
    /// A read-only command named a SQLite file that does not exist.
    #[error("no store at {url}: the file does not exist (commands that only read never create one)")]
    Missing { url: String },
    /// A read-only command named a database DLFT never migrated.
    #[error("{url} is not a DLFT store (no schema): `dlft migrate --store URL` or `dlft run` creates one")]
    NotAStore { url: String },
    /// A read-only command named a store of an older schema.
    #[error(
        "the store at {url} has schema version {found}, older than this build's {known}: run `dlft migrate --store URL`"
    )]
    OlderSchema { url: String, found: i64, known: i64 },
}

/// Which engine a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Sqlite,
}

impl Engine {
    pub fn of(url: &str) -> Result<Engine, OpenError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else {
            Err(OpenError::BadUrl(redact(url)))
        }
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// The migrations' names, in order (version = position + 1).
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    "init",
    "allocations",
    "presence",
    "actions",
    "brands",
    "budgets",
    "reversals",
    "counterparty_caps",
    "waiting",
    "state",
    "origin",
];

fn migrator(engine: Engine) -> Migrator {
    let sql: [&'static str; SCHEMA_VERSION as usize] = match engine {
        Engine::Postgres => [
            include_str!("../../migrations/postgres/0001_init.sql"),
            include_str!("../../migrations/postgres/0002_allocations.sql"),
            include_str!("../../migrations/postgres/0003_presence.sql"),
            include_str!("../../migrations/postgres/0004_actions.sql"),
            include_str!("../../migrations/postgres/0005_brands.sql"),
            include_str!("../../migrations/postgres/0006_budgets.sql"),
            include_str!("../../migrations/postgres/0007_reversals.sql"),
            include_str!("../../migrations/postgres/0008_counterparty_caps.sql"),
            include_str!("../../migrations/postgres/0009_waiting.sql"),
            include_str!("../../migrations/postgres/0010_state.sql"),
            include_str!("../../migrations/postgres/0011_origin.sql"),
        ],
        Engine::Sqlite => [
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0002_allocations.sql"),
            include_str!("../../migrations/sqlite/0003_presence.sql"),
            include_str!("../../migrations/sqlite/0004_actions.sql"),
            include_str!("../../migrations/sqlite/0005_brands.sql"),
            include_str!("../../migrations/sqlite/0006_budgets.sql"),
            include_str!("../../migrations/sqlite/0007_reversals.sql"),
            include_str!("../../migrations/sqlite/0008_counterparty_caps.sql"),
            include_str!("../../migrations/sqlite/0009_waiting.sql"),
            include_str!("../../migrations/sqlite/0010_state.sql"),
            include_str!("../../migrations/sqlite/0011_origin.sql"),
        ],
    };
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .zip(sql)
            .enumerate()
            .map(|(i, (name, sql))| {
                Migration::new(i as i64 + 1, (*name).into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

/// Fails if the database's schema is newer than this build's; returns its
/// version (`None`: never migrated).
async fn check_version<C>(conn: &mut C, exists_sql: &'static str, url: &str) -> Result<Option<i64>, OpenError>
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    for<'r> i64: sqlx::Decode<'r, C::Database> + sqlx::Type<C::Database>,
    for<'q> <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
    usize: sqlx::ColumnIndex<<C::Database as sqlx::Database>::Row>,
{
    let connect = |source| OpenError::Connect { url: redact(url), source };
    let has_table: Option<i64> = sqlx::query_scalar(exists_sql).fetch_optional(&mut *conn).await.map_err(connect)?;
    if has_table.is_none() {
        return Ok(None);
    }
    let found: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&mut *conn).await.map_err(connect)?;
    match found {
        Some(found) if found > SCHEMA_VERSION => {
            Err(OpenError::NewerSchema { url: redact(url), found, known: SCHEMA_VERSION })
        }
        _ => Ok(found),
    }
}

/// For a store opened read-only: the schema must be this build's.
fn require_current(url: &str, found: Option<i64>) -> Result<(), OpenError> {
    match found {
        None => Err(OpenError::NotAStore { url: redact(url) }),
        Some(v) if v < SCHEMA_VERSION => {
            Err(OpenError::OlderSchema { url: redact(url), found: v, known: SCHEMA_VERSION })
        }
        Some(_) => Ok(()),
    }
}

/// This process's name on the event rows it writes (`name/pid`), set once
/// by the runner before it opens its store: one process is one origin.
static ORIGIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this process on every event row it writes from now on; the first
/// name set stays (a second call returns false).
pub fn set_origin(name: String) -> bool {
    ORIGIN.set(name).is_ok()
}

/// The name set by `set_origin`, if any.
pub fn origin() -> Option<String> {
    ORIGIN.get().cloned()
}

/// Options shared by both engines' pools.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// How long to wait for a connection (at start-up, or from the pool).
    pub acquire_timeout: Duration,
    /// PostgreSQL only: a schema to use (created if missing), for tests.
    pub pg_schema: Option<String>,
    /// Open only an existing store of this build's schema: never create a
    /// SQLite file, never migrate (the commands that only read).
    pub existing_only: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            pg_schema: None,
            existing_only: false,
        }
    }
}

/// Opens (and migrates) a PostgreSQL store.
pub async fn open_pg(url: &str, opts: &PoolOptions) -> Result<PgStore, OpenError> {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let connect = |source| OpenError::Connect { url: redact(url), source };
    let mut conn_opts = PgConnectOptions::from_str(url).map_err(connect)?;
    // One direct connection first: its error names the real cause (refused,
    // unknown host, bad password), where the pool would only time out.
    let mut first = sqlx::PgConnection::connect_with(&conn_opts).await.map_err(connect)?;
    if let Some(schema) = &opts.pg_schema {
        let ddl = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", schema.replace('"', ""));
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl)).execute(&mut first).await.map_err(connect)?;
        conn_opts = conn_opts.options([("search_path", schema.as_str())]);
    }
    first.close().await.map_err(connect)?;
    // No ping before each acquire (a round trip per statement): a connection
    // the server dropped fails its statement, which the worker retries as
    // `Unavailable`, and the pool replaces it.
    let pool = PgPoolOptions::new()
        .test_before_acquire(false)
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(conn_opts)
        .await
        .map_err(connect)?;
    let mut conn = pool.acquire().await.map_err(connect)?;
    let found = check_version(
        &mut *conn,
        "SELECT 1::BIGINT FROM pg_tables WHERE tablename = '_sqlx_migrations' AND schemaname = current_schema()",
        url,
    )
    .await?;
    if opts.existing_only {
        require_current(url, found)?;
        drop(conn);
        return Ok(PgStore::from_pool(pool));
    }
    migrator(Engine::Postgres)
        .run(&mut *conn)
        .await
        .map_err(|source| OpenError::Migrate { url: redact(url), source })?;
    drop(conn);
    Ok(PgStore::from_pool(pool))
}

/// Opens (creating and migrating) a SQLite store.
pub async fn open_sqlite(url: &str, opts: &PoolOptions) -> Result<SqliteStore, OpenError> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
    let connect = |source| OpenError::Connect { url: redact(url), source };
    let conn_opts = SqliteConnectOptions::from_str(url).map_err(connect)?;
    if opts.existing_only && !conn_opts.get_filename().exists() {
        return Err(OpenError::Missing { url: redact(url) });
    }
    let conn_opts = conn_opts
        .create_if_missing(!opts.existing_only)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    sqlx::SqliteConnection::connect_with(&conn_opts).await.map_err(connect)?.close().await.map_err(connect)?;
    let pool = SqlitePoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .connect_with(conn_opts)
        .await
        .map_err(connect)?;
    let mut conn = pool.acquire().await.map_err(connect)?;
    let found = check_version(
        &mut *conn,
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        url,
    )
    .await?;
    if opts.existing_only {
        require_current(url, found)?;
        drop(conn);
        return Ok(SqliteStore::from_pool(pool));
    }
    migrator(Engine::Sqlite).run(&mut *conn).await.map_err(|source| OpenError::Migrate { url: redact(url), source })?;
    drop(conn);
    Ok(SqliteStore::from_pool(pool))
}

/// What the runner's metrics endpoint reads from a store, per brand.
#[derive(Clone, Debug, Default)]
pub struct StoreStats {
    /// (brand, kind, state, jobs) of the hot table.
    pub depth: Vec<(String, String, String, i64)>,
    /// Claims ever made (one lease token each).
    pub claims_total: i64,
    /// (brand, action kind, phase, intents).
    pub intents: Vec<(String, String, String, i64)>,
    pub schedules: Vec<dlft_core::store::ScheduleRow>,
    /// The leak counter: (brand, currency, minor units) of spend booked for
    /// ads in buckets that started after their kill committed (a confirmed
    /// pause should spend nothing more).
    pub spend_after_kill: Vec<(String, String, i64)>,
}

/// What `dlft status` reads besides [`StoreStats`] (not scraped by `/metrics`).
#[derive(Clone, Debug, Default)]
pub struct Freshness {
    /// (brand, kind, the earliest `run_at` of its available jobs, ms).
    pub oldest_available: Vec<(String, String, i64)>,
    /// (brand, the newest insights bucket booked to its spend ledger, ms).
    pub last_bucket: Vec<(String, i64)>,
    /// (brand, sensing job kind, when its newest run completed, ms): each
    /// run of these reads its sensor (insights, the store scan, payables,
    /// claims and the shop, the inbox) and completes only if the read did.
    pub last_read: Vec<(String, String, i64)>,
}

/// The job kinds that read a sensor, as `last_read` names them.
pub const SENSING_KINDS: [&str; 5] = ["poll_insights", "scan_store", "pay_payables", "review_claims", "answer_inbox"];

pub trait Stats {
    fn stats(&self) -> impl std::future::Future<Output = Result<StoreStats, dlft_core::store::StoreError>> + Send;
    fn freshness(&self) -> impl std::future::Future<Output = Result<Freshness, dlft_core::store::StoreError>> + Send;
}
