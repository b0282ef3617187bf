//! A smoke run of the HTTP benchmark (`cargo xtask bench`, section 2) on a
//! small seeded database, so its code cannot rot: every route answers as the
//! benchmark expects and pgbench runs the floor script.

use std::time::Duration;

use perf::client::Client;
use perf::seed::{SeedOptions, run as seed};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::TestApp;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_http_benchmark_runs_every_route_without_errors(pool: PgPool) {
    seed(
        &pool,
        &SeedOptions {
            users: 120,
            cleanup_backlog: false,
        },
    )
    .await
    .unwrap();
    let app = TestApp::with_config(
        pool.clone(),
        &[
            // Seeded hashes carry the production cost; keep it (a rehash on
            // every login would change what is measured).
            ("ARGON2_MEMORY_KIB", "19456"),
            ("ARGON2_ITERATIONS", "2"),
            ("RATE_LIMIT_PER_MINUTE", "1000000"),
            ("RATE_LIMIT_LOGIN_PER_MINUTE", "1000000"),
            ("RATE_LIMIT_REGISTER_PER_MINUTE", "1000000"),
            ("RATE_LIMIT_REFRESH_PER_MINUTE", "1000000"),
        ],
    );
    let client = Client::new(&app.serve().await);
    let report = perf::http_bench::run(&client, &pool, &[2], Duration::from_millis(400))
        .await
        .unwrap();
    let routes: Vec<&str> = report.rows.iter().map(|r| r.route).collect();
    assert_eq!(
        routes,
        [
            "GET /v1/users/me",
            "GET /v1/users?q=",
            "GET /v1/admin/users",
            "POST /v1/auth/refresh",
            "POST /v1/auth/login"
        ]
    );
    for row in &report.rows {
        assert!(row.requests > 0, "{}: no requests", row.route);
        assert_eq!(row.errors, 0, "{}: {} errors", row.route, row.errors);
        assert!(row.latency.p50 > Duration::ZERO);
    }

    let url = tests::database_url(&pool);
    let floors = perf::http_bench::floor(&pool, &url, &[2], Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(floors.len(), 1);
    assert!(floors[0].tps > 0.0, "{floors:?}");
    let text = perf::http_bench::HttpReport {
        rows: report.rows,
        floors,
    }
    .markdown();
    assert!(text.contains("| GET /v1/users/me | 2 |"), "{text}");
    assert!(text.contains("API / floor"), "{text}");
}
