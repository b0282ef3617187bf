//! Sessions and their refresh tokens: a session is the chain of tokens that
//! began with one login; each refresh revokes a token and links its successor.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::UserStatus;
use crate::domain::user::User;

/// A stored refresh token.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub session_expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub replaced_by: Option<Uuid>,
    pub device_fingerprint: Option<String>,
}

/// A token to store.
#[derive(Debug)]
pub struct NewRefreshToken<'a> {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub token_hash: &'a str,
    pub expires_at: DateTime<Utc>,
    pub session_expires_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<&'a str>,
    pub device_fingerprint: Option<&'a str>,
    /// RFC 8176 methods that authenticated the session.
    pub amr: &'a [String],
    /// When its last second factor was verified.
    pub mfa_verified_at: Option<DateTime<Utc>>,
}

pub async fn insert(conn: impl PgExecutor<'_>, new: &NewRefreshToken<'_>) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        r#"INSERT INTO refresh_tokens (id, user_id, session_id, token_hash, expires_at,
                                       session_expires_at, created_by_ip, user_agent,
                                       device_fingerprint, amr, mfa_verified_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id"#,
        Uuid::now_v7(),
        new.user_id,
        new.session_id,
        new.token_hash,
        new.expires_at,
        new.session_expires_at,
        new.ip,
        new.user_agent,
        new.device_fingerprint,
        new.amr,
        new.mfa_verified_at,
    )
    .fetch_one(conn)
    .await
}

/// The SQL of [`find_by_hash`] (for `EXPLAIN` and benchmarks).
pub const FIND_BY_HASH_SQL: &str = include_str!("../../queries/sessions/find_by_hash.sql");

/// The token with this hash, in whatever state.
pub async fn find_by_hash(
    conn: impl PgExecutor<'_>,
    token_hash: &str,
) -> sqlx::Result<Option<RefreshToken>> {
    sqlx::query_file_as!(
        RefreshToken,
        "queries/sessions/find_by_hash.sql",
        token_hash
    )
    .fetch_optional(conn)
    .await
}

/// The SQL of [`rotate`] (for `EXPLAIN` and benchmarks).
pub const ROTATE_SQL: &str = include_str!("../../queries/sessions/rotate.sql");

/// A refresh as [`rotate`] makes it: the presented token, the device it
/// must come from, and the successor to store when it may be spent.
#[derive(Debug)]
pub struct Rotation<'a> {
    pub presented_hash: &'a str,
    pub fingerprint: Option<&'a str>,
    /// The statuses whose users may still refresh.
    pub may_log_in: &'a [UserStatus],
    pub successor_id: Uuid,
    pub successor_hash: &'a str,
    pub ttl_days: i32,
    pub ip: Option<String>,
    pub user_agent: Option<&'a str>,
    pub request_id: &'a str,
}

/// What [`rotate`] found: the presented token's row, its user, and the
/// successor's expiry when the token was spent by this call.
#[derive(Debug, sqlx::FromRow)]
pub struct Rotated {
    #[sqlx(flatten)]
    pub user: User,
    pub token_id: Uuid,
    pub token_session_id: Uuid,
    pub token_expires_at: DateTime<Utc>,
    pub token_session_expires_at: DateTime<Utc>,
    pub token_revoked_at: Option<DateTime<Utc>>,
    pub token_replaced_by: Option<Uuid>,
    pub token_device_fingerprint: Option<String>,
    pub successor_expires_at: Option<DateTime<Utc>>,
    /// The session's methods (`amr`), when the token was spent.
    pub successor_amr: Option<Vec<String>>,
    /// The statement's `now()`: the clock the claim was decided by.
    pub db_now: DateTime<Utc>,
}

impl Rotated {
    /// The presented token as it was before this call.
    pub fn token(&self) -> RefreshToken {
        RefreshToken {
            id: self.token_id,
            user_id: self.user.id,
            session_id: self.token_session_id,
            expires_at: self.token_expires_at,
            session_expires_at: self.token_session_expires_at,
            revoked_at: self.token_revoked_at,
            replaced_by: self.token_replaced_by,
            device_fingerprint: self.token_device_fingerprint.clone(),
        }
    }
}

/// Rotates a refresh token in one statement (queries/sessions/rotate.sql):
/// the token is spent, its successor and the audit row are stored, and the
/// user row is share-locked, all in one implicit transaction, when the
/// token is live, from its device, and its user may log in. `None` for an
/// unknown token. (A runtime query: `#[sqlx(flatten)]` hides the row from
/// the compile-time check; the refresh tests cover it.)
pub async fn rotate(conn: impl PgExecutor<'_>, r: &Rotation<'_>) -> sqlx::Result<Option<Rotated>> {
    sqlx::query_as(ROTATE_SQL)
        .bind(r.presented_hash)
        .bind(r.successor_id)
        .bind(r.successor_hash)
        .bind(r.ttl_days)
        .bind(r.ip.as_deref())
        .bind(r.user_agent)
        .bind(r.fingerprint)
        .bind(r.may_log_in)
        .bind(r.request_id)
        .fetch_optional(conn)
        .await
}

/// Takes the user's row lock for the rest of the transaction before a
/// revocation: a refresh holds a share lock on it while it rotates, so a
/// successor committed by a racing refresh is seen and revoked too.
async fn lock_user(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "SELECT 1 AS one FROM users WHERE id = $1 FOR UPDATE",
        user_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(())
}

/// Revokes every live token of a session of `user_id`; returns how many.
pub async fn revoke_session(
    conn: &mut PgConnection,
    user_id: Uuid,
    session_id: Uuid,
) -> sqlx::Result<u64> {
    lock_user(&mut *conn, user_id).await?;
    Ok(sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE session_id = $1 AND user_id = $2 AND revoked_at IS NULL",
        session_id,
        user_id
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// Revokes every live session of a user but `keep`; returns the session ids.
pub async fn revoke_user_sessions(
    conn: &mut PgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> sqlx::Result<Vec<Uuid>> {
    lock_user(&mut *conn, user_id).await?;
    sqlx::query_scalar!(
        r#"WITH revoked AS (
               UPDATE refresh_tokens SET revoked_at = now()
               WHERE user_id = $1 AND revoked_at IS NULL
                 AND session_id IS DISTINCT FROM $2
               RETURNING session_id)
           SELECT DISTINCT session_id AS "session_id!" FROM revoked"#,
        user_id,
        keep
    )
    .fetch_all(conn)
    .await
}

/// A session as its user sees it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Session {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub device_fingerprint: Option<String>,
    #[sqlx(skip)]
    #[serde(default)]
    pub current: bool,
}

/// The user's live sessions, newest first (session ids are UUIDv7), after
/// `after`, at most `limit + 1`.
pub async fn list_live(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<Session>> {
    sqlx::query_as!(
        Session,
        r#"SELECT t.session_id AS id,
                  (SELECT min(s.created_at) FROM refresh_tokens s
                   WHERE s.session_id = t.session_id) AS "created_at!",
                  LEAST(t.expires_at, t.session_expires_at) AS "expires_at!",
                  t.created_by_ip AS ip_address, t.user_agent, t.device_fingerprint,
                  FALSE AS "current!"
           FROM refresh_tokens t
           WHERE t.user_id = $1 AND t.revoked_at IS NULL
             AND t.expires_at > now() AND t.session_expires_at > now()
             AND ($2::uuid IS NULL OR t.session_id < $2)
           ORDER BY t.session_id DESC LIMIT $3"#,
        user_id,
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await
}

/// Every session the user ever had (the GDPR export).
pub async fn list_all(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<Session>> {
    sqlx::query_as!(
        Session,
        r#"SELECT session_id AS "id!", min(created_at) AS "created_at!",
                  max(LEAST(expires_at, session_expires_at)) AS "expires_at!",
                  (array_agg(created_by_ip ORDER BY created_at DESC))[1] AS ip_address,
                  (array_agg(user_agent ORDER BY created_at DESC))[1] AS user_agent,
                  (array_agg(device_fingerprint ORDER BY created_at DESC))[1] AS device_fingerprint,
                  FALSE AS "current!"
           FROM refresh_tokens WHERE user_id = $1
           GROUP BY session_id ORDER BY session_id"#,
        user_id
    )
    .fetch_all(conn)
    .await
}

/// Revokes `session_id` if it belongs to `user_id`; `false` otherwise.
pub async fn revoke_own_session(
    conn: &mut PgConnection,
    user_id: Uuid,
    session_id: Uuid,
) -> sqlx::Result<bool> {
    Ok(revoke_session(conn, user_id, session_id).await? > 0)
}
