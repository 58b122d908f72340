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
    let Evidence::Kill(e) = &i.evidence;
    assert_eq!(e.matured_spend.minor, 9000);
    assert_eq!((i.phase, i.attempts, i.verdict.at), (IntentPhase::Committed, 1, Timestamp(5)));
    let (kind, subject): (String, String) =
        sqlx::query_as("SELECT kind, subject FROM dlft_intents").fetch_one(store.pool()).await.unwrap();
    assert_eq!((kind.as_str(), subject.as_str()), ("ad_kill", "ad-7"));
    let subject: String = sqlx::query_scalar("SELECT subject FROM dlft_actions").fetch_one(store.pool()).await.unwrap();
    assert_eq!(subject, "ad-7");
}
