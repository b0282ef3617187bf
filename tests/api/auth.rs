//! The auth group of the API (docs/api.md) through the router, on real PostgreSQL
//! (and Redis where a test says so).

use axum::http::Method;
use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{STRONG_PASSWORD, TestApp, assert_problem};
use uuid::Uuid;

const REDIS: (&str, &str) = ("REDIS_URL", "redis://127.0.0.1:6379");

fn bearer(pair: &Value) -> String {
    pair["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn refresh_token(pair: &Value) -> String {
    pair["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    // email/resend is the auth group's bearer-protected route.
    app.call(Method::POST, "/v1/auth/email/resend", None, Some(token))
        .await
        .status
        .as_u16()
}

// ------------------------------------------------------------ registration

#[sqlx::test(migrator = "MIGRATOR")]
async fn register_creates_an_active_unverified_user(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app
        .post(
            "/v1/auth/register",
            json!({"username": "Alice", "email": "  Alice@Example.com ", "password": STRONG_PASSWORD,
                   "first_name": "Alice", "gdpr_consent": true}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let id = response.body["id"].as_str().unwrap();
    assert_eq!(
        response.header("location"),
        Some(format!("/v1/users/{id}").as_str())
    );
    assert_eq!(response.body["email"], "alice@example.com");
    assert_eq!(response.body["username"], "Alice");
    assert_eq!(response.body["status"], "active");
    assert_eq!(response.body["is_email_verified"], false);
    assert_eq!(response.body["roles"], json!([]));
    assert!(response.body.get("password_hash").is_none());
    let consent: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT gdpr_consent_at FROM users WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(consent.is_some());
    // The verification mail follows the API's outbox format.
    let mails = app.mails_to("alice@example.com");
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail["subject"].as_str().is_some());
    assert!(
        mail["text"]
            .as_str()
            .unwrap()
            .contains("verify-email?token=")
    );
    // The audit row of the registration carries the request id.
    let request_id: Option<String> = sqlx::query_scalar(
        "SELECT request_id FROM audit_logs WHERE action = 'user_registered' AND entity_id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(request_id.as_deref(), response.header("x-request-id"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn register_names_every_broken_field(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app
        .post(
            "/v1/auth/register",
            json!({"username": "a b", "email": "nope", "password": "short", "first_name": "x".repeat(101)}),
        )
        .await;
    assert_problem(&response, 422, "validation_failed");
    let fields: Vec<&str> = response.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["username", "email", "password", "first_name"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn guessable_passwords_are_refused(pool: PgPool) {
    let app = TestApp::new(pool);
    for password in ["Password1!", "Qwerty123!", "alice1234A!"] {
        let response = app
            .post(
                "/v1/auth/register",
                json!({"username": "alice1234", "email": "alice@example.com", "password": password}),
            )
            .await;
        assert_problem(&response, 422, "validation_failed");
        assert_eq!(
            response.body["errors"][0]["field"], "password",
            "{password}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_composition_rule_matches_the_sql_function(pool: PgPool) {
    let cases = [
        "Abcdef1!",
        "Abcde1!",
        "abcdef1!",
        "ABCDEF1!",
        "Abcdefg!",
        "Abcdefg1",
        "Ab1 defgh",
        "Pässwörd1",
        "日本語Aa1!xx",
        "",
    ];
    let long = format!("Aa1!{}", "x".repeat(125));
    for case in cases.iter().copied().chain([long.as_str()]) {
        let sql: bool = sqlx::query_scalar("SELECT is_strong_password($1)")
            .bind(case)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            shared::domain::password::meets_composition_rule(case),
            sql,
            "{case:?}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn taken_emails_and_usernames_conflict_in_any_case(pool: PgPool) {
    let app = TestApp::new(pool);
    app.register("alice").await;
    let response = app
        .post(
            "/v1/auth/register",
            json!({"username": "alice2", "email": "ALICE@example.com", "password": STRONG_PASSWORD}),
        )
        .await;
    assert_problem(&response, 409, "email_taken");
    let response = app
        .post(
            "/v1/auth/register",
            json!({"username": "ALICE", "email": "other@example.com", "password": STRONG_PASSWORD}),
        )
        .await;
    assert_problem(&response, 409, "username_taken");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn ten_concurrent_registrations_of_one_email_create_one_user(pool: PgPool) {
    let app = TestApp::new(pool);
    let attempts = (0..10).map(|i| {
        let email = if i % 2 == 0 {
            "race@example.com".to_string()
        } else {
            format!("RACE@Example.com{}", "")
        };
        app.post(
            "/v1/auth/register",
            json!({"username": format!("racer{i}"), "email": email, "password": STRONG_PASSWORD}),
        )
    });
    let responses = futures::future::join_all(attempts).await;
    let created = responses.iter().filter(|r| r.status == 201).count();
    let conflicts = responses
        .iter()
        .filter(|r| r.code() == Some("email_taken"))
        .count();
    assert_eq!((created, conflicts), (1, 9));
}

// ------------------------------------------------------------------ login

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

// ---------------------------------------------------------------- refresh

#[sqlx::test(migrator = "MIGRATOR")]
async fn refresh_rotates_the_token_within_the_session(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    let first = refresh_token(&pair);
    let response = app
        .post("/v1/auth/refresh", json!({"refresh_token": first}))
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let second = refresh_token(&response.body);
    assert_ne!(first, second);
    let old_sid = app.state.keys.verify(&bearer(&pair)).unwrap().sid;
    let new_sid = app.state.keys.verify(&bearer(&response.body)).unwrap().sid;
    assert_eq!(old_sid, new_sid);
    let row: (Option<chrono::DateTime<chrono::Utc>>, Option<Uuid>) =
        sqlx::query_as("SELECT revoked_at, replaced_by FROM refresh_tokens WHERE token_hash = $1")
            .bind(shared::security::opaque::hash(&first))
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(row.0.is_some() && row.1.is_some());
    // Only hashes are stored.
    let raw: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE token_hash IN ($1, $2)")
            .bind(&first)
            .bind(&second)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(raw, 0);
    assert_eq!(me_status(&app, &bearer(&response.body)).await, 202);
    let _ = user;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn of_twenty_concurrent_refreshes_exactly_one_wins(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "1000")]);
    let (_, pair) = app.signed_in("alice").await;
    let token = refresh_token(&pair);
    let attempts = (0..20).map(|_| app.post("/v1/auth/refresh", json!({"refresh_token": token})));
    let responses = futures::future::join_all(attempts).await;
    let winners: Vec<_> = responses.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1);
    assert!(
        responses
            .iter()
            .filter(|r| r.status != 200)
            .all(|r| r.code() == Some("refresh_token_invalid")),
        "losers of the race are told the token is invalid, not reused"
    );
    // The session lives on: the winner's token refreshes again.
    let next = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token(&winners[0].body)}),
        )
        .await;
    assert_eq!(next.status, 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_rotated_token_presented_after_the_grace_window_revokes_the_session(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]);
    let (user, pair) = app.signed_in("alice").await;
    let stolen = refresh_token(&pair);
    let rotated = app
        .post("/v1/auth/refresh", json!({"refresh_token": stolen}))
        .await;
    assert_eq!(rotated.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let reuse = app
        .post("/v1/auth/refresh", json!({"refresh_token": stolen}))
        .await;
    assert_problem(&reuse, 401, "refresh_token_reused");
    // Every token of the session is revoked, and its access tokens fail.
    let legit = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token(&rotated.body)}),
        )
        .await;
    assert_problem(&legit, 401, "refresh_token_invalid");
    assert_eq!(me_status(&app, &bearer(&rotated.body)).await, 401);
    let severity: String = sqlx::query_scalar(
        "SELECT severity FROM audit_logs WHERE action = 'refresh_token_reused' AND user_id = $1",
    )
    .bind(user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(severity, "warning");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_rotated_token_within_the_grace_window_is_a_lost_race(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, pair) = app.signed_in("alice").await;
    let token = refresh_token(&pair);
    let rotated = app
        .post("/v1/auth/refresh", json!({"refresh_token": token}))
        .await;
    let again = app
        .post("/v1/auth/refresh", json!({"refresh_token": token}))
        .await;
    assert_problem(&again, 401, "refresh_token_invalid");
    let next = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token(&rotated.body)}),
        )
        .await;
    assert_eq!(next.status, 200, "the session must survive a client race");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sessions_end_at_their_absolute_lifetime(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, pair) = app.signed_in("alice").await;
    sqlx::query("UPDATE refresh_tokens SET session_expires_at = now() - interval '1 second', created_at = now() - interval '31 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    let response = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token(&pair)}),
        )
        .await;
    assert_problem(&response, 401, "refresh_token_invalid");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn rotation_never_extends_the_session(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[("SESSION_MAX_DAYS", "10"), ("REFRESH_TOKEN_TTL_DAYS", "14")],
    );
    let (_, pair) = app.signed_in("alice").await;
    assert!(pair["refresh_expires_in"].as_i64().unwrap() <= 10 * 86_400);
    let rotated = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token(&pair)}),
        )
        .await;
    let (expires, session_expires): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT expires_at, session_expires_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(shared::security::opaque::hash(&refresh_token(
            &rotated.body,
        )))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(expires <= session_expires);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_refresh_from_another_device_is_refused(pool: PgPool) {
    let app = TestApp::new(pool);
    let user = app.register("alice").await;
    let pair = app
        .post(
            "/v1/auth/login",
            json!({"login": "alice", "password": user.password, "device_fingerprint": "laptop"}),
        )
        .await
        .body;
    let token = refresh_token(&pair);
    for other in [
        json!({"refresh_token": token, "device_fingerprint": "phone"}),
        json!({"refresh_token": token}),
    ] {
        assert_problem(
            &app.post("/v1/auth/refresh", other).await,
            401,
            "refresh_token_invalid",
        );
    }
    let same = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": token, "device_fingerprint": "laptop"}),
        )
        .await;
    assert_eq!(same.status, 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unknown_refresh_tokens_are_invalid(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app
        .post("/v1/auth/refresh", json!({"refresh_token": "not-a-token"}))
        .await;
    assert_problem(&response, 401, "refresh_token_invalid");
}

// ----------------------------------------------------------------- logout

async fn logout_revokes_access_at_once(app: TestApp) {
    let (_, pair) = app.signed_in("alice").await;
    let access = bearer(&pair);
    assert_eq!(me_status(&app, &access).await, 202);
    let body = json!({"refresh_token": refresh_token(&pair)});
    assert_eq!(app.post("/v1/auth/logout", body.clone()).await.status, 204);
    assert_eq!(
        app.post("/v1/auth/logout", body.clone()).await.status,
        204,
        "idempotent"
    );
    assert_eq!(me_status(&app, &access).await, 401);
    assert_problem(
        &app.post("/v1/auth/refresh", body).await,
        401,
        "refresh_token_invalid",
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn logout_revokes_access_at_once_with_postgres(pool: PgPool) {
    logout_revokes_access_at_once(TestApp::new(pool)).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn logout_revokes_access_at_once_with_redis(pool: PgPool) {
    logout_revokes_access_at_once(TestApp::with_config(pool, &[REDIS])).await;
}

/// A Redis server of the test's own, on a free port, that it can stop and start.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start_on(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self {
            port,
            child: Some(child),
        }
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        Self::start_on(port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_logout_during_a_redis_outage_holds_after_it(pool: PgPool) {
    let mut redis = OwnRedis::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = TestApp::with_config(pool, &[("REDIS_URL", &url)]);
    let (_, pair) = app.signed_in("alice").await;
    let access = bearer(&pair);
    assert_eq!(me_status(&app, &access).await, 202);

    redis.stop();
    let logout = app
        .post(
            "/v1/auth/logout",
            json!({"refresh_token": refresh_token(&pair)}),
        )
        .await;
    assert_eq!(logout.status, 204);
    assert_eq!(
        me_status(&app, &access).await,
        401,
        "refused during the outage"
    );

    let port = redis.port;
    let _redis = OwnRedis::start_on(port);
    assert!(
        app.state.cache.as_ref().unwrap().ping().await || {
            // The connection manager reconnects on its own; give it a moment.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            app.state.cache.as_ref().unwrap().ping().await
        }
    );
    assert_eq!(
        me_status(&app, &access).await,
        401,
        "still refused once Redis is back (it never heard of the logout)"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn logout_of_all_sessions_ends_every_session(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, first) = app.signed_in("alice").await;
    let second = app.login_as(&user).await.body;
    let response = app
        .post(
            "/v1/auth/logout",
            json!({"refresh_token": refresh_token(&first), "all_sessions": true}),
        )
        .await;
    assert_eq!(response.status, 204);
    assert_eq!(me_status(&app, &bearer(&second)).await, 401);
    assert_eq!(me_status(&app, &bearer(&first)).await, 401);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn logout_with_an_unknown_token_is_still_204(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app
        .post("/v1/auth/logout", json!({"refresh_token": "whatever"}))
        .await;
    assert_eq!(response.status, 204);
}

// --------------------------------------------------------- password reset

#[sqlx::test(migrator = "MIGRATOR")]
async fn forgot_password_always_answers_202_and_caps_mails(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "100")]);
    let user = app.register("alice").await;
    let unknown = app
        .post(
            "/v1/auth/password/forgot",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(unknown.status, 202);
    assert!(app.mails_to("nobody@example.com").is_empty());
    for _ in 0..5 {
        let response = app
            .post(
                "/v1/auth/password/forgot",
                json!({"email": "ALICE@example.com"}),
            )
            .await;
        assert_eq!(response.status, 202);
    }
    let resets = app
        .mails_to(&user.email)
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .unwrap_or("")
                .contains("reset-password?token=")
        })
        .count();
    assert_eq!(resets, 3, "at most 3 reset mails per address per hour");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_reset_token_sets_the_password_once_and_ends_every_session(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    // Lock the account first: a reset clears the lockout.
    sqlx::query("UPDATE users SET failed_login_attempts = 5, locked_until = now() + interval '10 minutes' WHERE id = $1")
        .bind(user.id)
        .execute(&app.pool)
        .await
        .unwrap();
    app.post("/v1/auth/password/forgot", json!({"email": user.email}))
        .await;
    let token = app.token_from_mail(&user.email, "reset-password").unwrap();

    let weak = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": token, "new_password": "Password1!"}),
        )
        .await;
    assert_problem(&weak, 422, "validation_failed");
    assert_eq!(weak.body["errors"][0]["field"], "new_password");

    let new_password = "Another-Strong-Pass-42?";
    let reset = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": token, "new_password": new_password}),
        )
        .await;
    assert_eq!(reset.status, 204, "{}", reset.body);
    assert_eq!(me_status(&app, &bearer(&pair)).await, 401);
    let again = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": token, "new_password": new_password}),
        )
        .await;
    assert_problem(&again, 400, "invalid_token");

    assert_problem(&app.login_as(&user).await, 401, "invalid_credentials");
    let login = app
        .post(
            "/v1/auth/login",
            json!({"login": "alice", "password": new_password}),
        )
        .await;
    assert_eq!(login.status, 200);
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action::text FROM audit_logs WHERE user_id = $1 AND action IN ('password_reset_requested', 'password_reset_completed', 'password_changed') ORDER BY id",
    )
    .bind(user.id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "password_reset_requested",
            "password_changed",
            "password_reset_completed"
        ]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn expired_and_unknown_reset_tokens_are_invalid(pool: PgPool) {
    let app = TestApp::new(pool);
    let user = app.register("alice").await;
    app.post("/v1/auth/password/forgot", json!({"email": user.email}))
        .await;
    let token = app.token_from_mail(&user.email, "reset-password").unwrap();
    sqlx::query("UPDATE password_reset_tokens SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    for token in [token.as_str(), "unknown"] {
        let response = app
            .post(
                "/v1/auth/password/reset",
                json!({"token": token, "new_password": "Another-Strong-Pass-42?"}),
            )
            .await;
        assert_problem(&response, 400, "invalid_token");
    }
}

// ------------------------------------------------------ e-mail verification

#[sqlx::test(migrator = "MIGRATOR")]
async fn verification_tokens_work_once(pool: PgPool) {
    let app = TestApp::new(pool);
    let user = app.register("alice").await;
    let token = app.token_from_mail(&user.email, "verify-email").unwrap();
    let response = app
        .post("/v1/auth/email/verify", json!({"token": token}))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["is_email_verified"], true);
    let again = app
        .post("/v1/auth/email/verify", json!({"token": token}))
        .await;
    assert_problem(&again, 400, "invalid_token");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE action = 'email_verified' AND user_id = $1",
    )
    .bind(user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn resend_needs_a_bearer_token_and_sends_a_new_mail(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app
        .call(Method::POST, "/v1/auth/email/resend", None, None)
        .await;
    assert_problem(&response, 401, "unauthorized");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let (user, pair) = app.signed_in("alice").await;
    assert_eq!(me_status(&app, &bearer(&pair)).await, 202);
    assert_eq!(app.mails_to(&user.email).len(), 2);
}

// ------------------------------------------------------------ rate limits

async fn login_is_rate_limited(app: TestApp) {
    let body = json!({"login": "nobody", "password": "Wrong-password-1"});
    for _ in 0..3 {
        assert_eq!(app.post("/v1/auth/login", body.clone()).await.status, 401);
    }
    let limited = app.post("/v1/auth/login", body).await;
    assert_problem(&limited, 429, "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn login_is_rate_limited_in_postgres(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "3")]);
    login_is_rate_limited(app).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn limits_are_configurable_per_endpoint(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[
            ("RATE_LIMIT_PER_MINUTE", "100"),
            ("RATE_LIMIT_LOGIN_PER_MINUTE", "3"),
        ],
    );
    login_is_rate_limited(app).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn login_is_rate_limited_in_redis(pool: PgPool) {
    let app = TestApp::with_config(pool.clone(), &[("RATE_LIMIT_PER_MINUTE", "3"), REDIS]);
    login_is_rate_limited(app).await;
    // (An unknown login's attempt counter stays in PostgreSQL: it is the
    // write a known account's attempt makes there, so both take as long.)
    let in_postgres: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rate_limits WHERE endpoint <> 'login-unknown'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(in_postgres, 0, "with Redis up, PostgreSQL is not used");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn with_redis_down_limits_and_revocation_fall_back_to_postgres(pool: PgPool) {
    let app = TestApp::with_config(
        pool.clone(),
        &[
            ("RATE_LIMIT_PER_MINUTE", "3"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ],
    );
    login_is_rate_limited(app).await;
    let app = TestApp::with_config(pool, &[("REDIS_URL", "redis://127.0.0.1:1")]);
    logout_revokes_access_at_once(app).await;
}

// ------------------------------------------------------------ access tokens

#[sqlx::test(migrator = "MIGRATOR")]
async fn tampered_tokens_are_refused(pool: PgPool) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    let token = bearer(&pair);
    let parts: Vec<&str> = token.split('.').collect();
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();

    let with_claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        edit(&mut c);
        format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2])
    };
    let other_user = with_claims(&|c| c["sub"] = json!(Uuid::new_v4()));
    let alg_none = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        parts[1]
    );
    // HS256 signed with the public key as the HMAC secret.
    let jwks = app.get("/.well-known/jwks.json").await.body;
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(jwks["keys"][0]["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    let sign = |c: Value, kid: Option<&str>| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(tests::test_key_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &c, &key).unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 3600);
    expired["exp"] = json!(now - 1800);
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("another-api");
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("https://evil.example.com");

    let cases = [
        ("payload edited", other_user),
        ("alg none", alg_none),
        ("HS256 with the public key", hs256),
        ("expired", sign(expired, Some(&kid))),
        ("wrong aud", sign(wrong_aud, Some(&kid))),
        ("wrong iss", sign(wrong_iss, Some(&kid))),
        ("unknown kid", sign(claims.clone(), Some("unknown"))),
        ("no kid", sign(claims.clone(), None)),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (name, token) in cases {
        let response = app
            .call(Method::POST, "/v1/auth/email/resend", None, Some(&token))
            .await;
        assert_eq!(response.status, 401, "{name}: {}", response.body);
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{name}"
        );
    }
    // The untampered token still works, re-signed by the same key.
    assert_eq!(me_status(&app, &sign(claims, Some(&kid))).await, 202);
    let _ = user;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_suspended_users_tokens_are_refused_at_once(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    sqlx::query("UPDATE users SET status = 'suspended' WHERE id = $1")
        .bind(user.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let response = app
        .call(
            Method::POST,
            "/v1/auth/email/resend",
            None,
            Some(&bearer(&pair)),
        )
        .await;
    assert_problem(&response, 403, "account_disabled");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn rotated_keys_keep_old_tokens_valid_and_sign_with_the_newest(pool: PgPool) {
    let old_app = TestApp::new(pool.clone());
    let (_, pair) = old_app.signed_in("alice").await;
    let new_key = shared::security::jwt::generate_private_key_pem().unwrap();
    let both = format!(
        "{}{}",
        tests::test_key_pem(),
        secrecy::ExposeSecret::expose_secret(&new_key)
    );
    let app = TestApp::with_config(pool, &[("JWT_PRIVATE_KEY_PEM", &both)]);
    let jwks = app.get("/.well-known/jwks.json").await.body;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(
        me_status(&app, &bearer(&pair)).await,
        202,
        "old key still accepted"
    );
    let fresh = app
        .post(
            "/v1/auth/login",
            json!({"login": "alice", "password": STRONG_PASSWORD}),
        )
        .await
        .body;
    let header = jsonwebtoken::decode_header(bearer(&fresh)).unwrap();
    assert_eq!(header.kid.as_deref(), Some(kids[1]));
    // A key that is no longer published no longer verifies.
    let only_new = secrecy::ExposeSecret::expose_secret(&new_key).to_string();
    let rotated = TestApp::with_config(old_app.pool.clone(), &[("JWT_PRIVATE_KEY_PEM", &only_new)]);
    assert_eq!(me_status(&rotated, &bearer(&pair)).await, 401);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn discovery_documents_publish_the_keys(pool: PgPool) {
    let app = TestApp::new(pool);
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    let key = &jwks.body["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert!(key["kid"].is_string() && key["n"].is_string() && key["e"] == "AQAB");
    assert!(key.get("d").is_none(), "no private part is published");
    let oidc = app.get("/.well-known/openid-configuration").await;
    assert_eq!(oidc.body["issuer"], "http://127.0.0.1:3000");
    assert_eq!(
        oidc.body["jwks_uri"],
        "http://127.0.0.1:3000/.well-known/jwks.json"
    );
}

// -------------------------------------------------------------- body rules

#[sqlx::test(migrator = "MIGRATOR")]
async fn bodies_follow_the_contracts_json_rules(pool: PgPool) {
    use axum::body::Body;
    use axum::http::Request;
    let app = TestApp::new(pool);
    let raw = |content_type: Option<&str>, body: String| {
        let mut builder = Request::builder().method("POST").uri("/v1/auth/login");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(Body::from(body)).unwrap()
    };
    let malformed = app
        .send(raw(Some("application/json"), "{\"login\": ".into()))
        .await;
    assert_problem(&malformed, 400, "malformed_json");
    let no_type = app.send(raw(None, "{}".into())).await;
    assert_problem(&no_type, 415, "unsupported_media_type");
    let text = app.send(raw(Some("text/plain"), "{}".into())).await;
    assert_problem(&text, 415, "unsupported_media_type");
    let big = format!(
        "{{\"login\": \"{}\", \"password\": \"x\"}}",
        "a".repeat(17 * 1024)
    );
    let too_large = app.send(raw(Some("application/json"), big)).await;
    assert_problem(&too_large, 413, "payload_too_large");
    let unknown = app
        .post(
            "/v1/auth/login",
            json!({"login": "a", "password": "b", "pasword": "c"}),
        )
        .await;
    assert_problem(&unknown, 422, "validation_failed");
    assert_eq!(unknown.body["errors"][0]["field"], "pasword");
    let wrong_type = app
        .post("/v1/auth/login", json!({"login": 42, "password": "b"}))
        .await;
    assert_problem(&wrong_type, 422, "validation_failed");
    assert_eq!(wrong_type.body["errors"][0]["field"], "login");
    let get = app.get("/v1/auth/login").await;
    assert_problem(&get, 405, "method_not_allowed");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn no_response_or_audit_row_carries_secrets(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    let refreshed = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token(&pair)}),
        )
        .await;
    app.post("/v1/auth/password/forgot", json!({"email": user.email}))
        .await;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let bodies = format!("{} {}", pair, refreshed.body);
    assert!(!bodies.contains(&hash));
    assert!(!bodies.contains(STRONG_PASSWORD));
    assert!(!bodies.contains("password_hash"));
    let trail: String = sqlx::query_scalar("SELECT string_agg(a::text, ' ') FROM audit_logs a")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let reset_token = app.token_from_mail(&user.email, "reset-password").unwrap();
    for secret in [
        STRONG_PASSWORD,
        hash.as_str(),
        &refresh_token(&pair),
        &bearer(&pair),
        &reset_token,
        &user.email,
    ] {
        assert!(!trail.contains(secret), "the audit trail holds a secret");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_body_missing_several_fields_names_each(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app.post("/v1/auth/register", json!({})).await;
    assert_problem(&response, 422, "validation_failed");
    let fields: Vec<&str> = response.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "email", "password"]);
}
