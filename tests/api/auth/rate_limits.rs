//! The auth group: rate limits.

#[allow(unused_imports)]
use super::*;

async fn login_is_rate_limited(app: TestApp) {
    // The limiter counts fixed minutes: four requests that straddle the turn
    // of one are not over the limit, so start early in a minute.
    let second = chrono::Timelike::second(&chrono::Utc::now());
    if second > 45 {
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(61 - second))).await;
    }
    let body = json!({"login": "nobody", "password": "Wrong-password-1"});
    for _ in 0..3 {
        assert_eq!(app.post("/v1/auth/login", body.clone()).await.status, 401);
    }
    let limited = app.post("/v1/auth/login", body).await;
    assert_problem(&limited, 429, "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn login_is_rate_limited_in_postgres(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "3")]);
    login_is_rate_limited(app).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn limits_are_configurable_per_endpoint(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[
            ("RATE_LIMIT_PER_MINUTE", "100"),
            ("RATE_LIMIT_LOGIN_PER_MINUTE", "3"),
        ],
    );
    login_is_rate_limited(app).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn login_is_rate_limited_in_redis(pool: PgPool) {
    let app = TestApp::with_config(pool.clone(), &[("RATE_LIMIT_PER_MINUTE", "3"), REDIS]);
    login_is_rate_limited(app).await;
    // (An unknown login's attempt counter stays in PostgreSQL: it is the
    // write a known account's attempt makes there, so both take as long.)
    let in_postgres: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rate_limits WHERE endpoint <> 'login-unknown'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(in_postgres, 0, "with Redis up, PostgreSQL is not used");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn with_redis_down_limits_and_revocation_fall_back_to_postgres(pool: PgPool) {
    let app = TestApp::with_config(
        pool.clone(),
        &[
            ("RATE_LIMIT_PER_MINUTE", "3"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ],
    );
    login_is_rate_limited(app).await;
    let app = TestApp::with_config(pool, &[("REDIS_URL", "redis://127.0.0.1:1")]);
    super::logout::logout_revokes_access_at_once(app).await;
}

/// The PostgreSQL counter commits without waiting for the WAL flush (every
/// request of one address queues on its row), and only its own commit: the
/// setting does not stay on the pooled connection for the next statement.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_postgres_counter_commits_asynchronously_and_alone(pool: PgPool) {
    use sqlx::postgres::PgPoolOptions;
    let one = PgPoolOptions::new()
        .max_connections(1)
        .connect(&tests::database_url(&pool))
        .await
        .unwrap();
    let start = chrono::Utc::now();
    let end = start + chrono::Duration::seconds(60);
    let mut counts = Vec::new();
    for _ in 0..3 {
        counts.push(
            shared::db::rate_limits::hit(&one, "203.0.113.9", "login", start, end)
                .await
                .unwrap(),
        );
    }
    assert_eq!(counts, [1, 2, 3]);
    let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&one)
        .await
        .unwrap();
    assert_eq!(setting, "on");
}
