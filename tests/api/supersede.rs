//! What supersedes what: a suspension ends sessions for good, a spent
//! refresh token ends nothing, and one-time tokens die when a newer token,
//! a completed reset, a password change or an e-mail change supersedes them.
//! Each case: issue A, supersede it, use A → refused, state unchanged.

use axum::http::Method;
use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{STRONG_PASSWORD, TestApp, TestUser, assert_problem};

const NEW_PASSWORD: &str = "Another-Strong-Pass-42?";

fn access(pair: &Value) -> String {
    pair["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn refresh(pair: &Value) -> String {
    pair["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn me(app: &TestApp, token: &str) -> u16 {
    app.get_as("/v1/users/me", token).await.status.as_u16()
}

// ---------------------------------------------------------------- sessions

#[sqlx::test(migrator = "MIGRATOR")]
async fn suspension_ends_every_session_for_good(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, admin) = app.user_with("admin", &["users:write"]).await;
    let (alice, pair) = app.signed_in("alice").await;
    let path = format!("/v1/admin/users/{}", alice.id);
    for status in ["suspended", "active"] {
        let response = app
            .call(
                Method::PATCH,
                &path,
                Some(json!({"status": status})),
                Some(&admin),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
        if status == "suspended" {
            // Status is checked before revocation: the old token says why.
            assert_problem(
                &app.get_as("/v1/users/me", &access(&pair)).await,
                403,
                "account_disabled",
            );
        }
    }
    // Reactivated: the old tokens stay dead, the user logs in again.
    assert_eq!(me(&app, &access(&pair)).await, 401);
    assert_problem(
        &app.post("/v1/auth/refresh", json!({"refresh_token": refresh(&pair)}))
            .await,
        401,
        "refresh_token_invalid",
    );
    let again = app.login_as(&alice).await;
    assert_eq!(again.status, 200);
    assert_eq!(me(&app, &access(&again.body)).await, 200);
    let live: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT session_id) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(alice.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(live, 1, "only the new session lives");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn logout_of_all_sessions_with_a_spent_token_ends_nothing(pool: PgPool) {
    let app = TestApp::new(pool);
    let (alice, first) = app.signed_in("alice").await;
    let second = app.login_as(&alice).await.body;
    let rotated = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh(&first)}),
        )
        .await
        .body;
    // The first token is spent (rotated): as a credential it is worth nothing.
    let logout = app
        .post(
            "/v1/auth/logout",
            json!({"refresh_token": refresh(&first), "all_sessions": true}),
        )
        .await;
    assert_eq!(logout.status, 204);
    assert_eq!(me(&app, &access(&second)).await, 200);
    assert_eq!(me(&app, &access(&rotated)).await, 200);
    // The live token ends them all.
    let logout = app
        .post(
            "/v1/auth/logout",
            json!({"refresh_token": refresh(&rotated), "all_sessions": true}),
        )
        .await;
    assert_eq!(logout.status, 204);
    assert_eq!(me(&app, &access(&second)).await, 401);
    assert_eq!(me(&app, &access(&rotated)).await, 401);
}

// -------------------------------------------------------------- reset tokens

async fn forgot(app: &TestApp, user: &TestUser) -> String {
    let response = app
        .post("/v1/auth/password/forgot", json!({"email": user.email}))
        .await;
    assert_eq!(response.status, 202);
    app.token_from_mail(&user.email, "reset-password")
        .expect("a reset mail")
}

async fn reset(app: &TestApp, token: &str) -> tests::TestResponse {
    app.post(
        "/v1/auth/password/reset",
        json!({"token": token, "new_password": NEW_PASSWORD}),
    )
    .await
}

async fn hash_of(app: &TestApp, user: &TestUser) -> String {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_newer_reset_token_supersedes_the_older(pool: PgPool) {
    let app = TestApp::new(pool);
    let alice = app.register("alice").await;
    let a = forgot(&app, &alice).await;
    let b = forgot(&app, &alice).await;
    assert_ne!(a, b);
    let before = hash_of(&app, &alice).await;
    assert_problem(&reset(&app, &a).await, 400, "invalid_token");
    assert_eq!(hash_of(&app, &alice).await, before, "state unchanged");
    assert_eq!(reset(&app, &b).await.status, 204);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_admins_reset_mail_supersedes_the_users_own(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, admin) = app.user_with("admin", &["users:write"]).await;
    let alice = app.register("alice").await;
    let a = forgot(&app, &alice).await;
    let sent = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/password-reset", alice.id),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(sent.status, 202);
    assert_problem(&reset(&app, &a).await, 400, "invalid_token");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_completed_reset_ends_every_other_reset_token(pool: PgPool) {
    let app = TestApp::new(pool);
    let alice = app.register("alice").await;
    let a = forgot(&app, &alice).await;
    // A second outstanding token, as issued before tokens superseded each
    // other (or by a race): the completed reset must end it too.
    let other = shared::security::opaque::generate();
    sqlx::query(
        "INSERT INTO password_reset_tokens (user_id, token_hash, expires_at)
         VALUES ($1, $2, now() + interval '1 hour')",
    )
    .bind(alice.id)
    .bind(shared::security::opaque::hash(&other))
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(reset(&app, &other).await.status, 204);
    let after = hash_of(&app, &alice).await;
    assert_problem(&reset(&app, &a).await, 400, "invalid_token");
    assert_eq!(hash_of(&app, &alice).await, after, "state unchanged");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_password_change_ends_outstanding_reset_tokens(pool: PgPool) {
    let app = TestApp::new(pool);
    let (alice, pair) = app.signed_in("alice").await;
    let a = forgot(&app, &alice).await;
    let changed = app
        .call(
            Method::POST,
            "/v1/users/me/password",
            Some(json!({"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD})),
            Some(&access(&pair)),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.body);
    let after = hash_of(&app, &alice).await;
    assert_problem(&reset(&app, &a).await, 400, "invalid_token");
    assert_eq!(hash_of(&app, &alice).await, after, "state unchanged");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_email_change_ends_outstanding_reset_tokens(pool: PgPool) {
    let app = TestApp::new(pool);
    let (alice, pair) = app.signed_in("alice").await;
    let a = forgot(&app, &alice).await;
    let before = hash_of(&app, &alice).await;
    let requested = app
        .call(
            Method::POST,
            "/v1/users/me/email",
            Some(json!({"new_email": "alice.new@example.com", "password": STRONG_PASSWORD})),
            Some(&access(&pair)),
        )
        .await;
    assert_eq!(requested.status, 202, "{}", requested.body);
    assert_problem(&reset(&app, &a).await, 400, "invalid_token");
    assert_eq!(hash_of(&app, &alice).await, before, "state unchanged");
}

// -------------------------------------------------------- verification tokens

async fn change_email(app: &TestApp, token: &str, to: &str) -> String {
    let response = app
        .call(
            Method::POST,
            "/v1/users/me/email",
            Some(json!({"new_email": to, "password": STRONG_PASSWORD})),
            Some(token),
        )
        .await;
    assert_eq!(response.status, 202, "{}", response.body);
    app.token_from_mail(to, "verify-email")
        .expect("a verification mail")
}

async fn email_of(app: &TestApp, user: &TestUser) -> String {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_registration_token_cannot_switch_the_address_back(pool: PgPool) {
    let app = TestApp::new(pool);
    let (alice, pair) = app.signed_in("alice").await;
    let registration = app
        .token_from_mail(&alice.email, "verify-email")
        .expect("the registration mail");
    let change = change_email(&app, &access(&pair), "alice.new@example.com").await;
    let verified = app
        .post("/v1/auth/email/verify", json!({"token": change}))
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(email_of(&app, &alice).await, "alice.new@example.com");
    // With a stolen password, the old token would hand the account back to
    // the old address: it is dead.
    assert_problem(
        &app.post("/v1/auth/email/verify", json!({"token": registration}))
            .await,
        400,
        "invalid_token",
    );
    assert_eq!(
        email_of(&app, &alice).await,
        "alice.new@example.com",
        "state unchanged"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_newer_change_request_supersedes_the_older(pool: PgPool) {
    let app = TestApp::new(pool);
    let (alice, pair) = app.signed_in("alice").await;
    let first = change_email(&app, &access(&pair), "first@example.com").await;
    let second = change_email(&app, &access(&pair), "second@example.com").await;
    assert_problem(
        &app.post("/v1/auth/email/verify", json!({"token": first}))
            .await,
        400,
        "invalid_token",
    );
    assert_eq!(email_of(&app, &alice).await, alice.email, "state unchanged");
    assert_eq!(
        app.post("/v1/auth/email/verify", json!({"token": second}))
            .await
            .status,
        200
    );
    assert_eq!(email_of(&app, &alice).await, "second@example.com");
}

/// A pending e-mail change (an attacker's, with a stolen password) dies
/// with everything that throws the attacker out: else its token, verified
/// later, hands the account to the attacker's address.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_pending_email_change_dies_with_what_throws_a_thief_out(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, admin) = app.user_with("admin", &["users:write"]).await;
    for (n, how) in [
        "reset",
        "password change",
        "logout everywhere",
        "admin revoke",
        "suspension",
    ]
    .into_iter()
    .enumerate()
    {
        let (alice, pair) = app.signed_in(&format!("alice{n}")).await;
        let thief_mail = format!("thief{n}@example.com");
        let change = change_email(&app, &access(&pair), &thief_mail).await;
        match how {
            "reset" => {
                let token = forgot(&app, &alice).await;
                assert_eq!(reset(&app, &token).await.status, 204);
            }
            "password change" => {
                let body =
                    json!({"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD});
                let changed = app
                    .call(
                        Method::POST,
                        "/v1/users/me/password",
                        Some(body),
                        Some(&access(&pair)),
                    )
                    .await;
                assert_eq!(changed.status, 204, "{}", changed.body);
            }
            "logout everywhere" => {
                let body = json!({"refresh_token": refresh(&pair), "all_sessions": true});
                assert_eq!(app.post("/v1/auth/logout", body).await.status, 204);
            }
            "admin revoke" => {
                let path = format!("/v1/admin/users/{}/revoke-sessions", alice.id);
                assert_eq!(
                    app.call(Method::POST, &path, None, Some(&admin))
                        .await
                        .status,
                    204
                );
            }
            _ => {
                let path = format!("/v1/admin/users/{}", alice.id);
                let body = json!({"status": "suspended"});
                assert_eq!(
                    app.call(Method::PATCH, &path, Some(body), Some(&admin))
                        .await
                        .status,
                    200
                );
            }
        }
        assert_problem(
            &app.post("/v1/auth/email/verify", json!({"token": change}))
                .await,
            400,
            "invalid_token",
        );
        assert_eq!(
            email_of(&app, &alice).await,
            alice.email,
            "{how}: state unchanged"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_stolen_rotated_token_is_audited_once_however_often_it_is_replayed(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[
            ("REFRESH_REUSE_GRACE_SECONDS", "0"),
            ("RATE_LIMIT_LOGOUT_PER_MINUTE", "8"),
        ],
    );
    let (alice, first) = app.signed_in("alice").await;
    app.post(
        "/v1/auth/refresh",
        json!({"refresh_token": refresh(&first)}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = app
            .post("/v1/auth/logout", json!({"refresh_token": refresh(&first)}))
            .await;
        statuses.push(response.status.as_u16());
    }
    assert_eq!(statuses[..8], [204; 8]);
    assert_eq!(
        statuses[8..],
        [429, 429],
        "logout is rate-limited per address"
    );
    let warnings: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE user_id = $1 AND action = 'refresh_token_reused'",
    )
    .bind(alice.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(warnings, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_pending_email_change_does_not_survive_a_delete_and_restore(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, admin) = app.user_with("admin", &["users:delete"]).await;
    let (alice, pair) = app.signed_in("alice").await;
    let change = change_email(&app, &access(&pair), "thief@example.com").await;
    let path = format!("/v1/admin/users/{}", alice.id);
    assert_eq!(
        app.call(Method::DELETE, &path, None, Some(&admin))
            .await
            .status,
        204
    );
    let restored = app
        .call(Method::POST, &format!("{path}/restore"), None, Some(&admin))
        .await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_problem(
        &app.post("/v1/auth/email/verify", json!({"token": change}))
            .await,
        400,
        "invalid_token",
    );
    assert_eq!(email_of(&app, &alice).await, alice.email);
}
