//! Single-use tokens: password resets (1 hour) and e-mail verifications (24 hours).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

pub async fn create_password_reset(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    token_hash: &str,
    expires_at: DateTime<Utc>,
    ip: Option<String>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO password_reset_tokens (id, user_id, token_hash, expires_at, ip_address)
         VALUES ($1, $2, $3, $4, $5::text::inet)",
        Uuid::now_v7(),
        user_id,
        token_hash,
        expires_at,
        ip
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Reset tokens issued to the user in the last hour.
pub async fn recent_password_resets(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM password_reset_tokens
           WHERE user_id = $1 AND created_at > now() - interval '1 hour'"#,
        user_id
    )
    .fetch_one(conn)
    .await
}

/// The user of a usable (unused, unexpired) reset token.
pub async fn find_password_reset(
    conn: impl PgExecutor<'_>,
    token_hash: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "SELECT user_id FROM password_reset_tokens
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()",
        token_hash
    )
    .fetch_optional(conn)
    .await
}

/// Uses a reset token atomically (once only); returns its user.
pub async fn consume_password_reset(
    conn: impl PgExecutor<'_>,
    token_hash: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "UPDATE password_reset_tokens SET used_at = now()
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
         RETURNING user_id",
        token_hash
    )
    .fetch_optional(conn)
    .await
}

pub async fn create_email_verification(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    email: &str,
    token_hash: &str,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO email_verification_tokens (id, user_id, email, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        Uuid::now_v7(),
        user_id,
        email,
        token_hash,
        expires_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Uses a verification token atomically; returns its user and address.
pub async fn consume_email_verification(
    conn: impl PgExecutor<'_>,
    token_hash: &str,
) -> sqlx::Result<Option<(Uuid, String)>> {
    let row = sqlx::query!(
        "UPDATE email_verification_tokens SET verified_at = now()
         WHERE token_hash = $1 AND verified_at IS NULL AND expires_at > now()
         RETURNING user_id, email",
        token_hash
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.user_id, r.email)))
}
