//! Races an attacker can arrange: guesses sent at once against the lockout,
//! a login or a refresh in flight while the account is reset, suspended or
//! revoked, an admin request waiting while its caller is suspended. Each
//! test holds a row or advisory lock in its own transaction to stop the
//! request mid-way, changes the state, and lets it go.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, header};
use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{TestApp, TestResponse, assert_problem};
use uuid::Uuid;

/// Waits until some session of this database waits for a lock.
async fn someone_waits_for_a_lock(pool: &PgPool) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no request came to wait for the lock");
}

async fn live_tokens(pool: &PgPool, user: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A login from its own client address (the per-IP limit stays out of the way).
async fn login_from(app: &TestApp, n: u8, login: &str, password: &str) -> TestResponse {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"login": login, "password": password}).to_string(),
        ))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(std::net::SocketAddr::from((
            [10, 9, 9, n],
            4000,
        ))));
    app.send(request).await
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn guesses_sent_at_once_are_counted_before_they_are_checked(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[
            ("LOCKOUT_THRESHOLD", "3"),
            ("RATE_LIMIT_PER_MINUTE", "1000"),
        ],
    );
    let (alice, pair) = app.signed_in("alice").await;
    let guesses = (0..10).map(|i| {
        let app = &app;
        async move {
            app.post(
                "/v1/auth/login",
                json!({"login": "alice", "password": format!("Wrong-guess-{i}!")}),
            )
            .await
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let checked = answers.iter().filter(|r| r.status == 401).count();
    let locked = answers.iter().filter(|r| r.status == 423).count();
    assert_eq!(
        (checked, locked),
        (3, 7),
        "only the threshold's worth is checked"
    );
    assert_problem(&app.login_as(&alice).await, 423, "account_locked");

    // The same at the step-up checks, with a stolen access token.
    sqlx::query("UPDATE users SET failed_login_attempts = 0, locked_until = NULL WHERE id = $1")
        .bind(alice.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let token = pair["access_token"].as_str().unwrap().to_string();
    let guesses = (0..10).map(|i| {
        let (app, token) = (&app, &token);
        async move {
            app.call(
                Method::POST,
                "/v1/users/me/email",
                Some(
                    json!({"new_email": "x@example.com", "password": format!("Wrong-guess-{i}!")}),
                ),
                Some(token),
            )
            .await
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let checked = answers.iter().filter(|r| r.status == 401).count();
    assert_eq!(
        checked,
        3,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_login_limit_counts_per_account_however_it_is_named(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_LOGIN_PER_MINUTE", "3")]);
    let alice = app.register("ivy").await;
    let names = ["ivy", "IVY", "ivy@example.com"];
    for (n, name) in names.iter().enumerate() {
        let response = login_from(&app, n as u8, name, "Wrong-guess-1!").await;
        assert_problem(&response, 401, "invalid_credentials");
    }
    let response = login_from(&app, 9, "Ivy@Example.com", &alice.password).await;
    assert_problem(&response, 429, "rate_limited");
    // A non-ASCII spelling names no account (PostgreSQL's lower() would
    // fold 'İ' to 'i'): no login, and no count against ivy.
    let before: i32 = sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE id = $1")
        .bind(alice.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let dotted = login_from(&app, 10, "\u{130}vy", &alice.password).await;
    assert_problem(&dotted, 401, "invalid_credentials");
    let after: i32 = sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE id = $1")
        .bind(alice.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(before, after);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_login_in_flight_loses_to_a_reset_or_suspension(pool: PgPool) {
    let app = TestApp::new(pool);
    for (n, change, status, code) in [
        (
            0,
            "password_hash = 'replaced-by-a-reset'",
            401,
            "invalid_credentials",
        ),
        (1, "status = 'suspended'", 403, "account_disabled"),
        (
            2,
            "deleted_at = now(), status = 'deleted'",
            401,
            "invalid_credentials",
        ),
    ] {
        let user = app.register(&format!("user{n}")).await;
        let mut blocker = app.pool.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(user.id)
            .execute(&mut *blocker)
            .await
            .unwrap();
        let sql = format!("UPDATE users SET {change} WHERE id = $1");
        let apply = async {
            someone_waits_for_a_lock(&app.pool).await;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(user.id)
                .execute(&mut *blocker)
                .await
                .unwrap();
            blocker.commit().await.unwrap();
        };
        let (login, ()) = tokio::join!(app.login_as(&user), apply);
        assert_problem(&login, status, code);
        assert_eq!(
            live_tokens(&app.pool, user.id).await,
            0,
            "{change}: no session"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_refresh_in_flight_cannot_outlive_a_revocation(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "1000")]);
    let (_, admin) = app.user_with("admin", &["users:write"]).await;

    // The revocation first: the refresh waits for it, then finds its token revoked.
    let (alice, pair) = app.signed_in("alice").await;
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(alice.id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let revoke = async {
        someone_waits_for_a_lock(&app.pool).await;
        sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(alice.id)
            .execute(&mut *blocker)
            .await
            .unwrap();
        blocker.commit().await.unwrap();
    };
    let refresh = app.post(
        "/v1/auth/refresh",
        json!({"refresh_token": pair["refresh_token"]}),
    );
    let (refreshed, ()) = tokio::join!(refresh, revoke);
    assert_problem(&refreshed, 401, "refresh_token_invalid");
    assert_eq!(live_tokens(&app.pool, alice.id).await, 0);

    // The rotation first: the revocation waits for it, then revokes the successor.
    let (bob, pair) = app.signed_in("bob").await;
    let old: Uuid = sqlx::query_scalar("SELECT id FROM refresh_tokens WHERE user_id = $1")
        .bind(bob.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let sid = app
        .state
        .keys
        .verify(pair["access_token"].as_str().unwrap())
        .unwrap()
        .sid;
    let mut rotation = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR SHARE")
        .bind(bob.id)
        .execute(&mut *rotation)
        .await
        .unwrap();
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE id = $1")
        .bind(old)
        .execute(&mut *rotation)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO refresh_tokens (user_id, session_id, token_hash, expires_at, session_expires_at)
         VALUES ($1, $2, 'successor', now() + interval '1 day', now() + interval '1 day')",
    )
    .bind(bob.id)
    .bind(sid)
    .execute(&mut *rotation)
    .await
    .unwrap();
    let finish = async {
        someone_waits_for_a_lock(&app.pool).await;
        rotation.commit().await.unwrap();
    };
    let path = format!("/v1/admin/users/{}/revoke-sessions", bob.id);
    let (revoked, ()) = tokio::join!(app.call(Method::POST, &path, None, Some(&admin)), finish);
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    assert_eq!(
        live_tokens(&app.pool, bob.id).await,
        0,
        "the successor is revoked too"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_admin_request_waiting_for_the_lock_is_rechecked(pool: PgPool) {
    let app = TestApp::new(pool);
    let (manager, token) = app.user_with("manager", &["users:write"]).await;
    let (bob, _) = app.user_with("bob", &[]).await;
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(shared::db::roles::PRIVILEGES_LOCK_KEY)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let suspend = async {
        someone_waits_for_a_lock(&app.pool).await;
        sqlx::query("UPDATE users SET status = 'suspended' WHERE id = $1")
            .bind(manager.id)
            .execute(&mut *blocker)
            .await
            .unwrap();
        blocker.commit().await.unwrap();
    };
    let path = format!("/v1/admin/users/{}", bob.id);
    let patch = app.call(
        Method::PATCH,
        &path,
        Some(json!({"status": "suspended"})),
        Some(&token),
    );
    let (response, ()) = tokio::join!(patch, suspend);
    assert_problem(&response, 403, "account_disabled");
    let status: String = sqlx::query_scalar("SELECT status::text FROM users WHERE id = $1")
        .bind(bob.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "active");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn changing_or_deleting_a_role_acts_on_its_holders(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, manager) = app
        .user_with("manager", &["users:read", "users:write", "roles:manage"])
        .await;
    let auditor = app.register("auditor").await;
    app.grant(auditor.id, &["audit:read"]).await;
    let ops: Uuid = sqlx::query_scalar(
        "INSERT INTO roles (name, permissions) VALUES ('ops', '[\"roles:manage\", \"users:read\"]') RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)")
        .bind(auditor.id)
        .bind(ops)
        .execute(&app.pool)
        .await
        .unwrap();
    let path = format!("/v1/admin/roles/{ops}");
    let emptied = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"permissions": []})),
            Some(&manager),
        )
        .await;
    assert_problem(&emptied, 403, "forbidden");
    assert_problem(
        &app.call(Method::DELETE, &path, None, Some(&manager)).await,
        403,
        "forbidden",
    );
    let permissions: Value = sqlx::query_scalar("SELECT permissions FROM roles WHERE id = $1")
        .bind(ops)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(permissions, json!(["roles:manage", "users:read"]));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn logout_with_a_stolen_rotated_token_ends_its_session(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]);
    let (_, first) = app.signed_in("alice").await;
    let rotated = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": first["refresh_token"]}),
        )
        .await
        .body;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let logout = app
        .post(
            "/v1/auth/logout",
            json!({"refresh_token": first["refresh_token"]}),
        )
        .await;
    assert_eq!(logout.status, 204);
    let me = app
        .get_as("/v1/users/me", rotated["access_token"].as_str().unwrap())
        .await;
    assert_problem(&me, 401, "unauthorized");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_password_change_in_flight_loses_to_a_reset(pool: PgPool) {
    let app = TestApp::new(pool);
    let (alice, pair) = app.signed_in("alice").await;
    let token = pair["access_token"].as_str().unwrap().to_string();
    let mut reset = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(alice.id)
        .execute(&mut *reset)
        .await
        .unwrap();
    let finish = async {
        someone_waits_for_a_lock(&app.pool).await;
        sqlx::query("UPDATE users SET password_hash = 'the-victims-reset' WHERE id = $1")
            .bind(alice.id)
            .execute(&mut *reset)
            .await
            .unwrap();
        reset.commit().await.unwrap();
    };
    let body =
        json!({"current_password": tests::STRONG_PASSWORD, "new_password": "Thiefs-Own-Pass-77!"});
    let change = app.call(
        Method::POST,
        "/v1/users/me/password",
        Some(body),
        Some(&token),
    );
    let (changed, ()) = tokio::join!(change, finish);
    assert_eq!(changed.status.as_u16() / 100, 4, "{}", changed.body);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(alice.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(hash, "the-victims-reset", "the reset stands");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_right_password_does_not_lift_a_lock_others_set(pool: PgPool) {
    let app = TestApp::new(pool);
    let alice = app.register("alice").await;
    // Someone else's burst locked the account after this attempt was counted.
    sqlx::query("UPDATE users SET failed_login_attempts = 5, locked_until = now() + interval '15 minutes' WHERE id = $1")
        .bind(alice.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let cleared = shared::db::logins::clear_attempts(&app.pool, alice.id, None)
        .await
        .unwrap();
    assert!(!cleared);
    let mine: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT locked_until FROM users WHERE id = $1")
            .bind(alice.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    // The lock this attempt set itself is lifted by its right password.
    assert!(
        shared::db::logins::clear_attempts(&app.pool, alice.id, Some(mine))
            .await
            .unwrap()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_login_refused_for_load_is_not_counted(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[
            ("ARGON2_MAX_CONCURRENT", "1"),
            ("ARGON2_QUEUE_TIMEOUT_MS", "1"),
            ("ARGON2_MEMORY_KIB", "32768"),
            ("ARGON2_ITERATIONS", "3"),
            ("RATE_LIMIT_PER_MINUTE", "1000"),
        ],
    );
    let alice = app.register("alice").await;
    let guesses = (0..4).map(|i| {
        let app = &app;
        async move {
            app.post(
                "/v1/auth/login",
                json!({"login": "alice", "password": format!("Wrong-guess-{i}!")}),
            )
            .await
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let checked = answers.iter().filter(|r| r.status == 401).count() as i32;
    assert!(
        answers.iter().any(|r| r.status == 503),
        "one slot, four hashes"
    );
    let counted: i32 = sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE id = $1")
        .bind(alice.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(counted, checked, "only the checked attempts count");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn right_passwords_at_once_after_a_cost_change_all_log_in(pool: PgPool) {
    let old = TestApp::new(pool.clone());
    let alice = old.register("alice").await;
    // New Argon2 parameters: the first login rehashes; the others, checked
    // against the old hash, must find the new one equally right.
    let app = TestApp::with_config(
        pool,
        &[
            ("ARGON2_ITERATIONS", "2"),
            ("RATE_LIMIT_PER_MINUTE", "1000"),
        ],
    );
    let logins = (0..4).map(|_| app.login_as(&alice));
    let answers = futures::future::join_all(logins).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [200; 4]);
    let counted: i32 = sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE id = $1")
        .bind(alice.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(counted, 0);
}
