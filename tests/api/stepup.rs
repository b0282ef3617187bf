//! Checks that cannot be guessed at without limit: the current password of
//! the step-up routes counts toward the login lockout and is rate-limited
//! per user; verification mails are capped per address and kind; password
//! hashes queue for a bounded number of slots.

use axum::http::Method;
use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{STRONG_PASSWORD, TestApp, assert_problem};

const WRONG: &str = "Not-The-Password-1!";

/// (path, method, body with `password` as the current password)
fn step_ups(password: &str) -> [(&'static str, Method, Value); 3] {
    [
        (
            "/v1/users/me/password",
            Method::POST,
            json!({"current_password": password, "new_password": "Another-Strong-Pass-42?"}),
        ),
        (
            "/v1/users/me/email",
            Method::POST,
            json!({"new_email": "elsewhere@example.com", "password": password}),
        ),
        (
            "/v1/users/me",
            Method::DELETE,
            json!({"password": password}),
        ),
    ]
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn wrong_current_passwords_lock_the_account_like_wrong_logins(pool: PgPool) {
    for (i, (path, method, _)) in step_ups(WRONG).into_iter().enumerate() {
        let app = TestApp::with_config(pool.clone(), &[("LOCKOUT_THRESHOLD", "3")]);
        let (user, pair) = app.signed_in(&format!("user{i}")).await;
        let token = pair["access_token"].as_str().unwrap().to_string();
        let wrong = step_ups(WRONG)[i].2.clone();
        for _ in 0..3 {
            let response = app
                .call(method.clone(), path, Some(wrong.clone()), Some(&token))
                .await;
            assert_problem(&response, 401, "invalid_credentials");
        }
        // Locked: even the right password is refused, with Retry-After, and
        // so is a login.
        let right = step_ups(STRONG_PASSWORD)[i].2.clone();
        let locked = app
            .call(method.clone(), path, Some(right), Some(&token))
            .await;
        assert_problem(&locked, 423, "account_locked");
        let retry: u64 = locked.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=15 * 60).contains(&retry), "{retry}");
        assert_problem(&app.login_as(&user).await, 423, "account_locked");
        let warnings: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_logs WHERE user_id = $1 AND action = 'login_failed'
             AND severity = 'warning' AND new_values->>'reason' = 'wrong_current_password'",
        )
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(warnings, 3, "{path}: each failure audited as a warning");
        let locks: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_logs WHERE user_id = $1 AND action = 'account_locked'",
        )
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(locks, 1, "{path}");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_right_current_password_resets_the_count(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("LOCKOUT_THRESHOLD", "3")]);
    let (user, pair) = app.signed_in("alice").await;
    let token = pair["access_token"].as_str().unwrap().to_string();
    let (path, method, wrong) = step_ups(WRONG)[1].clone();
    for _ in 0..2 {
        app.call(method.clone(), path, Some(wrong.clone()), Some(&token))
            .await;
    }
    let right = step_ups(STRONG_PASSWORD)[1].2.clone();
    assert_eq!(
        app.call(method.clone(), path, Some(right), Some(&token))
            .await
            .status,
        202
    );
    let attempts: i32 = sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn step_up_routes_are_rate_limited_per_user(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[
            ("RATE_LIMIT_PASSWORD_CHANGE_PER_MINUTE", "2"),
            ("LOCKOUT_THRESHOLD", "100"),
        ],
    );
    let (_, pair) = app.signed_in("alice").await;
    let token = pair["access_token"].as_str().unwrap().to_string();
    let (path, method, wrong) = step_ups(WRONG)[0].clone();
    for _ in 0..2 {
        let response = app
            .call(method.clone(), path, Some(wrong.clone()), Some(&token))
            .await;
        assert_problem(&response, 401, "invalid_credentials");
    }
    let limited = app.call(method, path, Some(wrong), Some(&token)).await;
    assert_problem(&limited, 429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn verification_mails_are_capped_per_address_and_kind(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "1000")]);
    let (alice, pair) = app.signed_in("alice").await;
    let token = pair["access_token"].as_str().unwrap().to_string();
    let verification_mails = |app: &TestApp| {
        app.mails_to(&alice.email)
            .iter()
            .filter(|m| {
                m["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("verify-email")
            })
            .count()
    };
    assert_eq!(verification_mails(&app), 1, "the registration's");
    for _ in 0..5 {
        let response = app
            .call(Method::POST, "/v1/auth/email/resend", None, Some(&token))
            .await;
        assert_eq!(response.status, 202);
    }
    assert_eq!(
        verification_mails(&app),
        3,
        "3 an hour, the registration's included"
    );
    // A reset mail is another kind: its slots are untouched.
    app.post("/v1/auth/password/forgot", json!({"email": alice.email}))
        .await;
    assert!(
        app.token_from_mail(&alice.email, "reset-password")
            .is_some()
    );

    // The e-mail change cannot bomb someone else's address either.
    let target = "victim@example.com";
    for _ in 0..5 {
        let response = app
            .call(
                Method::POST,
                "/v1/users/me/email",
                Some(json!({"new_email": target, "password": STRONG_PASSWORD})),
                Some(&token),
            )
            .await;
        assert_eq!(response.status, 202, "{}", response.body);
    }
    assert_eq!(app.mails_to(target).len(), 3);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_burst_of_hashes_queues_and_the_overflow_is_503(pool: PgPool) {
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
    let login = json!({"login": "nobody", "password": WRONG});
    let (a, b, c, d) = tokio::join!(
        app.post("/v1/auth/login", login.clone()),
        app.post("/v1/auth/login", login.clone()),
        app.post("/v1/auth/login", login.clone()),
        app.post("/v1/auth/login", login.clone()),
    );
    let answers = [a, b, c, d];
    let busy: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    assert!(!busy.is_empty(), "one slot, four hashes at once");
    for response in &busy {
        assert_problem(response, 503, "unavailable");
        assert!(response.header("retry-after").is_some());
    }
    assert!(
        answers.iter().any(|r| r.status == 401),
        "the one with the slot is served"
    );
}

/// The lockout answers an unknown login as it answers an account: 401 up
/// to the threshold, then 423 with the same Retry-After.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_lockout_does_not_tell_whether_an_account_exists(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "1000")]);
    app.register("alice").await;
    let mut sequences = Vec::new();
    for login in ["alice", "nobody"] {
        let mut answers = Vec::new();
        for _ in 0..7 {
            let response = app
                .post("/v1/auth/login", json!({"login": login, "password": WRONG}))
                .await;
            let retry = response
                .header("retry-after")
                .and_then(|r| r.parse::<u64>().ok())
                .map(|r| r / 60);
            answers.push((
                response.status.as_u16(),
                response.code().map(str::to_owned),
                retry,
            ));
        }
        sequences.push(answers);
    }
    assert_eq!(sequences[0], sequences[1]);
    assert_eq!(sequences[0][5].0, 423, "{:?}", sequences[0]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn refused_changes_with_the_right_password_do_not_lock_the_account(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("LOCKOUT_THRESHOLD", "3")]);
    let (root, pair) = app.signed_in("root").await;
    sqlx::query(
        "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = 'admin'",
    )
    .bind(root.id)
    .execute(&app.pool)
    .await
    .unwrap();
    let token = pair["access_token"].as_str().unwrap().to_string();
    for _ in 0..4 {
        // A new password the rules refuse.
        let weak = json!({"current_password": STRONG_PASSWORD, "new_password": "short"});
        let response = app
            .call(
                Method::POST,
                "/v1/users/me/password",
                Some(weak),
                Some(&token),
            )
            .await;
        assert_problem(&response, 422, "validation_failed");
        // The last `*` holder may not delete their account.
        let delete = json!({"password": STRONG_PASSWORD});
        let response = app
            .call(Method::DELETE, "/v1/users/me", Some(delete), Some(&token))
            .await;
        assert_problem(&response, 409, "conflict");
    }
    assert_eq!(app.login_as(&root).await.status, 200, "not locked");
}
