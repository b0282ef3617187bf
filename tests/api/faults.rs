//! Dependency faults: a statement stuck behind a lock is cut by
//! `statement_timeout` and answered 503, not left hanging.

use std::time::{Duration, Instant};

use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{TestApp, assert_problem};

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_slow_statement_is_cut_and_answered_503(pool: PgPool) {
    let url = tests::database_url(&pool);
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

/// A free TCP port on 127.0.0.1 (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn postgres_stopped_under_a_running_server_is_503_then_served_again() {
    use perf::client::Client;
    use xtask::services::Postgres;

    // A cluster of this test's own, so stopping it disturbs no other test.
    let dir = std::env::temp_dir().join(format!("um-pg-fault-{}", uuid::Uuid::new_v4()));
    let port = free_port();
    let start = {
        let dir = dir.clone();
        move || Postgres::start_throwaway(&dir, port).unwrap()
    };
    let pg = tokio::task::spawn_blocking(start.clone()).await.unwrap();
    let config = tests::test_config(&[
        ("DATABASE_URL", &pg.url("postgres")),
        ("DB_CONNECT_TIMEOUT_SECONDS", "2"),
        ("RATE_LIMIT_PER_MINUTE", "100000"),
        ("RATE_LIMIT_LOGIN_PER_MINUTE", "100000"),
    ]);
    let state = shared::AppState::from_config(config).unwrap();
    MIGRATOR.run(&state.db.write).await.unwrap();
    let app = TestApp::from_router(shared::api::app(state));
    let client = Client::new(&app.serve().await);
    let user = app.register("dora").await;
    let login = json!({"login": "dora", "password": user.password});
    let pair = client
        .call(
            axum::http::Method::POST,
            "/v1/auth/login",
            Some(&login),
            None,
        )
        .await
        .unwrap();
    assert_eq!(pair.status, 200, "{:?}", pair.body);
    let access = pair.str("access_token").unwrap().to_string();

    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap();

    // Every kind of request during the outage: 503 `unavailable`, within the
    // connect timeout (2 s) plus a margin, nothing internal in the body.
    let calls = (0..3).flat_map(|_| {
        [
            ("GET", "/v1/health", None, None),
            ("POST", "/v1/auth/login", Some(login.clone()), None),
            ("GET", "/v1/users/me", None, Some(access.clone())),
            (
                "POST",
                "/v1/auth/register",
                Some(json!({"username": "eve", "email": "eve@example.com",
                            "password": user.password})),
                None,
            ),
        ]
    });
    let outage = futures::future::join_all(calls.map(|(method, path, body, token)| {
        let client = client.clone();
        async move {
            let started = Instant::now();
            let method = axum::http::Method::from_bytes(method.as_bytes()).unwrap();
            let reply = client
                .call(method, path, body.as_ref(), token.as_deref())
                .await
                .unwrap();
            (path, reply, started.elapsed())
        }
    }))
    .await;
    for (path, reply, took) in &outage {
        assert_eq!(reply.status, 503, "{path}: {:?}", reply.body);
        assert_eq!(
            reply.code(),
            Some("unavailable"),
            "{path}: {:?}",
            reply.body
        );
        assert!(reply.request_id.is_some(), "{path}");
        assert!(
            *took < Duration::from_millis(3500),
            "{path} answered after {took:?}"
        );
        let text = reply.body.to_string().to_lowercase();
        assert!(
            !text.contains("connection") && !text.contains("refused"),
            "{text}"
        );
    }

    // PostgreSQL comes back: the same process serves again, no restart.
    let pg = tokio::task::spawn_blocking(start).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut health = 0;
    while Instant::now() < deadline {
        health = client
            .call(axum::http::Method::GET, "/v1/health", None, None)
            .await
            .unwrap()
            .status;
        if health == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(health, 200, "not healthy again within 30 s");
    let me = client
        .call(axum::http::Method::GET, "/v1/users/me", None, Some(&access))
        .await
        .unwrap();
    assert_eq!(me.status, 200, "{:?}", me.body);
    let again = client
        .call(
            axum::http::Method::POST,
            "/v1/auth/login",
            Some(&login),
            None,
        )
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{:?}", again.body);

    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pools do not ping a connection on every use (a round trip per
/// query), only one idle for a while: so a connection the database dropped
/// while it was idle (a restart, RDS Proxy's idle timeout) is found dead
/// and replaced before a request runs on it.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_connection_dropped_while_idle_is_replaced_unseen(pool: PgPool) {
    let url = tests::database_url(&pool);
    let config = tests::test_config(&[("DATABASE_URL", &url), ("DB_MAX_CONNECTIONS", "1")]);
    let state = shared::AppState::from_config(config).unwrap();
    let app = TestApp::from_router(shared::api::app(state));
    let setup = TestApp::new(pool.clone());
    let alice = setup.register("alice").await;
    let login = || {
        app.post(
            "/v1/auth/login",
            json!({"login": "alice", "password": alice.password}),
        )
    };
    assert_eq!(login().await.status, 200);

    let dropped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND application_name = 'user-management-api') t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dropped, 1, "the app's one connection");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let again = login().await;
    assert_eq!(again.status, 200, "{}", again.body);
}
