//! The nightly cleanup (EventBridge, 02:00 UTC): expired tokens (and the
//! `mfa_token`s of two-step logins, TOTP enrolments never confirmed, phone
//! codes and WebAuthn ceremony state),
//! old rate-limit windows, anonymisation after 90 days or past
//! `data_retention_until`, audit partitions ahead and past retention.
//! Works in bounded batches (short locks), skips rows another run holds,
//! and takes an advisory lock so overlapping runs do not both work.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// The advisory lock key of the cleanup job.
pub const LOCK_KEY: i64 = 0x5553_4552_434c_4e55; // "USERCLNU"

/// Rows touched per statement.
pub const DEFAULT_BATCH: i64 = 5_000;

/// Users anonymised per statement, as a share of the batch: one anonymisation
/// rewrites a row with nine indexes and writes its audit row (about 1 ms at
/// scale), so 5,000 at once held their row locks for several seconds; 1/20 of
/// the batch keeps each transaction well under a second.
const ANONYMIZE_SHARE: i64 = 20;

/// The job's input: an EventBridge Scheduled Event (its fields are ignored)
/// or `{"dry_run": true}` when invoked by hand.
#[derive(Debug, Default, Deserialize)]
pub struct CleanupInput {
    #[serde(default)]
    pub dry_run: bool,
}

/// What a run did (or, dry, would do): the cleanup output of docs/operations.md.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    pub dry_run: bool,
    pub deleted_refresh_tokens: i64,
    pub deleted_password_reset_tokens: i64,
    pub deleted_email_verification_tokens: i64,
    pub deleted_rate_limits: i64,
    pub anonymized_users: i64,
    pub retention_expired_users: i64,
    pub partitions_created: i64,
    pub partitions_dropped: i64,
    /// `mfa_token`s of two-step logins expired more than an hour ago.
    pub deleted_mfa_tokens: i64,
    /// TOTP enrolments started more than a day ago and never confirmed.
    pub deleted_pending_mfa_factors: i64,
    /// Phone verification codes expired more than a day ago.
    pub deleted_phone_codes: i64,
    /// WebAuthn ceremonies (kept in PostgreSQL) expired more than an hour ago.
    pub deleted_webauthn_ceremonies: i64,
}

/// Runs the cleanup; a run that finds the lock taken does nothing.
pub async fn run(pool: &PgPool, dry_run: bool, batch: i64) -> sqlx::Result<CleanupReport> {
    let mut lock = pool.acquire().await?;
    let locked = sqlx::query_scalar!("SELECT pg_try_advisory_lock($1) AS \"locked!\"", LOCK_KEY)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        tracing::warn!("another cleanup run holds the lock; nothing done");
        return Ok(CleanupReport {
            dry_run,
            ..Default::default()
        });
    }
    let report = if dry_run {
        preview(pool).await
    } else {
        work(pool, batch).await
    };
    sqlx::query_scalar!("SELECT pg_advisory_unlock($1) AS \"unlocked!\"", LOCK_KEY)
        .fetch_one(&mut *lock)
        .await?;
    let report = report?;
    tracing::info!(
        dry_run = report.dry_run,
        deleted_refresh_tokens = report.deleted_refresh_tokens,
        deleted_password_reset_tokens = report.deleted_password_reset_tokens,
        deleted_email_verification_tokens = report.deleted_email_verification_tokens,
        deleted_rate_limits = report.deleted_rate_limits,
        anonymized_users = report.anonymized_users,
        retention_expired_users = report.retention_expired_users,
        partitions_created = report.partitions_created,
        partitions_dropped = report.partitions_dropped,
        deleted_mfa_tokens = report.deleted_mfa_tokens,
        deleted_pending_mfa_factors = report.deleted_pending_mfa_factors,
        deleted_phone_codes = report.deleted_phone_codes,
        deleted_webauthn_ceremonies = report.deleted_webauthn_ceremonies,
        "cleanup finished"
    );
    Ok(report)
}

/// Repeats `step` (one bounded statement returning the rows it handled)
/// until it handles none; returns the total.
async fn drain<F, Fut>(mut step: F) -> sqlx::Result<i64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<i64>>,
{
    let mut total = 0;
    loop {
        let n = step().await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

async fn work(pool: &PgPool, batch: i64) -> sqlx::Result<CleanupReport> {
    let anonymize_batch = (batch / ANONYMIZE_SHARE).max(1);
    let deleted_refresh_tokens = drain(|| async {
        Ok(sqlx::query!(
            "DELETE FROM refresh_tokens WHERE id IN (
                 SELECT id FROM refresh_tokens
                 WHERE expires_at < now() - interval '7 days'
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
            batch
        )
        .execute(pool)
        .await?
        .rows_affected() as i64)
    })
    .await?;
    let deleted_password_reset_tokens = drain(|| async {
        Ok(sqlx::query!(
            "DELETE FROM password_reset_tokens WHERE id IN (
                 SELECT id FROM password_reset_tokens
                 WHERE expires_at < now() - interval '7 days'
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
            batch
        )
        .execute(pool)
        .await?
        .rows_affected() as i64)
    })
    .await?;
    let deleted_email_verification_tokens = drain(|| async {
        Ok(sqlx::query!(
            "DELETE FROM email_verification_tokens WHERE id IN (
                 SELECT id FROM email_verification_tokens
                 WHERE expires_at < now() - interval '7 days'
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
            batch
        )
        .execute(pool)
        .await?
        .rows_affected() as i64)
    })
    .await?;
    let deleted_rate_limits = drain(|| async {
        Ok(sqlx::query!(
            "DELETE FROM rate_limits WHERE id IN (
                 SELECT id FROM rate_limits
                 WHERE window_end < now() - interval '1 hour'
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
            batch
        )
        .execute(pool)
        .await?
        .rows_affected() as i64)
    })
    .await?;
    let deleted_mfa_tokens = drain(|| async {
        Ok(sqlx::query!(
            "DELETE FROM mfa_challenges WHERE token_hash IN (
                 SELECT token_hash FROM mfa_challenges
                 WHERE expires_at < now() - interval '1 hour'
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
            batch
        )
        .execute(pool)
        .await?
        .rows_affected() as i64)
    })
    .await?;
    let deleted_pending_mfa_factors = drain(|| async {
        Ok(sqlx::query!(
            "DELETE FROM mfa_factors WHERE id IN (
                 SELECT id FROM mfa_factors
                 WHERE confirmed_at IS NULL AND created_at < now() - interval '1 day'
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
            batch
        )
        .execute(pool)
        .await?
        .rows_affected() as i64)
    })
    .await?;
    let deleted_phone_codes = drain(|| async {
        Ok(sqlx::query!(
            "DELETE FROM phone_verifications WHERE id IN (
                 SELECT id FROM phone_verifications
                 WHERE expires_at < now() - interval '1 day'
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
            batch
        )
        .execute(pool)
        .await?
        .rows_affected() as i64)
    })
    .await?;
    let deleted_webauthn_ceremonies = drain(|| async {
        Ok(sqlx::query!(
            "DELETE FROM webauthn_ceremonies WHERE id IN (
                 SELECT id FROM webauthn_ceremonies
                 WHERE expires_at < now() - interval '1 hour'
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
            batch
        )
        .execute(pool)
        .await?
        .rows_affected() as i64)
    })
    .await?;
    let anonymized_users = drain(|| async {
        sqlx::query_scalar!(
            r#"SELECT count(*) FILTER (WHERE anonymize_user(id)) AS "n!" FROM (
                   SELECT id FROM users
                   WHERE deleted_at < now() - interval '90 days'
                     AND anonymized_at IS NULL
                   LIMIT $1 FOR UPDATE SKIP LOCKED) due"#,
            anonymize_batch
        )
        .fetch_one(pool)
        .await
    })
    .await?;
    let retention_expired_users = drain(|| async {
        sqlx::query_scalar!(
            r#"SELECT count(*) FILTER (WHERE anonymize_user(id)) AS "n!" FROM (
                   SELECT id FROM users
                   WHERE data_retention_until < CURRENT_DATE
                     AND anonymized_at IS NULL
                   LIMIT $1 FOR UPDATE SKIP LOCKED) due"#,
            anonymize_batch
        )
        .fetch_one(pool)
        .await
    })
    .await?;
    let partitions_created = sqlx::query_scalar!(
        r#"SELECT create_audit_partitions(
               (now() AT TIME ZONE 'UTC')::date,
               ((now() AT TIME ZONE 'UTC') + interval '3 months')::date) AS "n!""#
    )
    .fetch_one(pool)
    .await?;
    let partitions_dropped = sqlx::query_scalar!(
        r#"SELECT drop_audit_partitions_before(
               date_trunc('month', (now() AT TIME ZONE 'UTC') - interval '7 years')::date) AS "n!""#
    )
    .fetch_one(pool)
    .await?;
    Ok(CleanupReport {
        dry_run: false,
        deleted_refresh_tokens,
        deleted_password_reset_tokens,
        deleted_email_verification_tokens,
        deleted_rate_limits,
        anonymized_users,
        retention_expired_users,
        partitions_created: partitions_created.into(),
        partitions_dropped: partitions_dropped.into(),
        deleted_mfa_tokens,
        deleted_pending_mfa_factors,
        deleted_phone_codes,
        deleted_webauthn_ceremonies,
    })
}

async fn preview(pool: &PgPool) -> sqlx::Result<CleanupReport> {
    let row = sqlx::query!(
        r#"SELECT
             (SELECT count(*) FROM refresh_tokens WHERE expires_at < now() - interval '7 days') AS "refresh!",
             (SELECT count(*) FROM password_reset_tokens WHERE expires_at < now() - interval '7 days') AS "reset!",
             (SELECT count(*) FROM email_verification_tokens WHERE expires_at < now() - interval '7 days') AS "verify!",
             (SELECT count(*) FROM rate_limits WHERE window_end < now() - interval '1 hour') AS "rate!",
             (SELECT count(*) FROM mfa_challenges WHERE expires_at < now() - interval '1 hour') AS "mfa_tokens!",
             (SELECT count(*) FROM mfa_factors WHERE confirmed_at IS NULL
                AND created_at < now() - interval '1 day') AS "pending_factors!",
             (SELECT count(*) FROM phone_verifications
              WHERE expires_at < now() - interval '1 day') AS "phone_codes!",
             (SELECT count(*) FROM webauthn_ceremonies
              WHERE expires_at < now() - interval '1 hour') AS "ceremonies!",
             (SELECT count(*) FROM users WHERE deleted_at < now() - interval '90 days'
                AND anonymized_at IS NULL) AS "anon!",
             (SELECT count(*) FROM users WHERE data_retention_until < CURRENT_DATE
                AND (deleted_at IS NULL OR deleted_at >= now() - interval '90 days')
                AND anonymized_at IS NULL) AS "retention!",
             (SELECT count(*) FROM generate_series(
                  date_trunc('month', now() AT TIME ZONE 'UTC'),
                  date_trunc('month', (now() AT TIME ZONE 'UTC') + interval '3 months'),
                  interval '1 month') m
              WHERE to_regclass('audit_logs_' || to_char(m, 'YYYY_MM')) IS NULL) AS "create!",
             (SELECT count(*) FROM pg_inherits i
                JOIN pg_class c ON c.oid = i.inhrelid
                JOIN pg_class p ON p.oid = i.inhparent
              WHERE p.relname = 'audit_logs' AND c.relname ~ '^audit_logs_\d{4}_\d{2}$'
                AND (to_date(substring(c.relname from 12), 'YYYY_MM') + interval '1 month')::date
                    <= date_trunc('month', (now() AT TIME ZONE 'UTC') - interval '7 years')::date) AS "drop!""#
    )
    .fetch_one(pool)
    .await?;
    Ok(CleanupReport {
        dry_run: true,
        deleted_refresh_tokens: row.refresh,
        deleted_password_reset_tokens: row.reset,
        deleted_email_verification_tokens: row.verify,
        deleted_rate_limits: row.rate,
        anonymized_users: row.anon,
        retention_expired_users: row.retention,
        partitions_created: row.create,
        partitions_dropped: row.drop,
        deleted_mfa_tokens: row.mfa_tokens,
        deleted_pending_mfa_factors: row.pending_factors,
        deleted_phone_codes: row.phone_codes,
        deleted_webauthn_ceremonies: row.ceremonies,
    })
}
