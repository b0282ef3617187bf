//! The two-step login: TOTP, replay, skew, recovery codes, lockout, `amr`.

use axum::http::Method;
use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{TestApp, assert_problem};

use super::{access_token, amr, code, enrolled, fresh_code, mfa_token};

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_totp_login_takes_two_steps_and_no_code_twice(pool: PgPool) {
    let app = TestApp::new(pool);
    let ada = enrolled(&app, "ada").await;
    assert_eq!(amr(&ada.token), ["mfa", "otp", "pwd"]);

    let first = app.login_as(&ada.user).await;
    assert_eq!(first.body["methods"], json!(["totp", "recovery_code"]));
    assert_eq!(first.body["expires_in"], 300);
    let token = first.body["mfa_token"].as_str().unwrap().to_string();
    let verify = |body| app.post("/v1/auth/mfa/verify", body);

    // The enrolment's code (its step was accepted once) and a code two
    // steps ahead are refused.
    let replayed = verify(json!({"mfa_token": token, "code": code(&ada.secret, 0)})).await;
    assert_problem(&replayed, 401, "invalid_credentials");
    let far = verify(json!({"mfa_token": token, "code": code(&ada.secret, 2)})).await;
    assert_problem(&far, 401, "invalid_credentials");
    // No method field, no two answers at once.
    let both = verify(json!({"mfa_token": token, "code": "123456", "recovery_code": "x"})).await;
    assert_problem(&both, 422, "validation_failed");

    let right = fresh_code(&ada.secret);
    let pair = verify(json!({"mfa_token": token, "code": right})).await;
    assert_eq!(pair.status, 200, "{}", pair.body);
    assert_eq!(amr(&access_token(&pair.body)), ["mfa", "otp", "pwd"]);
    let me = app.get_as("/v1/users/me", &access_token(&pair.body)).await;
    assert_eq!(me.status, 200);

    // The token is spent; the same code in a new login is a replay.
    let again = verify(json!({"mfa_token": token, "code": right})).await;
    assert_problem(&again, 401, "mfa_token_invalid");
    let second = mfa_token(&app, &ada.user).await;
    let replay = verify(json!({"mfa_token": second, "code": right})).await;
    assert_problem(&replay, 401, "invalid_credentials");

    // A refresh keeps the session's amr.
    let refreshed = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": pair.body["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(amr(&access_token(&refreshed.body)), ["mfa", "otp", "pwd"]);

    // Wrong codes are audited as failed logins of the account.
    let failures: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE user_id = $1 AND action = 'login_failed'
         AND severity = 'warning' AND new_values->>'reason' = 'wrong_second_factor'",
    )
    .bind(ada.user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(failures, 3);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_password_alone_gives_amr_pwd(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, pair) = app.signed_in("plain").await;
    assert_eq!(amr(&access_token(&pair)), ["pwd"]);
    assert!(pair.get("mfa_required").is_none());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_recovery_code_works_once(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "1000")]);
    let ada = enrolled(&app, "ada").await;
    assert_eq!(ada.recovery_codes.len(), 10);
    for (i, recovery_code) in ada.recovery_codes.iter().enumerate() {
        let token = mfa_token(&app, &ada.user).await;
        // Typed sloppily: lower case, spaces for dashes.
        let typed = recovery_code.to_lowercase().replace('-', " ");
        let pair = app
            .post(
                "/v1/auth/mfa/verify",
                json!({"mfa_token": token, "recovery_code": typed}),
            )
            .await;
        assert_eq!(pair.status, 200, "code {i}: {}", pair.body);
        assert_eq!(amr(&access_token(&pair.body)), ["mfa", "otp", "pwd"]);
    }
    let token = mfa_token(&app, &ada.user).await;
    let reused = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": token, "recovery_code": ada.recovery_codes[0]}),
        )
        .await;
    assert_problem(&reused, 401, "invalid_credentials");
    let login = app.login_as(&ada.user).await;
    assert_eq!(login.body["methods"], json!(["totp"]), "none left");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn wrong_codes_lock_the_account_and_a_password_does_not_reset_the_count(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("LOCKOUT_THRESHOLD", "3")]);
    let ada = enrolled(&app, "ada").await;
    let attempts = || async {
        sqlx::query_scalar::<_, i32>("SELECT failed_login_attempts FROM users WHERE id = $1")
            .bind(ada.user.id)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let wrong = |token: String| {
        app.post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": token, "code": "000000"}),
        )
    };
    let token = mfa_token(&app, &ada.user).await;
    assert_problem(&wrong(token.clone()).await, 401, "invalid_credentials");
    assert_problem(&wrong(token).await, 401, "invalid_credentials");
    assert_eq!(attempts().await, 2);
    // The right password again: its own attempt does not count, but the
    // wrong codes before it still do (codes cannot be guessed in rounds).
    let token = mfa_token(&app, &ada.user).await;
    assert_eq!(attempts().await, 2);
    assert_problem(&wrong(token.clone()).await, 401, "invalid_credentials");
    // Locked: the right code and the right password both get 423.
    let locked = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": token, "code": fresh_code(&ada.secret)}),
        )
        .await;
    assert_problem(&locked, 423, "account_locked");
    assert!(locked.header("retry-after").is_some());
    assert_problem(&app.login_as(&ada.user).await, 423, "account_locked");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_right_second_factor_clears_the_count(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("LOCKOUT_THRESHOLD", "3")]);
    let ada = enrolled(&app, "ada").await;
    let token = mfa_token(&app, &ada.user).await;
    let wrong = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": token, "code": "000000"}),
        )
        .await;
    assert_problem(&wrong, 401, "invalid_credentials");
    let right = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": token, "code": fresh_code(&ada.secret)}),
        )
        .await;
    assert_eq!(right.status, 200, "{}", right.body);
    let attempts: i32 = sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE id = $1")
        .bind(ada.user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_mfa_token_dies_with_a_password_change_and_is_bound_to_its_login(pool: PgPool) {
    let app = TestApp::new(pool);
    let ada = enrolled(&app, "ada").await;
    let token = mfa_token(&app, &ada.user).await;
    // The password changes (a reset elsewhere) after the token was issued.
    sqlx::query("UPDATE users SET password_hash = password_hash || 'x' WHERE id = $1")
        .bind(ada.user.id)
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET password_hash = left(password_hash, -1) WHERE id = $1")
        .bind(ada.user.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let dead = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": token, "code": fresh_code(&ada.secret)}),
        )
        .await;
    assert_problem(&dead, 401, "mfa_token_invalid");
    let unknown = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": "not-a-token", "code": "123456"}),
        )
        .await;
    assert_problem(&unknown, 401, "mfa_token_invalid");
    // A newer login supersedes an older pending token.
    let older = mfa_token(&app, &ada.user).await;
    let newer = mfa_token(&app, &ada.user).await;
    let stale = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": older, "code": fresh_code(&ada.secret)}),
        )
        .await;
    assert_problem(&stale, 401, "mfa_token_invalid");
    let fresh = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": newer, "code": fresh_code(&ada.secret)}),
        )
        .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn one_code_sent_twice_at_once_logs_in_once(pool: PgPool) {
    let app = TestApp::new(pool);
    let ada = enrolled(&app, "ada").await;
    // Two logins (the second supersedes the first's token, so use two
    // users' worth of tokens: one login, the same code on two requests).
    let token = mfa_token(&app, &ada.user).await;
    let code = fresh_code(&ada.secret);
    let body = json!({"mfa_token": token, "code": code});
    let (a, b) = tokio::join!(
        app.call(
            Method::POST,
            "/v1/auth/mfa/verify",
            Some(body.clone()),
            None
        ),
        app.call(Method::POST, "/v1/auth/mfa/verify", Some(body), None)
    );
    let statuses = [a.status.as_u16(), b.status.as_u16()];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}: {} / {}",
        a.body,
        b.body
    );
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT session_id) FROM refresh_tokens WHERE user_id = $1 AND 'mfa' = ANY(amr)",
    )
    .bind(ada.user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(sessions, 2, "the enrolling session and one login");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn each_lock_from_wrong_codes_lasts_twice_as_long_and_the_owner_is_told(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[("LOCKOUT_THRESHOLD", "2"), ("LOCKOUT_MINUTES", "1")],
    );
    let ada = enrolled(&app, "ada").await;
    let lock_minutes = || async {
        let seconds: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM locked_until - now())::float8 FROM users WHERE id = $1",
        )
        .bind(ada.user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (seconds / 60.0).round() as i64
    };
    let expire_lock = || async {
        sqlx::query("UPDATE users SET locked_until = now() - interval '1 second' WHERE id = $1")
            .bind(ada.user.id)
            .execute(&app.pool)
            .await
            .unwrap();
    };
    for (round, expected) in [1, 2, 4].into_iter().enumerate() {
        let token = mfa_token(&app, &ada.user).await;
        let wrong = app
            .post(
                "/v1/auth/mfa/verify",
                json!({"mfa_token": token, "code": "000000"}),
            )
            .await;
        assert_problem(&wrong, 401, "invalid_credentials");
        // The lock may come from a wrong code or (round 2) a wrong
        // password: either way it lasts longer each time.
        let last = if round == 1 {
            let body = json!({"login": ada.user.username, "password": "Not-The-Password-1!"});
            app.post("/v1/auth/login", body).await
        } else {
            let body = json!({"mfa_token": token, "code": "000000"});
            app.post("/v1/auth/mfa/verify", body).await
        };
        assert_problem(&last, 401, "invalid_credentials");
        assert_eq!(lock_minutes().await, expected);
        // The lock ends, which would reset the login count; the second
        // factor's count goes on.
        expire_lock().await;
    }
    let told = app
        .mails_to(&ada.user.email)
        .iter()
        .filter(|m| m["subject"] == "Failed sign-in with your password")
        .count();
    assert_eq!(told, 3);
    // A right second factor starts the count again.
    let token = mfa_token(&app, &ada.user).await;
    let right = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": token, "code": fresh_code(&ada.secret)}),
        )
        .await;
    assert_eq!(right.status, 200, "{}", right.body);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM mfa_failures WHERE user_id = $1")
        .bind(ada.user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}
