//! The test environment's databases: one place that decides whether a
//! PostgreSQL test runs, and says loudly when it does not.

#![allow(clippy::disallowed_methods, reason = "live is where the environment is read (secrets, test settings)")]

/// The variable that names the test PostgreSQL (and makes its tests required).
pub const PG_URL_VAR: &str = "DLFT_TEST_PG_URL";
/// Used when the variable is unset: the local server this project's CI starts.
pub const PG_DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL URL tests should use, or `None` (after a loud message) when
/// none answers and none is required. Under CI (`CI` set) or with
/// `DLFT_TEST_PG_URL` set, an unreachable server fails the test instead.
pub async fn pg_url_or_skip(test: &str) -> Option<String> {
    let explicit = std::env::var(PG_URL_VAR).ok();
    let required = explicit.is_some() || std::env::var_os("CI").is_some();
    let url = explicit.unwrap_or_else(|| PG_DEFAULT_URL.to_string());
    let probe = async {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await?;
        c.ping().await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), probe).await {
        Ok(Ok(())) => Some(url),
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_string(),
            };
            assert!(!required, "{test}: PostgreSQL at {url} is required here ({PG_URL_VAR} or CI is set) but: {why}");
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: no PostgreSQL at {url} ({why}).\n\
                 !!!!!!!! Set {PG_URL_VAR}=postgres://... to run it (CI sets CI=1, which makes it required).\n"
            );
            None
        }
    }
}
