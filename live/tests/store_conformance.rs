//! Both SQL stores pass core's store conformance suite, unchanged, against
//! the real engines: SQLite in a temporary file, PostgreSQL on the server CI
//! starts (each case in its own schema).

use dlft_core::store::conformance::cases;
use dlft_live::store::{PoolOptions, open_pg, open_sqlite};
use dlft_live::testenv::pg_url_or_skip;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let all = cases();
    assert!(all.len() >= 15);
    for (name, case) in all {
        eprintln!("sqlite: case {name}");
        let url = format!("sqlite://{}", dir.path().join(format!("{name}.db")).display());
        let store = open_sqlite(&url, &PoolOptions::default()).await.unwrap();
        case(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    let Some(url) = pg_url_or_skip("postgres_store_passes_the_conformance_suite").await else { return };
    let all = cases();
    for (name, case) in all {
        eprintln!("postgres: case {name}");
        let schema = format!("dlft_conf_{}_{name}", std::process::id());
        let opts = PoolOptions { pg_schema: Some(schema.clone()), ..PoolOptions::default() };
        let store = open_pg(&url, &opts).await.unwrap();
        case(store.clone()).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
            .execute(store.pool())
            .await
            .unwrap();
    }
}
