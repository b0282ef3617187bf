//! Immediate revocation of access tokens by session id. With Redis, revoked
//! session ids live there with a TTL equal to the access-token lifetime (one
//! round trip per check); without it, or while it is down, the session's
//! refresh tokens in PostgreSQL decide.

use std::time::Duration;

use redis::AsyncCommands;
use uuid::Uuid;

use crate::cache::Cache;
use crate::db::{Db, sessions};
use crate::error::Error;

fn key(sid: Uuid) -> String {
    format!("revoked-session:{sid}")
}

/// Publishes revoked sessions to Redis (PostgreSQL already holds them as
/// revoked refresh tokens). A Redis failure is logged: the PostgreSQL check
/// remains the source of truth when Redis is unavailable.
pub async fn publish(cache: Option<&Cache>, sids: &[Uuid], ttl: Duration) {
    let Some(cache) = cache else { return };
    if sids.is_empty() {
        return;
    }
    let result = async {
        let mut conn = cache.conn().await?;
        let mut pipe = redis::pipe();
        for sid in sids {
            pipe.set_ex(key(*sid), 1, ttl.as_secs().max(1)).ignore();
        }
        pipe.query_async::<()>(&mut conn).await
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "could not publish revoked sessions to Redis");
    }
}

/// Is the session revoked (or ended)? Redis when configured and up, else PostgreSQL.
pub async fn is_revoked(cache: Option<&Cache>, db: &Db, sid: Uuid) -> Result<bool, Error> {
    if let Some(cache) = cache {
        let checked: redis::RedisResult<bool> = async {
            let mut conn = cache.conn().await?;
            conn.exists(key(sid)).await
        }
        .await;
        match checked {
            Ok(revoked) => return Ok(revoked),
            Err(err) => {
                tracing::warn!(error = %err, "Redis unavailable; checking revocation in PostgreSQL")
            }
        }
    }
    Ok(!sessions::is_live(&db.read, sid).await?)
}
