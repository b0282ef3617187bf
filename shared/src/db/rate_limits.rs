//! Fixed-window request counters in PostgreSQL (the fallback when Redis is
//! not configured or down): one upsert per request.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// Counts one request of `identifier` on `endpoint` in the window starting
/// at `window_start`; returns the count including this one.
pub async fn hit(
    conn: impl PgExecutor<'_>,
    identifier: &str,
    endpoint: &str,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        "INSERT INTO rate_limits (identifier, endpoint, window_start, window_end)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (identifier, endpoint, window_start)
         DO UPDATE SET request_count = rate_limits.request_count + 1
         RETURNING request_count",
        identifier,
        endpoint,
        window_start,
        window_end
    )
    .fetch_one(conn)
    .await
}
