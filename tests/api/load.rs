//! The short version of `cargo xtask load`: the mixed workload against a
//! real server on a TCP port for a few seconds, then the consistency audit.

use std::time::Duration;

use perf::client::Client;
use perf::load::{LoadOptions, run};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::TestApp;

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_short_mixed_load_leaves_a_consistent_database(pool: PgPool) {
    // Every request comes from 127.0.0.1: lift the per-IP limits as the
    // harness's own server does.
    let app = TestApp::with_config(
        pool.clone(),
        &[
            ("RATE_LIMIT_PER_MINUTE", "100000"),
            ("RATE_LIMIT_REGISTER_PER_MINUTE", "100000"),
            ("RATE_LIMIT_LOGIN_PER_MINUTE", "100000"),
            ("RATE_LIMIT_REFRESH_PER_MINUTE", "100000"),
        ],
    );
    let base = app.serve().await;
    let opts = LoadOptions {
        connections: 8,
        duration: Duration::from_secs(6),
    };
    let report = run(&Client::new(&base), &pool, &opts).await.unwrap();
    let text = report.markdown();
    println!("{text}");
    assert!(report.passed(), "{text}");
    // The mix really ran: every kind of request succeeded at least once.
    for (op, status) in [
        ("register", 201),
        ("login", 200),
        ("login_wrong_password", 401),
        ("me", 200),
        ("refresh", 200),
        ("profile_update", 200),
        ("logout", 204),
        ("admin_list", 200),
    ] {
        assert!(
            report.count(op, status) > 0,
            "no {op} answered {status}:\n{text}"
        );
    }
    assert!(report.requests() > 200, "{text}");
    assert_eq!(report.checks.len(), 12, "{text}");

    // The audit is not blind: a row it must catch makes it fail.
    sqlx::query(
        "UPDATE users SET failed_login_attempts = failed_login_attempts + 1
         WHERE username LIKE $1 AND id = (SELECT id FROM users WHERE username LIKE $1 LIMIT 1)",
    )
    .bind(format!("ld{}w%", report.run_id))
    .execute(&pool)
    .await
    .unwrap();
    let checks = perf::load::audit(&pool, &report).await.unwrap();
    let failed: Vec<_> = checks.iter().filter(|c| !c.ok()).map(|c| c.name).collect();
    assert_eq!(
        failed,
        ["accounts whose failed_login_attempts differs from the failures counted"]
    );
}
