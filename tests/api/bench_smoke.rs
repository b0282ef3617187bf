//! A smoke run of the HTTP benchmark (`cargo xtask bench`, section 2) on a
//! small seeded database, so its code cannot rot: every route answers as the
//! benchmark expects, pgbench runs both floors, and the CPU per request is
//! measured.

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
    let url = tests::database_url(&pool);
    let plan = perf::http_bench::Plan {
        connection_counts: vec![2],
        duration: Duration::from_millis(400),
        routes: Vec::new(),
        // The server runs in this process (by name, other test binaries
        // running or exiting meanwhile would be counted too).
        server: perf::cpu::Server::ThisProcess,
        // wrk, where installed, is covered by its own test below.
        wrk: false,
    };
    let report = perf::http_bench::run(&client, &pool, &url, &plan)
        .await
        .unwrap();
    let routes: Vec<&str> = report.rows.iter().map(|r| r.route).collect();
    assert_eq!(
        routes,
        [
            "GET /v1/users/me",
            "GET /v1/users?q=",
            "GET /v1/admin/users",
            "POST /v1/auth/login",
            "POST /v1/auth/refresh",
        ]
    );
    for row in &report.rows {
        assert!(row.requests > 0, "{}: no requests", row.route);
        assert_eq!(row.errors, 0, "{}: {} errors", row.route, row.errors);
        assert!(row.latency.p50 > Duration::ZERO);
        assert!(row.cpu.server_us > 0.0, "{}: {:?}", row.route, row.cpu);
    }
    assert_eq!(report.floors.len(), 1);
    assert!(report.floors[0].tps > 0.0, "{:?}", report.floors);
    assert!(report.write_floor.as_ref().is_some_and(|f| f.tps > 0.0));
    assert!(report.rs256_sign_us > 0.0 && report.argon2_verify_ms > 0.0);
    let text = report.markdown();
    assert!(text.contains("| GET /v1/users/me | perf | 2 |"), "{text}");
    assert!(text.contains("/ read floor"), "{text}");
    assert!(text.contains("Refresh at 2 connections: bound"), "{text}");

    // Only the routes asked for.
    let plan = perf::http_bench::Plan {
        routes: vec!["POST /v1/auth/refresh".into()],
        ..plan
    };
    let report = perf::http_bench::run(&client, &pool, &url, &plan)
        .await
        .unwrap();
    let routes: Vec<&str> = report.rows.iter().map(|r| r.route).collect();
    assert_eq!(routes, ["POST /v1/auth/refresh"]);

    // The fixed-path reads through wrk, where it is installed.
    if perf::wrk::available() {
        let plan = perf::http_bench::Plan {
            routes: vec!["GET /v1/users/me".into(), "GET /v1/admin/users".into()],
            duration: Duration::from_secs(1),
            wrk: true,
            ..plan
        };
        let report = perf::http_bench::run(&client, &pool, &url, &plan)
            .await
            .unwrap();
        assert_eq!(report.rows.len(), 2);
        for row in &report.rows {
            assert_eq!(row.generator, "wrk");
            assert!(row.requests > 0 && row.rps > 0.0, "{row:?}");
            assert_eq!(row.errors, 0, "{row:?}");
        }
    }
}
