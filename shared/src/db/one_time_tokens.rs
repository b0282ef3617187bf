//! Single-use tokens: password resets (1 hour) and e-mail verifications (24
//! hours). A token dies when something supersedes it (docs/security.md):
//! superseded tokens get `used_at` / `verified_at`, as a used one does.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// The kinds of mail capped per address and hour, each counted apart.
#[derive(Debug, Clone, Copy)]
pub enum MailKind {
    PasswordReset,
    Verification,
}

/// Serialises mail requests for one address and kind until the transaction
/// ends, so that the hourly cap cannot be raced.
pub async fn lock_mail_address(
    conn: impl PgExecutor<'_>,
    kind: MailKind,
    address: &str,
) -> sqlx::Result<()> {
    let key = format!("mail:{kind:?}:{}", address.to_lowercase());
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext($1))", key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Issues a reset token; every other outstanding reset token of the user dies.
pub async fn create_password_reset(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    token_hash: &str,
    expires_at: DateTime<Utc>,
    ip: Option<String>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "WITH superseded AS (
             UPDATE password_reset_tokens SET used_at = now()
             WHERE user_id = $2 AND used_at IS NULL AND expires_at > now())
         INSERT INTO password_reset_tokens (id, user_id, token_hash, expires_at, ip_address)
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

/// Ends every outstanding reset token of the user (a completed reset, a
/// password change, an e-mail change).
pub async fn invalidate_password_resets(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE password_reset_tokens SET used_at = now()
         WHERE user_id = $1 AND used_at IS NULL AND expires_at > now()",
        user_id
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

/// Issues a verification token for `email`. An e-mail change request
/// (`supersede`) ends every other outstanding verification token of the user.
pub async fn create_email_verification(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    email: &str,
    token_hash: &str,
    expires_at: DateTime<Utc>,
    supersede: bool,
) -> sqlx::Result<()> {
    sqlx::query!(
        "WITH superseded AS (
             UPDATE email_verification_tokens SET verified_at = now()
             WHERE $6 AND user_id = $2 AND verified_at IS NULL AND expires_at > now())
         INSERT INTO email_verification_tokens (id, user_id, email, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        Uuid::now_v7(),
        user_id,
        email,
        token_hash,
        expires_at,
        supersede
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends every outstanding verification token of the user: a pending e-mail
/// change must not outlive a password reset or change, a revocation of
/// every session, or a suspension (it would hand the account to whoever
/// requested it).
pub async fn invalidate_email_verifications(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE email_verification_tokens SET verified_at = now()
         WHERE user_id = $1 AND verified_at IS NULL AND expires_at > now()",
        user_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The user of a usable verification token (read before the user's row is
/// locked, so that every transaction locks the user before its tokens).
pub async fn email_verification_user(
    conn: impl PgExecutor<'_>,
    token_hash: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "SELECT user_id FROM email_verification_tokens
         WHERE token_hash = $1 AND verified_at IS NULL AND expires_at > now()",
        token_hash
    )
    .fetch_optional(conn)
    .await
}

/// Verification mails sent to `email` (any user) in the last hour.
pub async fn recent_email_verifications(
    conn: impl PgExecutor<'_>,
    email: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM email_verification_tokens
           WHERE lower(email) = lower($1) AND created_at > now() - interval '1 hour'"#,
        email
    )
    .fetch_one(conn)
    .await
}

/// Uses a verification token atomically and ends the user's other
/// outstanding verification tokens; returns its user and address.
pub async fn consume_email_verification(
    conn: impl PgExecutor<'_>,
    token_hash: &str,
) -> sqlx::Result<Option<(Uuid, String)>> {
    let row = sqlx::query!(
        r#"WITH used AS (
               UPDATE email_verification_tokens SET verified_at = now()
               WHERE token_hash = $1 AND verified_at IS NULL AND expires_at > now()
               RETURNING id, user_id, email),
           others AS (
               UPDATE email_verification_tokens t SET verified_at = now()
               FROM used
               WHERE t.user_id = used.user_id AND t.id <> used.id
                 AND t.verified_at IS NULL AND t.expires_at > now())
           SELECT user_id, email FROM used"#,
        token_hash
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.user_id, r.email)))
}
