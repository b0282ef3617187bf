//! Logging in with a passkey: passwordless (discoverable credential) and
//! as the second step of a password login; replays, clones, other
//! accounts' credentials, disabled accounts.

use axum::http::Method;
use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{TestApp, assert_problem};

use super::{Device, passwordless, register_passkey, with_passkey};
use crate::mfa::{access_token, amr};

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_passkey_registers_and_logs_in_without_a_password(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let (ada, pair) = app.signed_in("ada").await;
    let elsewhere = app.login_as(&ada).await;
    let mut device = Device::new();
    let registered = register_passkey(&app, &access_token(&pair), &mut device).await;
    // The first second factor: recovery codes, shown once, and a token of
    // this session that says how it was verified.
    assert_eq!(registered["recovery_codes"].as_array().unwrap().len(), 10);
    assert_eq!(registered["passkey"]["name"], "Passkey");
    assert_eq!(amr(&access_token(&registered)), ["mfa", "pwd", "swk"]);
    // Another session of the account is over; this one is not.
    let old = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": elsewhere.body["refresh_token"]}),
        )
        .await;
    assert_problem(&old, 401, "refresh_token_invalid");
    let this = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": pair["refresh_token"]}),
        )
        .await;
    assert_eq!(this.status, 200, "{}", this.body);

    let listed = app
        .get_as("/v1/users/me/passkeys", &access_token(&registered))
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let keys = listed.body["passkeys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    // The software authenticator syncs its passkeys: backed up, and `swk`.
    assert_eq!(keys[0]["backup_eligible"], true);
    assert_eq!(keys[0]["backup_state"], true);
    assert!(keys[0].get("credential").is_none() && keys[0].get("public_key").is_none());

    // No username, no password: the passkey names the account.
    let first = passwordless(&app, &mut device).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["user"]["username"], "ada");
    let token = access_token(&first.body);
    assert_eq!(amr(&token), ["mfa", "swk"]);
    let me = app.get_as("/v1/users/me", &token).await;
    assert_eq!(me.status, 200);
    // A passwordless session has verified a second factor: the step-ups
    // that need one are open to it.
    let status = app.get_as("/v1/users/me/mfa", &token).await;
    assert_eq!(status.body["factors"][0]["type"], "webauthn");

    // The counter moved, and the login is audited with its method.
    let counted: i64 = sqlx::query_scalar(
        "SELECT sign_count FROM mfa_factors WHERE user_id = $1 AND kind = 'webauthn'",
    )
    .bind(ada.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(counted, 1, "0 at registration, 1 after one login");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE user_id = $1 AND action = 'login_succeeded'
         AND new_values->>'method' = 'passkey'",
    )
    .bind(ada.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_passwordless_challenge_is_answered_once(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, mut device, _) = with_passkey(&app, "ada").await;
    let started = app
        .call(Method::POST, "/v1/auth/passkey/start", None, None)
        .await;
    assert_eq!(started.status, 200);
    assert!(
        started.body["options"]["publicKey"]["allowCredentials"].is_null()
            || started.body["options"]["publicKey"]["allowCredentials"] == json!([])
    );
    let credential = device.get(&started.body["options"]).await;
    let body = json!({"ceremony_id": started.body["ceremony_id"], "credential": credential});
    let first = app.post("/v1/auth/passkey/finish", body.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    // The same signed answer again: the challenge is spent.
    let replayed = app.post("/v1/auth/passkey/finish", body).await;
    assert_problem(&replayed, 401, "invalid_credentials");
    // A made-up ceremony, and something that is not a credential.
    let unknown = app
        .post(
            "/v1/auth/passkey/finish",
            json!({"ceremony_id": uuid::Uuid::new_v4(), "credential": credential}),
        )
        .await;
    assert_problem(&unknown, 401, "invalid_credentials");
    let garbage = app
        .post(
            "/v1/auth/passkey/finish",
            json!({"ceremony_id": uuid::Uuid::new_v4(), "credential": {"id": "x"}}),
        )
        .await;
    assert_problem(&garbage, 422, "validation_failed");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn ceremonies_fall_back_to_postgresql_while_redis_is_down(pool: PgPool) {
    let app = TestApp::with_config(pool.clone(), &[("REDIS_URL", "redis://127.0.0.1:1")]);
    let (_, mut device, _) = with_passkey(&app, "ada").await;
    let started = app
        .call(Method::POST, "/v1/auth/passkey/start", None, None)
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM webauthn_ceremonies")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 1, "the passwordless challenge, in PostgreSQL");
    let credential = device.get(&started.body["options"]).await;
    let body = json!({"ceremony_id": started.body["ceremony_id"], "credential": credential});
    let logged_in = app.post("/v1/auth/passkey/finish", body).await;
    assert_eq!(logged_in.status, 200, "{}", logged_in.body);
    // A challenge found nowhere while Redis is down may be in Redis: 503,
    // not a judgement.
    let unknown = app
        .post(
            "/v1/auth/passkey/finish",
            json!({"ceremony_id": uuid::Uuid::new_v4(), "credential": credential}),
        )
        .await;
    assert_problem(&unknown, 503, "unavailable");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_cloned_authenticator_is_refused_by_its_counter(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, mut device, _) = with_passkey(&app, "ada").await;
    let mut clone = device.clone_keys();
    let original = passwordless(&app, &mut device).await;
    assert_eq!(original.status, 200, "{}", original.body);
    // The copy signs with the counter the original had before its login:
    // not ahead of what the server saw last.
    let copied = passwordless(&app, &mut clone).await;
    assert_problem(&copied, 401, "invalid_credentials");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_passkey_of_a_disabled_account_or_another_origin_does_not_log_in(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let (ada, mut device, _) = with_passkey(&app, "ada").await;

    // A look-alike page (another origin) relaying the challenge gets no
    // session, even from the right key: the origin is signed into the answer.
    let mut phished = device.clone_keys_at("http://localhost:4000");
    let relayed = passwordless(&app, &mut phished).await;
    assert_problem(&relayed, 401, "invalid_credentials");

    sqlx::query("UPDATE users SET status = 'suspended' WHERE id = $1")
        .bind(ada.id)
        .execute(&pool)
        .await
        .unwrap();
    let suspended = passwordless(&app, &mut device).await;
    assert_problem(&suspended, 403, "account_disabled");

    // A deleted passkey no longer names anyone.
    sqlx::query("UPDATE users SET status = 'active' WHERE id = $1")
        .bind(ada.id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM mfa_factors WHERE user_id = $1")
        .bind(ada.id)
        .execute(&pool)
        .await
        .unwrap();
    let gone = passwordless(&app, &mut device).await;
    assert_problem(&gone, 401, "invalid_credentials");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE action = 'login_failed'
         AND new_values->>'reason' = 'passkey_rejected'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 2, "the relayed answer and the deleted passkey");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_passkey_is_the_second_step_of_a_password_login(pool: PgPool) {
    // Ceremonies in Redis this time.
    let app = TestApp::with_config(pool.clone(), &[("REDIS_URL", "redis://127.0.0.1:6379")]);
    let (ada, mut device, _) = with_passkey(&app, "ada").await;
    let first = app.login_as(&ada).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["methods"], json!(["webauthn", "recovery_code"]));
    let options = first.body["webauthn"].clone();
    let allowed = &options["publicKey"]["allowCredentials"];
    assert_eq!(allowed.as_array().map(Vec::len), Some(1), "{options}");
    let mfa_token = first.body["mfa_token"].as_str().unwrap().to_string();
    let assertion = device.get(&options).await;

    // Nothing is kept in PostgreSQL while Redis answers.
    let in_pg: i64 = sqlx::query_scalar("SELECT count(*) FROM webauthn_ceremonies")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(in_pg, 0);

    let pair = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": mfa_token, "webauthn": assertion}),
        )
        .await;
    assert_eq!(pair.status, 200, "{}", pair.body);
    assert_eq!(amr(&access_token(&pair.body)), ["mfa", "pwd", "swk"]);

    // The same assertion for a new login: another challenge, refused, and
    // counted as a wrong second factor.
    let second = app.login_as(&ada).await;
    let replay = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": second.body["mfa_token"], "webauthn": assertion}),
        )
        .await;
    assert_problem(&replay, 401, "invalid_credentials");
    // Its challenge was spent by that answer: the right key is refused too
    // until a new login.
    let late = device.get(&second.body["webauthn"]).await;
    let refused = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": second.body["mfa_token"], "webauthn": late}),
        )
        .await;
    assert_problem(&refused, 401, "invalid_credentials");
    let wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE user_id = $1 AND action = 'login_failed'
         AND new_values->>'reason' = 'wrong_second_factor'",
    )
    .bind(ada.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(wrong, 2);

    // Someone else's passkey does not answer for ada.
    let (_, mut bobs, _) = with_passkey(&app, "bob").await;
    let third = app.login_as(&ada).await;
    let options = third.body["webauthn"].clone();
    let mut any = options.clone();
    any["publicKey"]["allowCredentials"] = json!([]);
    let foreign = bobs.get(&any).await;
    let refused = app
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": third.body["mfa_token"], "webauthn": foreign}),
        )
        .await;
    assert_problem(&refused, 401, "invalid_credentials");
}
