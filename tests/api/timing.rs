//! Login must not tell an unknown account from a wrong password by its
//! timing: both do one Argon2id verification with the production cost.

use std::time::{Duration, Instant};

use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::TestApp;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unknown_account_and_wrong_password_take_the_same_time(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[
            // The production cost (the API's defaults), not the suite's cheap one.
            ("ARGON2_MEMORY_KIB", "19456"),
            ("ARGON2_ITERATIONS", "2"),
            ("ARGON2_PARALLELISM", "1"),
            // 200 failures in a row: no lockout, no rate limit in the way.
            ("LOCKOUT_THRESHOLD", "1000000"),
            ("RATE_LIMIT_PER_MINUTE", "1000000"),
            ("RATE_LIMIT_LOGIN_PER_MINUTE", "1000000"),
        ],
    );
    app.register("alice").await;
    let wrong = json!({"login": "alice", "password": "Not-Her-Password-77"});
    let unknown = json!({"login": "nobody-here", "password": "Not-Her-Password-77"});
    // Warm both paths (pool connections, caches).
    for body in [&wrong, &unknown] {
        assert_eq!(app.post("/v1/auth/login", body.clone()).await.status, 401);
    }
    let (mut known_t, mut unknown_t) = (Vec::new(), Vec::new());
    // Interleaved, so both see the same machine load.
    for _ in 0..200 {
        for (body, into) in [(&wrong, &mut known_t), (&unknown, &mut unknown_t)] {
            let started = Instant::now();
            let response = app.post("/v1/auth/login", body.clone()).await;
            into.push(started.elapsed());
            assert_eq!(response.status, 401);
            assert_eq!(response.code(), Some("invalid_credentials"));
        }
    }
    let (known_m, unknown_m) = (median(known_t), median(unknown_t));
    let gap = (known_m.as_secs_f64() - unknown_m.as_secs_f64()).abs()
        / known_m.as_secs_f64().max(unknown_m.as_secs_f64());
    println!("median wrong password {known_m:?}, unknown account {unknown_m:?}, gap {gap:.3}");
    // A real hash was computed on both paths (no early return).
    assert!(known_m > Duration::from_millis(5), "{known_m:?}");
    assert!(unknown_m > Duration::from_millis(5), "{unknown_m:?}");
    assert!(gap < 0.10, "medians differ by {:.1} %", gap * 100.0);
}

/// A forgot-password answer does not tell a known address from an unknown
/// one by its timing: both wait out the same floor, within which the known
/// address's token and mail are done (the mail is there once it answers).
#[sqlx::test(migrator = "MIGRATOR")]
async fn forgot_password_answers_known_and_unknown_addresses_after_the_same_floor(pool: PgPool) {
    use shared::api::auth::FORGOT_ANSWER_FLOOR;
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "100")]);
    let alice = app.register("alice").await;
    for email in [alice.email.as_str(), "nobody-here@example.com"] {
        let started = Instant::now();
        let response = app
            .post("/v1/auth/password/forgot", json!({ "email": email }))
            .await;
        let took = started.elapsed();
        assert_eq!(response.status, 202, "{}", response.body);
        assert!(
            took >= FORGOT_ANSWER_FLOOR,
            "{email}: answered after {took:?}, before the floor"
        );
    }
    assert_eq!(
        app.mails_to(&alice.email)
            .iter()
            .filter(|m| m["text"]
                .as_str()
                .unwrap_or("")
                .contains("reset-password?token="))
            .count(),
        1,
        "the known address's mail was sent before the answer"
    );
}

/// A failure only a known address can meet (here its reset token cannot
/// be stored) is logged, not answered: the caller still gets 202, as for an
/// address nobody uses.
#[sqlx::test(migrator = "MIGRATOR")]
async fn forgot_password_answers_202_when_only_a_known_address_fails(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "100")]);
    let alice = app.register("alice").await;
    sqlx::query("ALTER TABLE password_reset_tokens RENAME TO password_reset_tokens_away")
        .execute(&app.pool)
        .await
        .expect("rename");
    let response = app
        .post("/v1/auth/password/forgot", json!({ "email": alice.email }))
        .await;
    assert_eq!(response.status, 202, "{}", response.body);
    assert!(app.mails_to(&alice.email).iter().all(|m| {
        !m["text"]
            .as_str()
            .unwrap_or("")
            .contains("reset-password?token=")
    }));
}
