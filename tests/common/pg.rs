//! Whether the PostgreSQL tests run: one decision for every test binary (included by
//! `common::daemon` and `common::audit`; the library's own tests have a twin in
//! `providers::sim`).

/// The server URL the PostgreSQL tests create their throwaway databases through
/// (`COMMITD_TEST_DATABASE_URL`), or None to run on SQLite only. With
/// `COMMITD_TEST_REQUIRE_POSTGRES=1` (`.ci/run` exports it under `CI=true`) a missing URL fails the
/// test instead: CI must never pass without having run the PostgreSQL tests.
pub fn postgres_url() -> Option<String> {
    decide(
        std::env::var("COMMITD_TEST_DATABASE_URL").ok(),
        std::env::var("COMMITD_TEST_REQUIRE_POSTGRES").ok(),
    )
    .unwrap_or_else(|message| panic!("{message}"))
}

/// [`postgres_url`] without the environment, so that it can be tested.
pub fn decide(url: Option<String>, require: Option<String>) -> Result<Option<String>, String> {
    let url = url.filter(|u| !u.trim().is_empty());
    let required = require.is_some_and(|r| matches!(r.trim(), "1" | "true" | "yes"));
    match url {
        None if required => Err(
            "COMMITD_TEST_REQUIRE_POSTGRES=1 but COMMITD_TEST_DATABASE_URL is not set: the PostgreSQL \
             tests must run here (point it at a server, e.g. postgres://postgres@127.0.0.1:5432/postgres)"
                .to_string(),
        ),
        url => Ok(url),
    }
}
