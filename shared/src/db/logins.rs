//! Login bookkeeping on the users row: password attempts counted before
//! they are checked (the lockout), and the row locks a login or a refresh
//! takes so that a concurrent reset, suspension or revocation wins.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::domain::user::UserStatus;

/// A password attempt, counted before the password is checked.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub attempts: i32,
    pub locked_until: Option<DateTime<Utc>>,
    /// This attempt reached the threshold and set the lock.
    pub just_locked: bool,
}

/// Counts a password attempt of user `id` *before* the password is checked,
/// unless the account is locked: concurrent guesses cannot all pass a lock
/// check made before any of them is counted. At `threshold` consecutive
/// attempts the account locks for `minutes`; a right password clears the
/// count (and the lock) afterwards. `None` when the account is locked or
/// there is no user `id` (the unknown-login path runs the same statement,
/// so both take the same time).
pub async fn reserve_attempt(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    threshold: i32,
    minutes: i32,
) -> sqlx::Result<Option<Attempt>> {
    let row = sqlx::query!(
        r#"UPDATE users u SET
               failed_login_attempts = CASE WHEN u.locked_until IS NOT NULL THEN 1
                                            ELSE u.failed_login_attempts + 1 END,
               locked_until = CASE
                   WHEN (CASE WHEN u.locked_until IS NOT NULL THEN 1
                              ELSE u.failed_login_attempts + 1 END) >= $2
                       THEN now() + make_interval(mins => $3)
                   ELSE NULL END
           WHERE u.id = $1 AND (u.locked_until IS NULL OR u.locked_until <= now())
           RETURNING u.failed_login_attempts, u.locked_until"#,
        id,
        threshold,
        minutes
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| Attempt {
        attempts: row.failed_login_attempts,
        just_locked: row.locked_until.is_some(),
        locked_until: row.locked_until,
    }))
}

/// When the user's lock ends (`None`: not locked, or no such user).
pub async fn locked_until(
    conn: impl PgExecutor<'_>,
    id: Uuid,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar!(
        "SELECT locked_until FROM users WHERE id = $1 AND locked_until > now()",
        id
    )
    .fetch_optional(conn)
    .await?
    .flatten())
}

/// What a login re-checks once its password verified, under the row lock
/// that password resets, suspensions and deletions also take: a login that
/// raced one of them sees its outcome.
#[derive(Debug, Clone)]
pub struct LoginCheck {
    pub password_hash: String,
    pub status: UserStatus,
    pub deleted: bool,
}

pub async fn lock_for_login(
    conn: impl PgExecutor<'_>,
    id: Uuid,
) -> sqlx::Result<Option<LoginCheck>> {
    sqlx::query_as!(
        LoginCheck,
        r#"SELECT password_hash, status AS "status: UserStatus",
                  deleted_at IS NOT NULL AS "deleted!"
           FROM users WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Records a successful login: stamps `last_login_at` and stores a
/// re-hashed password when given one. The attempt count is cleared by
/// [`clear_attempts`] first.
pub async fn record_successful_login(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    rehash: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"UPDATE users SET last_login_at = now(), password_hash = COALESCE($2, password_hash)
           WHERE id = $1"#,
        id,
        rehash
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A right password of an account with a second factor: its own attempt
/// stops counting (and the lock it set, if it set one), but the failures
/// before it stay until the second factor succeeds, so that codes cannot
/// be guessed in rounds of password logins. `false` when a lock set by
/// other attempts is in force.
pub async fn release_attempt(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    mine: Option<DateTime<Utc>>,
) -> sqlx::Result<bool> {
    let released = sqlx::query!(
        "UPDATE users SET failed_login_attempts = GREATEST(failed_login_attempts - 1, 0),
                          locked_until = CASE WHEN locked_until = $2 THEN NULL
                                              ELSE locked_until END
         WHERE id = $1 AND (locked_until IS NULL OR locked_until <= now()
                            OR locked_until = $2)",
        id,
        mine
    )
    .execute(conn)
    .await?;
    Ok(released.rows_affected() == 1)
}

/// Stores a re-hashed password (a login whose hash used older parameters).
pub async fn store_rehash(conn: impl PgExecutor<'_>, id: Uuid, hash: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2 WHERE id = $1",
        id,
        hash
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A right password clears the attempt count, and the lock only if this
/// attempt set it (`mine`): a lock set meanwhile by other guesses stands.
/// `false` when such a lock is in force (the attempt answers 423).
pub async fn clear_attempts(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    mine: Option<DateTime<Utc>>,
) -> sqlx::Result<bool> {
    let cleared = sqlx::query!(
        "UPDATE users SET failed_login_attempts = 0, locked_until = NULL
         WHERE id = $1 AND (locked_until IS NULL OR locked_until <= now()
                            OR locked_until = $2)",
        id,
        mine
    )
    .execute(conn)
    .await?;
    Ok(cleared.rows_affected() == 1)
}
