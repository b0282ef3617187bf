//! Phone verification codes: one live code per user, bound to the number
//! it was sent to, at most `PHONE_CODE_TRIES` wrong tries, capped per number
//! and per user per hour.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// Serialises code requests for one number until the transaction ends, so
/// that the hourly cap cannot be raced (by one user or several).
pub async fn lock_number(conn: impl PgExecutor<'_>, number: &str) -> sqlx::Result<()> {
    let key = format!("phone:{number}");
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext($1))", key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Codes sent in the last hour to `number` and to `user_id`, and when the
/// oldest of those that count toward the fuller cap leaves the window.
#[derive(Debug, Clone, Copy)]
pub struct RecentCodes {
    pub to_number: i64,
    pub to_user: i64,
    pub oldest: Option<DateTime<Utc>>,
    /// Codes sent by the whole service in the last hour.
    pub everyone: i64,
}

pub async fn recent(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    number: &str,
    ttl_minutes: i32,
) -> sqlx::Result<RecentCodes> {
    sqlx::query_as!(
        RecentCodes,
        r#"SELECT count(*) FILTER (WHERE phone_number = $2) AS "to_number!",
                  count(*) FILTER (WHERE user_id = $1) AS "to_user!",
                  min(created_at) AS oldest,
                  (SELECT count(*) FROM phone_verifications
                   WHERE expires_at > now() - interval '1 hour' + make_interval(mins => $3))
                   AS "everyone!"
           FROM phone_verifications
           WHERE (phone_number = $2 OR user_id = $1)
             AND created_at > now() - interval '1 hour'"#,
        user_id,
        number,
        ttl_minutes
    )
    .fetch_one(conn)
    .await
}

/// Is `number` verified by another live account?
pub async fn verified_elsewhere(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    number: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users
                          WHERE phone_number = $2 AND is_phone_verified
                            AND deleted_at IS NULL AND id <> $1) AS "taken!""#,
        user_id,
        number
    )
    .fetch_one(conn)
    .await
}

/// Stores a new code (its hash). The earlier live code stays until this
/// one was sent ([`supersede`]).
pub async fn insert(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    user_id: Uuid,
    number: &str,
    code_hash: &str,
    ttl_minutes: i32,
) -> sqlx::Result<()> {
    // The clock, not the transaction's start: a request that waited for
    // the user's row lock is stamped after the one that held it, so
    // "older" in [`supersede`] follows the lock order.
    sqlx::query!(
        "WITH t AS (SELECT clock_timestamp() AS at)
         INSERT INTO phone_verifications (id, user_id, phone_number, code_hash, created_at,
                                          expires_at)
         SELECT $1, $2, $3, $4, t.at, t.at + make_interval(mins => $5) FROM t",
        id,
        user_id,
        number,
        code_hash,
        ttl_minutes
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The code `id` was sent: the user's older live codes die (a newer one,
/// sent meanwhile by a concurrent request, stays).
pub async fn supersede(conn: impl PgExecutor<'_>, user_id: Uuid, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE phone_verifications SET used_at = now()
         WHERE user_id = $1 AND id <> $2 AND used_at IS NULL
           AND created_at < (SELECT created_at FROM phone_verifications WHERE id = $2)",
        user_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The code `id` could not be sent: it is removed, and counts toward no cap.
pub async fn remove(conn: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM phone_verifications WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The user's live code, row-locked until the transaction ends.
#[derive(Clone)]
pub struct LiveCode {
    pub id: Uuid,
    pub phone_number: String,
    pub code_hash: String,
    pub attempts: i32,
}

impl std::fmt::Debug for LiveCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // With the id, the hash gives the code back in 10^6 guesses.
        f.debug_struct("LiveCode")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

pub async fn live_for_update(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
) -> sqlx::Result<Option<LiveCode>> {
    sqlx::query_as!(
        LiveCode,
        "SELECT id, phone_number, code_hash, attempts FROM phone_verifications
         WHERE user_id = $1 AND used_at IS NULL AND expires_at > now()
         ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
        user_id
    )
    .fetch_optional(conn)
    .await
}

/// A wrong try: counted, and the code dies at `max_tries`.
pub async fn wrong_try(conn: impl PgExecutor<'_>, id: Uuid, max_tries: i32) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        "UPDATE phone_verifications
         SET attempts = attempts + 1,
             used_at = CASE WHEN attempts + 1 >= $2 THEN now() ELSE used_at END
         WHERE id = $1 RETURNING attempts",
        id,
        max_tries
    )
    .fetch_one(conn)
    .await
}

/// Spends the code.
pub async fn spend(conn: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE phone_verifications SET used_at = now() WHERE id = $1",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the user's number verified if it is still `number`; `false` when
/// it changed since the code was sent.
pub async fn mark_verified(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    number: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE users SET is_phone_verified = TRUE
         WHERE id = $1 AND phone_number = $2 AND deleted_at IS NULL",
        user_id,
        number
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
