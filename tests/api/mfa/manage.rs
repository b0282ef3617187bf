//! Enrolment, step-up, the permission policy, the admin reset, the export
//! and the secret at rest.

use axum::http::Method;
use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{STRONG_PASSWORD, TestApp, assert_problem};

use super::{access_token, amr, code, enrolled, fresh_code, mfa_token};

/// Makes the session's last second factor older than the step-up window.
async fn age_second_factor(app: &TestApp, user: uuid::Uuid) {
    sqlx::query(
        "UPDATE refresh_tokens SET mfa_verified_at = now() - interval '10 minutes' WHERE user_id = $1",
    )
    .bind(user)
    .execute(&app.pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn enrolment_shows_a_qr_code_and_needs_a_right_first_code(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("ada").await;
    let token = access_token(&pair);
    let other = app.login_as(&user).await;
    let other_token = access_token(&other.body);
    let started = app
        .call(Method::POST, "/v1/users/me/mfa/totp", None, Some(&token))
        .await;
    assert_eq!(started.status, 201, "{}", started.body);
    let uri = started.body["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains("ada%40example.com"),
        "{uri}"
    );
    assert!(
        started.body["qr_svg"]
            .as_str()
            .unwrap()
            .starts_with("<?xml")
    );
    let secret =
        shared::mfa::totp::secret_from_base32(started.body["secret"].as_str().unwrap()).unwrap();
    assert_eq!(secret.len(), 20);

    // Stored sealed: not the secret, under the configured key id.
    let (sealed, key_id): (Vec<u8>, String) = sqlx::query_as(
        "SELECT secret_ciphertext, secret_key_id FROM mfa_factors WHERE kind = 'totp'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(key_id, "test");
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));

    // Not enabled until confirmed: the login still takes one step.
    let one_step = app.login_as(&user).await;
    assert!(
        one_step.body.get("access_token").is_some(),
        "{}",
        one_step.body
    );
    let confirm = |body| {
        app.call(
            Method::POST,
            "/v1/users/me/mfa/totp/confirm",
            Some(body),
            Some(&token),
        )
    };
    // The password is asked again: a stolen session alone cannot bind a
    // thief's authenticator (and a wrong one counts toward the lockout).
    let no_password = confirm(json!({"code": code(&secret, 0)})).await;
    assert_problem(&no_password, 422, "validation_failed");
    let wrong_password =
        confirm(json!({"code": code(&secret, 0), "current_password": "Wrong-Pass-123!"})).await;
    assert_problem(&wrong_password, 401, "invalid_credentials");
    let wrong = confirm(json!({"code": "000000", "current_password": STRONG_PASSWORD})).await;
    assert_problem(&wrong, 422, "validation_failed");
    let attempts: i32 =
        sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE username = 'ada'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        attempts, 0,
        "a right password with a wrong code counts nothing"
    );
    let right =
        confirm(json!({"code": code(&secret, 0), "current_password": STRONG_PASSWORD})).await;
    assert_eq!(right.status, 200, "{}", right.body);
    let mail = app.mails_to("ada@example.com");
    assert!(
        mail.iter()
            .any(|m| m["subject"] == "Two-step verification changed"),
        "the owner is told"
    );
    // Enabling a factor ends the other sessions (perhaps a thief's).
    assert_eq!(app.get_as("/v1/users/me", &other_token).await.status, 401);
    let status = app.get_as("/v1/users/me/mfa", &token).await;
    assert_eq!(status.body["recovery_codes_left"], 10, "{}", status.body);
    assert_eq!(status.body["factors"][0]["type"], "totp");
    // A second enrolment while one is enabled is a conflict.
    let again = app
        .call(Method::POST, "/v1/users/me/mfa/totp", None, Some(&token))
        .await;
    assert_problem(&again, 409, "conflict");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sensitive_changes_need_a_recent_second_factor(pool: PgPool) {
    let app = TestApp::new(pool);
    let ada = enrolled(&app, "ada").await;
    age_second_factor(&app, ada.user.id).await;
    let token = ada.token.clone();
    let refused = [
        (
            Method::POST,
            "/v1/users/me/password",
            Some(
                json!({"current_password": STRONG_PASSWORD, "new_password": "Another-Strong-Pass-42?"}),
            ),
        ),
        (
            Method::POST,
            "/v1/users/me/email",
            Some(json!({"new_email": "new@example.com", "password": STRONG_PASSWORD})),
        ),
        (
            Method::DELETE,
            "/v1/users/me",
            Some(json!({"password": STRONG_PASSWORD})),
        ),
        (
            Method::DELETE,
            "/v1/users/me/mfa/totp",
            Some(json!({"password": STRONG_PASSWORD})),
        ),
        (
            Method::POST,
            "/v1/users/me/mfa/recovery-codes",
            Some(json!({"password": STRONG_PASSWORD})),
        ),
    ];
    for (method, path, body) in refused {
        let response = app.call(method.clone(), path, body, Some(&token)).await;
        assert_problem(&response, 403, "mfa_required");
    }
    // Refused before the password was looked at: nothing counted.
    let attempts: i32 = sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE id = $1")
        .bind(ada.user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 0);

    // Step-up with a wrong code: counted; with a right one: a new token.
    let wrong = app
        .call(
            Method::POST,
            "/v1/users/me/mfa/verify",
            Some(json!({"code": "000000"})),
            Some(&token),
        )
        .await;
    assert_problem(&wrong, 401, "invalid_credentials");
    let stepped = app
        .call(
            Method::POST,
            "/v1/users/me/mfa/verify",
            Some(json!({"code": fresh_code(&ada.secret)})),
            Some(&token),
        )
        .await;
    assert_eq!(stepped.status, 200, "{}", stepped.body);
    assert_eq!(stepped.body["amr"], json!(["mfa", "otp", "pwd"]));
    let token = access_token(&stepped.body);

    // The password is asked too (full re-authentication), and counted.
    let wrong_password = app
        .call(
            Method::POST,
            "/v1/users/me/mfa/recovery-codes",
            Some(json!({"password": "Not-The-Password-1!"})),
            Some(&token),
        )
        .await;
    assert_problem(&wrong_password, 401, "invalid_credentials");
    let regenerated = app
        .call(
            Method::POST,
            "/v1/users/me/mfa/recovery-codes",
            Some(json!({"password": STRONG_PASSWORD})),
            Some(&token),
        )
        .await;
    assert_eq!(regenerated.status, 200, "{}", regenerated.body);
    let new_codes = regenerated.body["recovery_codes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(new_codes.len(), 10);
    let changed = app
        .call(
            Method::POST,
            "/v1/users/me/password",
            Some(json!({"current_password": STRONG_PASSWORD, "new_password": "Another-Strong-Pass-42?"})),
            Some(&token),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.body);

    // The old recovery codes died with the regeneration; the new ones work.
    let user = tests::TestUser {
        password: "Another-Strong-Pass-42?".into(),
        ..ada.user.clone()
    };
    let pending = mfa_token(&app, &user).await;
    let old = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": pending, "recovery_code": ada.recovery_codes[0]}),
        )
        .await;
    assert_problem(&old, 401, "invalid_credentials");
    let new = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": pending, "recovery_code": new_codes[0]}),
        )
        .await;
    assert_eq!(new.status, 200, "{}", new.body);

    // Disabling TOTP (a fresh step-up: the login just now) takes the
    // recovery codes with it; the next login is one step again.
    let token = access_token(&new.body);
    let disabled = app
        .call(
            Method::DELETE,
            "/v1/users/me/mfa/totp",
            Some(json!({"password": "Another-Strong-Pass-42?"})),
            Some(&token),
        )
        .await;
    assert_eq!(disabled.status, 204, "{}", disabled.body);
    let plain = app.login_as(&user).await;
    assert_eq!(plain.status, 200);
    assert_eq!(amr(&access_token(&plain.body)), ["pwd"]);
    let codes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1")
            .bind(ada.user.id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(codes, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn listed_permissions_need_a_session_with_a_second_factor(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[("MFA_REQUIRED_FOR_PERMISSIONS", "users:read,roles:manage")],
    );
    let (_, reader) = app.user_with("reader", &["users:read"]).await;
    assert_problem(
        &app.get_as("/v1/admin/users", &reader).await,
        403,
        "mfa_required",
    );
    assert_problem(&app.get_as("/v1/users", &reader).await, 403, "mfa_required");
    // A '*' holder holds users:read too.
    let (_, star) = app.user_with("star", &["*"]).await;
    assert_problem(
        &app.get_as("/v1/admin/stats", &star).await,
        403,
        "mfa_required",
    );
    // A permission not listed is not affected.
    let (_, stats) = app.user_with("stats", &["stats:read"]).await;
    assert_eq!(app.get_as("/v1/admin/stats", &stats).await.status, 200);
    // With a second factor in the session, the listed permission works.
    let admin = enrolled(&app, "admin").await;
    app.grant(admin.user.id, &["users:read"]).await;
    assert_eq!(
        app.get_as("/v1/admin/users", &admin.token).await.status,
        200
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_admin_resets_factors_within_the_privilege_rule(pool: PgPool) {
    let app = TestApp::new(pool);
    let ada = enrolled(&app, "ada").await;
    let (_, writer) = app.user_with("writer", &["users:write"]).await;
    let path = format!("/v1/admin/users/{}/mfa", ada.user.id);
    let reset = app.call(Method::DELETE, &path, None, Some(&writer)).await;
    assert_eq!(reset.status, 204, "{}", reset.body);
    // Her sessions are gone, and her next login is one step.
    assert_eq!(app.get_as("/v1/users/me", &ada.token).await.status, 401);
    let login = app.login_as(&ada.user).await;
    assert_eq!(login.status, 200);
    assert!(login.body.get("access_token").is_some(), "{}", login.body);
    let severity: String = sqlx::query_scalar(
        "SELECT severity FROM audit_logs WHERE user_id = $1 AND action = 'mfa_reset'",
    )
    .bind(ada.user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(severity, "warning");
    // users:write cannot reset a '*' holder (no one acts above their rank),
    // and a user without users:write cannot reset anyone.
    let (root, _) = app.user_with("root", &["*"]).await;
    let path = format!("/v1/admin/users/{}/mfa", root.id);
    assert_problem(
        &app.call(Method::DELETE, &path, None, Some(&writer)).await,
        403,
        "forbidden",
    );
    let (_, reader) = app.user_with("reader", &["users:read"]).await;
    assert_problem(
        &app.call(Method::DELETE, &path, None, Some(&reader)).await,
        403,
        "forbidden",
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_export_lists_factors_but_no_secret(pool: PgPool) {
    let app = TestApp::new(pool);
    let ada = enrolled(&app, "ada").await;
    let export = app.get_as("/v1/users/me/export", &ada.token).await;
    assert_eq!(export.status, 200, "{}", export.body);
    let factors = export.body["mfa_factors"].as_array().unwrap();
    assert_eq!(factors.len(), 1);
    assert_eq!(factors[0]["type"], "totp");
    assert!(factors[0]["last_used_at"].is_string());
    let text = export.body.to_string();
    let base32 = shared::mfa::totp::uri(&ada.secret, "x", "y").unwrap();
    let secret = base32
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert!(!text.contains(secret));
    assert!(!text.contains(&ada.recovery_codes[0]));
    assert!(!text.contains("secret_ciphertext"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn without_a_factor_there_is_nothing_to_verify_and_locks_stay_ordinary(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[("LOCKOUT_THRESHOLD", "2"), ("LOCKOUT_MINUTES", "1")],
    );
    let (user, pair) = app.signed_in("plain").await;
    let token = access_token(&pair);
    let verify = app
        .call(
            Method::POST,
            "/v1/users/me/mfa/verify",
            Some(json!({"code": "000000"})),
            Some(&token),
        )
        .await;
    assert_problem(&verify, 409, "conflict");
    // Nothing counted, and a lock from wrong passwords lasts LOCKOUT_MINUTES
    // every time, not longer and longer.
    for _ in 0..2 {
        for _ in 0..2 {
            let wrong = app
                .post(
                    "/v1/auth/login",
                    json!({"login": "plain", "password": "Not-The-Password-1!"}),
                )
                .await;
            assert_problem(&wrong, 401, "invalid_credentials");
        }
        let seconds: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM locked_until - now())::float8 FROM users WHERE id = $1",
        )
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert!((50.0..=61.0).contains(&seconds), "{seconds}");
        sqlx::query("UPDATE users SET locked_until = now() - interval '1 second' WHERE id = $1")
            .bind(user.id)
            .execute(&app.pool)
            .await
            .unwrap();
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM mfa_failures")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    assert!(
        app.mails_to(&user.email)
            .iter()
            .all(|m| m["subject"] != "Failed sign-in with your password")
    );
}
