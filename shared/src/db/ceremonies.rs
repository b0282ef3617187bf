//! `webauthn_ceremonies`: WebAuthn ceremony state kept in PostgreSQL when
//! Redis is not there (`mfa::ceremony`).

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

/// Keeps `state` under `key` for `ttl_seconds`, replacing an earlier one,
/// and removes a few expired rows on the way: unauthenticated starts
/// (rate-limited per client) cannot pile rows up until the nightly cleanup.
pub async fn put(
    conn: impl PgExecutor<'_>,
    key: &str,
    user_id: Option<Uuid>,
    state: &Value,
    ttl_seconds: i32,
) -> sqlx::Result<()> {
    sqlx::query!(
        "WITH pruned AS (
             DELETE FROM webauthn_ceremonies WHERE id IN (
                 SELECT id FROM webauthn_ceremonies WHERE expires_at < now()
                 LIMIT 20 FOR UPDATE SKIP LOCKED))
         INSERT INTO webauthn_ceremonies (id, user_id, state, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))
         ON CONFLICT (id) DO UPDATE
             SET user_id = EXCLUDED.user_id, state = EXCLUDED.state,
                 created_at = now(), expires_at = EXCLUDED.expires_at",
        key,
        user_id,
        state,
        f64::from(ttl_seconds)
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the state under `key`; returns it unless it had expired.
pub async fn take(conn: impl PgExecutor<'_>, key: &str) -> sqlx::Result<Option<Value>> {
    let row = sqlx::query!(
        r#"DELETE FROM webauthn_ceremonies WHERE id = $1
           RETURNING state, expires_at > now() AS "live!""#,
        key
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.filter(|r| r.live).map(|r| r.state))
}
