//! Fixed-window rate limits per endpoint and identifier (client IP, login,
//! e-mail). Redis when configured (INCR and EXPIRE in one round trip), else,
//! or while Redis is down, the `rate_limits` table (one upsert).

use chrono::{DateTime, TimeZone, Utc};

use crate::cache::Cache;
use crate::db::{Db, rate_limits};
use crate::error::Error;
use crate::security::opaque;

/// Identifiers longer than this (in bytes) are stored as their SHA-256: a
/// login of 255 'İ' lower-cases to 510 characters, more than the column holds.
const MAX_IDENTIFIER_BYTES: usize = 128;

/// The key under which `identifier` is counted: itself, or its hash when long.
fn key_of(identifier: &str) -> std::borrow::Cow<'_, str> {
    if identifier.len() > MAX_IDENTIFIER_BYTES {
        format!("sha256:{}", opaque::hash(identifier)).into()
    } else {
        identifier.into()
    }
}

/// Counts one request; `Err(RateLimited)` when the window's `limit` is exceeded.
pub async fn check(
    cache: Option<&Cache>,
    db: &Db,
    endpoint: &str,
    identifier: &str,
    limit: u32,
    window_secs: i64,
) -> Result<(), Error> {
    let identifier = &*key_of(identifier);
    let now = Utc::now().timestamp();
    let start = now - now.rem_euclid(window_secs);
    let retry_after = (start + window_secs - now).max(1) as u64;
    let count = match count_in_redis(cache, endpoint, identifier, start, window_secs).await {
        Some(count) => count,
        None => {
            let window_start: DateTime<Utc> = Utc
                .timestamp_opt(start, 0)
                .single()
                .unwrap_or_else(Utc::now);
            let window_end = window_start + chrono::Duration::seconds(window_secs);
            i64::from(
                rate_limits::hit(&db.write, identifier, endpoint, window_start, window_end).await?,
            )
        }
    };
    if count > i64::from(limit) {
        return Err(Error::RateLimited {
            retry_after_secs: retry_after,
        });
    }
    Ok(())
}

async fn count_in_redis(
    cache: Option<&Cache>,
    endpoint: &str,
    identifier: &str,
    start: i64,
    window_secs: i64,
) -> Option<i64> {
    let cache = cache?;
    let key = format!("rate:{endpoint}:{identifier}:{start}");
    let result: redis::RedisResult<i64> = async {
        let mut conn = cache.conn().await?;
        let (count, _): (i64, bool) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .expire(&key, window_secs + 1)
            .query_async(&mut conn)
            .await?;
        Ok(count)
    }
    .await;
    match result {
        Ok(count) => Some(count),
        Err(err) => {
            tracing::warn!(error = %err, "Redis unavailable; rate limiting in PostgreSQL");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_identifiers_are_hashed_to_a_bounded_key() {
        assert_eq!(key_of("alice@example.com"), "alice@example.com");
        let long = "i\u{307}".repeat(255);
        let key = key_of(&long);
        assert!(key.starts_with("sha256:") && key.len() <= 80, "{key}");
        assert_ne!(key_of(&"a".repeat(200)), key_of(&"b".repeat(200)));
    }
}
