//! The auth group: password reset.

#[allow(unused_imports)]
use super::*;

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
