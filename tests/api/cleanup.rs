//! The nightly cleanup job through the data layer: what it removes, dry
//! runs, idempotence and the advisory lock.

use shared::db::MIGRATOR;
use shared::jobs::cleanup::{self, CleanupReport};
use sqlx::PgPool;
use uuid::Uuid;

type TestResult = anyhow::Result<()>;

async fn seed_due_rows(pool: &PgPool) -> anyhow::Result<(Uuid, Uuid)> {
    let user: Uuid = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash) VALUES ('alice', 'alice@example.com', 'x') RETURNING id",
    )
    .fetch_one(pool)
    .await?;
    let gone: Uuid = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, created_at, deleted_at, status, first_name)
         VALUES ('bob', 'bob@example.com', 'x', now() - interval '200 days', now() - interval '91 days', 'deleted', 'Bob')
         RETURNING id",
    )
    .fetch_one(pool)
    .await?;
    sqlx::query(
        "INSERT INTO users (username, email, password_hash, data_retention_until)
         VALUES ('carol', 'carol@example.com', 'x', CURRENT_DATE - 1)",
    )
    .execute(pool)
    .await?;
    // 7 expired refresh tokens (more than one batch of 3), one live.
    sqlx::query(
        "INSERT INTO refresh_tokens (user_id, session_id, token_hash, created_at, expires_at, session_expires_at)
         SELECT $1, gen_random_uuid(), 'old' || g, now() - interval '30 days', now() - interval '8 days', now() - interval '8 days'
         FROM generate_series(1, 7) g",
    )
    .bind(user)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO refresh_tokens (user_id, session_id, token_hash, expires_at, session_expires_at)
         VALUES ($1, gen_random_uuid(), 'live', now() + interval '1 day', now() + interval '1 day')",
    )
    .bind(user)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO password_reset_tokens (user_id, token_hash, created_at, expires_at)
         VALUES ($1, 'r', now() - interval '9 days', now() - interval '8 days')",
    )
    .bind(user)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO email_verification_tokens (user_id, email, token_hash, created_at, expires_at)
         VALUES ($1, 'a@example.com', 'v', now() - interval '9 days', now() - interval '8 days')",
    )
    .bind(user)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO rate_limits (identifier, endpoint, window_start, window_end)
         VALUES ('ip', 'login', now() - interval '2 hours', now() - interval '119 minutes')",
    )
    .execute(pool)
    .await?;
    // Two-step logins: one mfa_token expired two hours ago (due), one live;
    // a TOTP enrolment never confirmed for two days (due), and the
    // anonymised user's factor and recovery code (removed with the rest of
    // their data).
    sqlx::query(
        "INSERT INTO mfa_challenges (token_hash, user_id, created_at, expires_at)
         VALUES ('due', $1, now() - interval '3 hours', now() - interval '2 hours'),
                ('live', $1, now(), now() + interval '5 minutes')",
    )
    .bind(user)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO mfa_factors (user_id, kind, name, secret_ciphertext, secret_key_id,
                                  created_at, confirmed_at)
         VALUES ($1, 'totp', 'pending', '\\x00', 'k', now() - interval '2 days', NULL),
                ($2, 'totp', 'gone', '\\x00', 'k', now() - interval '100 days', now())",
    )
    .bind(user)
    .bind(gone)
    .execute(pool)
    .await?;
    // One phone code expired two days ago (due), one of today (kept).
    sqlx::query(
        "INSERT INTO phone_verifications (id, user_id, phone_number, code_hash, created_at, expires_at)
         VALUES (gen_random_uuid(), $1, '+15550100', 'h', now() - interval '2 days', now() - interval '47 hours'),
                (gen_random_uuid(), $1, '+15550100', 'h', now(), now() + interval '10 minutes')",
    )
    .bind(user)
    .execute(pool)
    .await?;
    // One WebAuthn ceremony expired two hours ago (due), one live (kept).
    sqlx::query(
        "INSERT INTO webauthn_ceremonies (id, user_id, state, created_at, expires_at)
         VALUES ('register:old', $1, '{}', now() - interval '3 hours', now() - interval '2 hours'),
                ('register:new', $1, '{}', now(), now() + interval '5 minutes')",
    )
    .bind(user)
    .execute(pool)
    .await?;
    sqlx::query("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, 'h')")
        .bind(gone)
        .execute(pool)
        .await?;
    sqlx::query("SELECT create_audit_partitions('2015-01-01', '2015-02-01')")
        .execute(pool)
        .await?;
    Ok((user, gone))
}

fn expected(dry_run: bool) -> CleanupReport {
    CleanupReport {
        dry_run,
        deleted_refresh_tokens: 7,
        deleted_password_reset_tokens: 1,
        deleted_email_verification_tokens: 1,
        deleted_rate_limits: 1,
        anonymized_users: 1,
        retention_expired_users: 1,
        partitions_created: 0,
        partitions_dropped: 2,
        deleted_mfa_tokens: 1,
        deleted_pending_mfa_factors: 1,
        deleted_phone_codes: 1,
        deleted_webauthn_ceremonies: 1,
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cleanup_removes_what_is_due_in_batches_and_is_idempotent(pool: PgPool) -> TestResult {
    let (_, gone) = seed_due_rows(&pool).await?;
    let report = cleanup::run(&pool, false, 3).await?;
    assert_eq!(report, expected(false));
    let mfa_left: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM mfa_challenges), (SELECT count(*) FROM mfa_factors),
                (SELECT count(*) FROM mfa_recovery_codes)",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(mfa_left, (1, 0, 0), "the live mfa_token only");

    let left: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM refresh_tokens")
        .fetch_all(&pool)
        .await?;
    assert_eq!(left, ["live"]);
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(gone)
        .fetch_one(&pool)
        .await?;
    assert_eq!(email, format!("anonymized.{gone}@deleted.local"));
    let marked: bool =
        sqlx::query_scalar("SELECT anonymized_at IS NOT NULL FROM users WHERE id = $1")
            .bind(gone)
            .fetch_one(&pool)
            .await?;
    assert!(marked, "anonymisation is recorded in anonymized_at");

    let again = cleanup::run(&pool, false, 3).await?;
    assert_eq!(
        again,
        CleanupReport {
            dry_run: false,
            ..Default::default()
        }
    );
    Ok(())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_dry_run_counts_without_changing_anything(pool: PgPool) -> TestResult {
    seed_due_rows(&pool).await?;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens")
        .fetch_one(&pool)
        .await?;
    let report = cleanup::run(&pool, true, 3).await?;
    assert_eq!(report, expected(true));
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens")
        .fetch_one(&pool)
        .await?;
    assert_eq!(before, after);
    Ok(())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_run_that_finds_the_lock_taken_does_nothing(pool: PgPool) -> TestResult {
    seed_due_rows(&pool).await?;
    let mut holder = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(shared::jobs::cleanup::LOCK_KEY)
        .execute(&mut *holder)
        .await?;
    let report = cleanup::run(&pool, false, 3).await?;
    assert_eq!(report.deleted_refresh_tokens, 0);
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut *holder)
        .await?;
    drop(holder);
    let report = cleanup::run(&pool, false, 3).await?;
    assert_eq!(report.deleted_refresh_tokens, 7);
    Ok(())
}

/// Anonymisation is told by `anonymized_at`, not by the anonymised address:
/// a user who signed up with an address of that form is still anonymised
/// when due, and can be restored before.
#[sqlx::test(migrator = "MIGRATOR")]
async fn an_address_that_looks_anonymised_is_not_taken_for_one(pool: PgPool) -> TestResult {
    let lookalike = "anonymized.mallory@deleted.local";
    let mallory: Uuid = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, created_at, deleted_at, status)
         VALUES ('mallory', $1, 'x', now() - interval '200 days', now() - interval '91 days', 'deleted')
         RETURNING id",
    )
    .bind(lookalike)
    .fetch_one(&pool)
    .await?;
    let restored = shared::db::users::restore(&pool, mallory).await?;
    assert!(
        restored,
        "a soft-deleted user with such an address can be restored"
    );
    sqlx::query("UPDATE users SET deleted_at = now() - interval '91 days', status = 'deleted' WHERE id = $1")
        .bind(mallory)
        .execute(&pool)
        .await?;
    let report = cleanup::run(&pool, false, 100).await?;
    assert_eq!(report.anonymized_users, 1);
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(mallory)
        .fetch_one(&pool)
        .await?;
    assert_eq!(email, format!("anonymized.{mallory}@deleted.local"));
    Ok(())
}
