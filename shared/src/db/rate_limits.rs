//! Fixed-window request counters in PostgreSQL (the fallback when Redis is
//! not configured or down): one upsert per request, committed asynchronously.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// Counts one request of `identifier` on `endpoint` in the window starting
/// at `window_start`; returns the count including this one.
///
/// Every request from one address upserts the same row, so they queue on
/// its lock; the statement commits without waiting for the WAL flush
/// (`synchronous_commit` off for its own transaction only), so the row is
/// held for the upsert alone. A crash may forget the last counts of the
/// current minute, which a rate limit can afford. It takes the pool, not a
/// transaction: the setting must not reach any other statement's commit.
pub async fn hit(
    pool: &sqlx::PgPool,
    identifier: &str,
    endpoint: &str,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        "INSERT INTO rate_limits (identifier, endpoint, window_start, window_end)
         SELECT $1, $2, $3, $4
         FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
         ON CONFLICT (identifier, endpoint, window_start)
         DO UPDATE SET request_count = rate_limits.request_count + 1
         RETURNING request_count",
        identifier,
        endpoint,
        window_start,
        window_end
    )
    .fetch_one(pool)
    .await
}

/// The attempt counter of a login that names no account: one row per login
/// (hashed), counted and locked exactly as `logins::reserve_attempt` counts
/// and locks an account, so that the answers (401, then 423 with the same
/// Retry-After) do not tell the two apart. `None` while locked.
pub async fn reserve_unknown_attempt(
    conn: impl PgExecutor<'_>,
    identifier: &str,
    threshold: i32,
    minutes: i32,
) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar!(
        r#"INSERT INTO rate_limits AS r (identifier, endpoint, window_start, window_end,
                                        request_count, blocked_until)
           VALUES ($1, 'login-unknown', 'epoch', now() + make_interval(mins => $3), 1,
                   CASE WHEN 1 >= $2 THEN now() + make_interval(mins => $3) END)
           ON CONFLICT (identifier, endpoint, window_start) DO UPDATE SET
               request_count = CASE WHEN r.blocked_until IS NOT NULL THEN 1
                                    ELSE r.request_count + 1 END,
               blocked_until = CASE
                   WHEN (CASE WHEN r.blocked_until IS NOT NULL THEN 1
                              ELSE r.request_count + 1 END) >= $2
                       THEN now() + make_interval(mins => $3)
                   ELSE NULL END,
               window_end = now() + make_interval(mins => $3)
           WHERE r.blocked_until IS NULL OR r.blocked_until <= now()
           RETURNING r.request_count"#,
        identifier,
        threshold,
        minutes
    )
    .fetch_optional(conn)
    .await
}

/// When the unknown login's lock ends, if it is locked.
pub async fn unknown_blocked_until(
    conn: impl PgExecutor<'_>,
    identifier: &str,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar!(
        "SELECT blocked_until FROM rate_limits
         WHERE identifier = $1 AND endpoint = 'login-unknown' AND window_start = 'epoch'
           AND blocked_until > now()",
        identifier
    )
    .fetch_optional(conn)
    .await?
    .flatten())
}
