//! The auth group: refresh.

#[allow(unused_imports)]
use super::*;

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

/// The rotation statement (queries/sessions/rotate.sql) spends nothing for
/// a user who may not log in or is gone, and says why in the contract's
/// order; when it spends, the successor, the link and the audit row are
/// there together.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_refresh_of_a_disabled_or_deleted_user_spends_nothing(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    let token = refresh_token(&pair);
    let set = |sql: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query(sql).bind(user.id).execute(&pool).await.unwrap();
        }
    };
    let refresh = || app.post("/v1/auth/refresh", json!({"refresh_token": token}));

    set("UPDATE users SET status = 'inactive' WHERE id = $1").await;
    assert_problem(&refresh().await, 403, "account_disabled");
    set("UPDATE users SET status = 'active', deleted_at = now() WHERE id = $1").await;
    assert_problem(&refresh().await, 401, "refresh_token_invalid");
    set("UPDATE users SET deleted_at = NULL WHERE id = $1").await;
    let spent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NOT NULL",
    )
    .bind(user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(spent, 0, "the refusals spent nothing");

    let rotated = refresh().await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let row: (Option<Uuid>, Uuid, Option<String>, i64) = sqlx::query_as(
        "SELECT t.replaced_by, s.session_id, s.created_by_ip,
                (SELECT count(*) FROM audit_logs a
                 WHERE a.user_id = t.user_id AND a.action = 'token_refreshed'
                   AND a.new_values->>'session_id' = t.session_id::text)
         FROM refresh_tokens t JOIN refresh_tokens s ON s.id = t.replaced_by
         WHERE t.token_hash = $1 AND s.session_id = t.session_id
           AND s.token_hash = $2 AND s.revoked_at IS NULL",
    )
    .bind(shared::security::opaque::hash(&token))
    .bind(shared::security::opaque::hash(&refresh_token(
        &rotated.body,
    )))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(row.0.is_some());
    assert!(row.2.is_some(), "the successor records the client");
    assert_eq!(row.3, 1, "one audit row");
    assert_eq!(rotated.body["user"]["id"], json!(user.id));
}
