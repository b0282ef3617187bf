//! Registering, renaming and deleting passkeys: who may, with what proof,
//! and what each change supersedes.

use axum::http::Method;
use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{STRONG_PASSWORD, TestApp, assert_problem};

use super::{Device, with_passkey};
use crate::mfa::{access_token, amr, enrolled, fresh_code};

#[sqlx::test(migrator = "MIGRATOR")]
async fn registration_needs_the_password_its_own_challenge_and_origin(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let (ada, pair) = app.signed_in("ada").await;
    let token = access_token(&pair);
    let start = || {
        app.call(
            Method::POST,
            "/v1/users/me/passkeys/register/start",
            None,
            Some(&token),
        )
    };
    let finish = |body| {
        app.call(
            Method::POST,
            "/v1/users/me/passkeys/register/finish",
            Some(body),
            Some(&token),
        )
    };
    let mut device = Device::new();

    // No challenge started in this session.
    let started = start().await;
    let credential = device.create(&started.body["options"]).await;
    let other_session = app.login_as(&ada).await;
    let elsewhere = app
        .call(
            Method::POST,
            "/v1/users/me/passkeys/register/finish",
            Some(json!({"credential": credential, "current_password": STRONG_PASSWORD})),
            Some(&access_token(&other_session.body)),
        )
        .await;
    assert_problem(&elsewhere, 409, "conflict");

    // A wrong password counts, and the challenge is spent all the same.
    let wrong =
        finish(json!({"credential": credential, "current_password": "Not-The-Password-1"})).await;
    assert_problem(&wrong, 401, "invalid_credentials");
    let after_wrong =
        finish(json!({"credential": credential, "current_password": STRONG_PASSWORD})).await;
    assert_problem(&after_wrong, 409, "conflict");
    // Names that are none, or that hide what they say, are refused before
    // anything is spent.
    let started = start().await;
    let credential = device.create(&started.body["options"]).await;
    for name in [" ", "Laptop\u{202e}yeKbuY", "a\u{200b}b"] {
        let refused = finish(
            json!({"credential": credential, "name": name, "current_password": STRONG_PASSWORD}),
        )
        .await;
        assert_problem(&refused, 422, "validation_failed");
    }
    let right = finish(
        json!({"credential": credential, "name": "YubiKey", "current_password": STRONG_PASSWORD}),
    )
    .await;
    assert_eq!(right.status, 201, "{}", right.body);
    assert_eq!(right.body["passkey"]["name"], "YubiKey");
    // Spent: the same answer again finds no challenge.
    let token = access_token(&right.body);
    let again = app
        .call(
            Method::POST,
            "/v1/users/me/passkeys/register/finish",
            Some(json!({"credential": credential, "current_password": STRONG_PASSWORD})),
            Some(&token),
        )
        .await;
    assert_problem(&again, 409, "conflict");

    // A page at another origin cannot register one.
    let started = app
        .call(
            Method::POST,
            "/v1/users/me/passkeys/register/start",
            None,
            Some(&token),
        )
        .await;
    // The passkey already held is excluded: the authenticator would not
    // make a second one, so the look-alike uses a fresh authenticator.
    let excluded = &started.body["options"]["publicKey"]["excludeCredentials"];
    assert_eq!(excluded.as_array().map(Vec::len), Some(1));
    let mut phished = Device::at("http://localhost:4000");
    let foreign = phished.create(&started.body["options"]).await;
    let refused = app
        .call(
            Method::POST,
            "/v1/users/me/passkeys/register/finish",
            Some(json!({"credential": foreign, "current_password": STRONG_PASSWORD})),
            Some(&token),
        )
        .await;
    assert_problem(&refused, 422, "validation_failed");

    // A mail to the owner (without the caller's chosen name), and the
    // audit row.
    let mails = app.mails_to(&ada.email);
    let told = mails.iter().filter(|m| {
        m["text"]
            .as_str()
            .is_some_and(|t| t.contains("given a new passkey") && !t.contains("YubiKey"))
    });
    assert_eq!(told.count(), 1);
    let enabled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE user_id = $1 AND action = 'mfa_enabled'
         AND new_values->>'type' = 'webauthn'",
    )
    .bind(ada.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(enabled, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_second_factor_guards_adding_a_passkey(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let ada = enrolled(&app, "ada").await;
    // The session verified TOTP long ago: adding a way in needs it again.
    sqlx::query(
        "UPDATE refresh_tokens SET mfa_verified_at = now() - interval '1 hour' WHERE user_id = $1",
    )
    .bind(ada.user.id)
    .execute(&pool)
    .await
    .unwrap();
    let started = app
        .call(
            Method::POST,
            "/v1/users/me/passkeys/register/start",
            None,
            Some(&ada.token),
        )
        .await;
    let mut device = Device::new();
    let credential = device.create(&started.body["options"]).await;
    let finish = |token: String| {
        let (app, credential) = (&app, credential.clone());
        async move {
            app.call(
                Method::POST,
                "/v1/users/me/passkeys/register/finish",
                Some(json!({"credential": credential, "current_password": STRONG_PASSWORD})),
                Some(&token),
            )
            .await
        }
    };
    let stale = finish(ada.token.clone()).await;
    assert_problem(&stale, 403, "mfa_required");

    let stepped = app
        .call(
            Method::POST,
            "/v1/users/me/mfa/verify",
            Some(json!({"code": fresh_code(&ada.secret)})),
            Some(&ada.token),
        )
        .await;
    assert_eq!(stepped.status, 200, "{}", stepped.body);
    let registered = finish(access_token(&stepped.body)).await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    // Not the first factor: the recovery codes stay the ones given.
    assert!(registered.body.get("recovery_codes").is_none());
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(ada.user.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 10);
    assert_eq!(
        amr(&access_token(&registered.body)),
        ["mfa", "otp", "pwd", "swk"]
    );
    let login = app.login_as(&ada.user).await;
    assert_eq!(
        login.body["methods"],
        json!(["totp", "webauthn", "recovery_code"])
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn passkeys_are_renamed_by_their_owner_and_deleted_with_a_step_up(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let (ada, mut device, token) = with_passkey(&app, "ada").await;
    let (_, _, bobs_token) = with_passkey(&app, "bob").await;
    let listed = app.get_as("/v1/users/me/passkeys", &token).await;
    let id = listed.body["passkeys"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/users/me/passkeys/{id}");

    let renamed = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"name": "Laptop"})),
            Some(&token),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "Laptop");
    // Another user's passkey is not there for bob.
    let theirs = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"name": "Mine"})),
            Some(&bobs_token),
        )
        .await;
    assert_problem(&theirs, 404, "not_found");
    let deleted_by_bob = app
        .call(
            Method::DELETE,
            &path,
            Some(json!({"password": STRONG_PASSWORD})),
            Some(&bobs_token),
        )
        .await;
    assert_problem(&deleted_by_bob, 404, "not_found");

    // Deleting needs a recent second factor: a passkey step-up gives one.
    sqlx::query(
        "UPDATE refresh_tokens SET mfa_verified_at = now() - interval '1 hour' WHERE user_id = $1",
    )
    .bind(ada.id)
    .execute(&pool)
    .await
    .unwrap();
    let delete = |token: String| {
        let path = path.clone();
        let app = &app;
        async move {
            app.call(
                Method::DELETE,
                &path,
                Some(json!({"password": STRONG_PASSWORD})),
                Some(&token),
            )
            .await
        }
    };
    let stale = delete(token.clone()).await;
    assert_problem(&stale, 403, "mfa_required");
    let challenge = app
        .call(
            Method::POST,
            "/v1/users/me/mfa/webauthn/start",
            None,
            Some(&token),
        )
        .await;
    assert_eq!(challenge.status, 200, "{}", challenge.body);
    let assertion = device.get(&challenge.body["options"]).await;
    let stepped = app
        .call(
            Method::POST,
            "/v1/users/me/mfa/verify",
            Some(json!({"webauthn": assertion})),
            Some(&token),
        )
        .await;
    assert_eq!(stepped.status, 200, "{}", stepped.body);
    // A step-up's challenge answers once.
    let replayed = app
        .call(
            Method::POST,
            "/v1/users/me/mfa/verify",
            Some(json!({"webauthn": assertion})),
            Some(&token),
        )
        .await;
    assert_problem(&replayed, 401, "invalid_credentials");

    let gone = delete(access_token(&stepped.body)).await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    // The last factor went: so did the recovery codes, and a password
    // alone logs in again.
    let codes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1")
            .bind(ada.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(codes, 0);
    let login = app.login_as(&ada).await;
    assert!(login.body.get("access_token").is_some(), "{}", login.body);
    let status = app
        .get_as("/v1/users/me/mfa", &access_token(&login.body))
        .await;
    assert_eq!(status.body["factors"], json!([]));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_admin_reset_and_the_export_see_passkeys(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let (ada, _, token) = with_passkey(&app, "ada").await;
    let export = app.get_as("/v1/users/me/export", &token).await;
    assert_eq!(export.status, 200, "{}", export.body);
    let factors = export.body["mfa_factors"].as_array().unwrap();
    assert_eq!(factors.len(), 1);
    assert_eq!(factors[0]["type"], "webauthn");
    assert!(!export.body.to_string().contains("credential_id"));

    let (_, admin) = app.user_with("root", &["users:write"]).await;
    let reset = app
        .call(
            Method::DELETE,
            &format!("/v1/admin/users/{}/mfa", ada.id),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(reset.status, 204, "{}", reset.body);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM mfa_factors WHERE user_id = $1")
        .bind(ada.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    // Its sessions went with it.
    let me = app.get_as("/v1/users/me", &token).await;
    assert_eq!(me.status, 401);
}
