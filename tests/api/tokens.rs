//! Token attacks beyond the auth suite's tampering list: tokens of deleted
//! or purged accounts, of a removed signing key (see
//! `auth::rotated_keys_keep_old_tokens_valid_and_sign_with_the_newest`) and of
//! another device (`auth::a_refresh_from_another_device_is_refused`).

use axum::http::Method;
use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{TestApp, assert_problem};

fn access(pair: &serde_json::Value) -> String {
    pair["access_token"].as_str().unwrap().to_string()
}

fn refresh(pair: &serde_json::Value) -> serde_json::Value {
    json!({"refresh_token": pair["refresh_token"]})
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn tokens_of_a_self_deleted_account_stop_working(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    // A second session, opened before the deletion.
    let other = app.login_as(&user).await.body;
    let deleted = app
        .call(
            Method::DELETE,
            "/v1/users/me",
            Some(json!({"password": user.password})),
            Some(&access(&pair)),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    for token in [access(&pair), access(&other)] {
        let me = app.get_as("/v1/users/me", &token).await;
        assert_eq!(me.status, 401, "{}", me.body);
    }
    for pair in [&pair, &other] {
        let refreshed = app.post("/v1/auth/refresh", refresh(pair)).await;
        assert_problem(&refreshed, 401, "refresh_token_invalid");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn tokens_of_an_account_deleted_by_an_admin_stop_working(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("bob").await;
    let (_, admin) = app.user_with("root", &["users:delete"]).await;
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/v1/admin/users/{}", user.id),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(app.get_as("/v1/users/me", &access(&pair)).await.status, 401);
    let refreshed = app.post("/v1/auth/refresh", refresh(&pair)).await;
    assert_problem(&refreshed, 401, "refresh_token_invalid");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_valid_token_of_a_purged_account_is_refused(pool: PgPool) {
    let app = TestApp::new(pool.clone());
    let (user, pair) = app.signed_in("carol").await;
    assert_eq!(app.get_as("/v1/users/me", &access(&pair)).await.status, 200);
    // The row is gone (purged by an operator); the JWT is still well signed
    // and unexpired.
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user.id)
        .execute(&pool)
        .await
        .unwrap();
    let me = app.get_as("/v1/users/me", &access(&pair)).await;
    assert_eq!(me.status, 401, "{}", me.body);
    let sessions = app.get_as("/v1/users/me/sessions", &access(&pair)).await;
    assert_eq!(sessions.status, 401, "{}", sessions.body);
    let refreshed = app.post("/v1/auth/refresh", refresh(&pair)).await;
    assert_problem(&refreshed, 401, "refresh_token_invalid");
}
