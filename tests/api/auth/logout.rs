//! The auth group: logout.

#[allow(unused_imports)]
use super::*;

pub(super) async fn logout_revokes_access_at_once(app: TestApp) {
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
