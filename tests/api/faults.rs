//! Dependency faults: a statement stuck behind a lock is cut by
//! `statement_timeout` and answered 503, not left hanging.

use std::time::{Duration, Instant};

use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{TestApp, assert_problem};

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_slow_statement_is_cut_and_answered_503(pool: PgPool) {
    let o = pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("postgres")
    );
    let setup = TestApp::new(pool.clone());
    let alice = setup.register("alice").await;
    // The application's own pools, with a 300 ms statement timeout.
    let config = tests::test_config(&[("DATABASE_URL", &url), ("DB_STATEMENT_TIMEOUT_MS", "300")]);
    let state = shared::AppState::from_config(config).unwrap();
    let app = TestApp::from_router(shared::api::app(state));

    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind(alice.id)
        .execute(&mut *holder)
        .await
        .unwrap();
    let started = Instant::now();
    let response = app
        .post(
            "/v1/auth/login",
            json!({"login": "alice", "password": "Wrong-pass-1!"}),
        )
        .await;
    let waited = started.elapsed();
    assert_problem(&response, 503, "unavailable");
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    assert!(
        !response.body.to_string().contains("statement"),
        "no internal detail"
    );
    holder.rollback().await.unwrap();
    // With the lock gone the same process serves again.
    let again = app
        .post(
            "/v1/auth/login",
            json!({"login": "alice", "password": alice.password}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
}
