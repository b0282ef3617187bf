//! The auth group: login.

#[allow(unused_imports)]
use super::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn login_by_email_or_username_returns_a_token_pair(pool: PgPool) {
    let app = TestApp::new(pool);
    let user = app.register("alice").await;
    for login in ["alice", "ALICE@example.com"] {
        let response = app
            .post(
                "/v1/auth/login",
                json!({"login": login, "password": user.password}),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        let pair = &response.body;
        assert_eq!(pair["token_type"], "Bearer");
        assert_eq!(pair["expires_in"], 900);
        // 14 days to the second (computed from one instant, not a rounded difference).
        assert_eq!(pair["refresh_expires_in"], 1_209_600);
        assert_eq!(pair["user"]["id"], user.id.to_string());
        assert!(pair["user"]["last_login_at"].is_string());
        assert_eq!(response.header("cache-control"), Some("no-store"));
        let claims = app
            .state
            .keys
            .verify(&bearer(pair))
            .expect("a valid access token");
        assert_eq!(claims.sub, user.id);
        assert_eq!(claims.aud, "user-management-api");
    }
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE action = 'login_succeeded' AND user_id = $1",
    )
    .bind(user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(audited, 2);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn wrong_password_and_unknown_user_get_the_same_answer(pool: PgPool) {
    let app = TestApp::new(pool);
    let user = app.register("alice").await;
    let wrong = app
        .post(
            "/v1/auth/login",
            json!({"login": user.username, "password": "Wrong-password-1"}),
        )
        .await;
    let unknown = app
        .post(
            "/v1/auth/login",
            json!({"login": "nobody", "password": "Wrong-password-1"}),
        )
        .await;
    assert_problem(&wrong, 401, "invalid_credentials");
    assert_problem(&unknown, 401, "invalid_credentials");
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().map(|o| o.remove("request_id"));
        v
    };
    assert_eq!(strip(&wrong.body), strip(&unknown.body));
    let failures: Vec<Option<Uuid>> = sqlx::query_scalar(
        "SELECT user_id FROM audit_logs WHERE action = 'login_failed' ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(failures, [Some(user.id), None]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn repeated_failures_lock_the_account(pool: PgPool) {
    let app = TestApp::new(pool);
    let user = app.register("alice").await;
    let wrong = json!({"login": "alice", "password": "Wrong-password-1"});
    for _ in 0..5 {
        // The failure that reaches the threshold still answers 401.
        assert_problem(
            &app.post("/v1/auth/login", wrong.clone()).await,
            401,
            "invalid_credentials",
        );
    }
    let locked = app.login_as(&user).await;
    assert_problem(&locked, 423, "account_locked");
    let retry: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((800..=900).contains(&retry), "{retry}");
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE action = 'account_locked' AND user_id = $1",
    )
    .bind(user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(events, 1);
    // Once the lock has run out, the right password works and clears the count.
    sqlx::query("UPDATE users SET locked_until = now() - interval '1 second' WHERE id = $1")
        .bind(user.id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(app.login_as(&user).await.status, 200);
    let (attempts, until): (i32, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT failed_login_attempts, locked_until FROM users WHERE id = $1")
            .bind(user.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!((attempts, until), (0, None));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_wrong_passwords_lose_no_count(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[
            ("LOCKOUT_THRESHOLD", "100"),
            ("RATE_LIMIT_PER_MINUTE", "1000"),
        ],
    );
    let user = app.register("alice").await;
    let attempts = (0..20).map(|_| {
        app.post(
            "/v1/auth/login",
            json!({"login": "alice", "password": "Wrong-password-1"}),
        )
    });
    let responses = futures::future::join_all(attempts).await;
    assert!(responses.iter().all(|r| r.status == 401));
    let attempts: i32 = sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 20);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_wrong_passwords_end_in_the_lock(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "1000")]);
    let user = app.register("alice").await;
    let attempts = (0..20).map(|_| {
        app.post(
            "/v1/auth/login",
            json!({"login": "alice", "password": "Wrong-password-1"}),
        )
    });
    let responses = futures::future::join_all(attempts).await;
    let unauthorised = responses.iter().filter(|r| r.status == 401).count();
    let locked = responses.iter().filter(|r| r.status == 423).count();
    assert_eq!(unauthorised + locked, 20);
    let (attempts, until): (i32, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT failed_login_attempts, locked_until FROM users WHERE id = $1")
            .bind(user.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(until.is_some());
    assert_eq!(attempts as usize, unauthorised);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn disabled_and_deleted_accounts_cannot_log_in(pool: PgPool) {
    let app = TestApp::new(pool);
    let user = app.register("alice").await;
    for status in ["suspended", "inactive"] {
        sqlx::query("UPDATE users SET status = $2::user_status WHERE id = $1")
            .bind(user.id)
            .bind(status)
            .execute(&app.pool)
            .await
            .unwrap();
        assert_problem(&app.login_as(&user).await, 403, "account_disabled");
        let wrong = app
            .post(
                "/v1/auth/login",
                json!({"login": "alice", "password": "Wrong-password-1"}),
            )
            .await;
        assert_problem(&wrong, 401, "invalid_credentials");
    }
    sqlx::query("SELECT soft_delete_user($1)")
        .bind(user.id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_problem(&app.login_as(&user).await, 401, "invalid_credentials");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_older_hash_is_upgraded_on_login(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let user = app.register("alice").await;
    let stronger = TestApp::with_config(
        pool,
        &[("ARGON2_MEMORY_KIB", "2048"), ("ARGON2_ITERATIONS", "2")],
    );
    assert_eq!(stronger.login_as(&user).await.status, 200);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&stronger.pool)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=2048,t=2,p=1$"), "{hash}");
    assert_eq!(stronger.login_as(&user).await.status, 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn verified_email_can_be_required(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("REQUIRE_VERIFIED_EMAIL", "true")]);
    let user = app.register("alice").await;
    let status: String = sqlx::query_scalar("SELECT status::text FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "pending_verification");
    assert_problem(&app.login_as(&user).await, 403, "account_disabled");
    let token = app.token_from_mail(&user.email, "verify-email").unwrap();
    let verified = app
        .post("/v1/auth/email/verify", json!({"token": token}))
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.body["status"], "active");
    assert_eq!(verified.body["is_email_verified"], true);
    assert_eq!(app.login_as(&user).await.status, 200);
}
