//! Passkeys: `mfa_factors` rows of kind `webauthn`, which hold the
//! credential (its id, the public key, the counter and the backup flags)
//! instead of a sealed secret. Always confirmed: a registration is stored
//! only once it has verified.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::mfa::passkeys::Stored;

/// A passkey as its owner sees it: never the key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PasskeyInfo {
    pub id: Uuid,
    pub name: String,
    /// The authenticator may sync it to other devices (a synced passkey).
    pub backup_eligible: bool,
    /// It is backed up (synced) now.
    pub backup_state: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A stored credential, for a ceremony.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: Uuid,
    pub user_id: Uuid,
    pub credential: Value,
    pub sign_count: i64,
}

/// The user's passkeys, oldest first.
pub async fn list(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<PasskeyInfo>> {
    sqlx::query_as!(
        PasskeyInfo,
        r#"SELECT id, name, backup_eligible AS "backup_eligible!",
                  backup_state AS "backup_state!", created_at, last_used_at
           FROM mfa_factors WHERE user_id = $1 AND kind = 'webauthn'
           ORDER BY created_at, id"#,
        user_id
    )
    .fetch_all(conn)
    .await
}

/// The user's credentials (for a challenge, or to exclude at registration).
pub async fn credentials(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
) -> sqlx::Result<Vec<Credential>> {
    sqlx::query_as!(
        Credential,
        r#"SELECT id, user_id, credential AS "credential!", sign_count AS "sign_count!"
           FROM mfa_factors WHERE user_id = $1 AND kind = 'webauthn'
           ORDER BY created_at, id"#,
        user_id
    )
    .fetch_all(conn)
    .await
}

/// The credential with this id, whoever holds it (no lock: a passwordless
/// answer is verified before anything about its account is locked).
pub async fn by_credential_id(
    conn: impl PgExecutor<'_>,
    credential_id: &[u8],
) -> sqlx::Result<Option<Credential>> {
    sqlx::query_as!(
        Credential,
        r#"SELECT id, user_id, credential AS "credential!", sign_count AS "sign_count!"
           FROM mfa_factors WHERE credential_id = $1 AND kind = 'webauthn'"#,
        credential_id
    )
    .fetch_optional(conn)
    .await
}

/// The credential with this id, whoever holds it, row-locked until the
/// transaction ends (a counter is checked and moved under the lock).
pub async fn by_credential_id_for_update(
    conn: impl PgExecutor<'_>,
    credential_id: &[u8],
) -> sqlx::Result<Option<Credential>> {
    sqlx::query_as!(
        Credential,
        r#"SELECT id, user_id, credential AS "credential!", sign_count AS "sign_count!"
           FROM mfa_factors WHERE credential_id = $1 AND kind = 'webauthn' FOR UPDATE"#,
        credential_id
    )
    .fetch_optional(conn)
    .await
}

/// Stores a verified registration; `None` when this credential is
/// registered already (to anyone).
pub async fn insert(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    name: &str,
    stored: &Stored,
) -> sqlx::Result<Option<PasskeyInfo>> {
    sqlx::query_as!(
        PasskeyInfo,
        r#"INSERT INTO mfa_factors (user_id, kind, name, credential_id, credential, sign_count,
                                   backup_eligible, backup_state, confirmed_at)
           VALUES ($1, 'webauthn', $2, $3, $4, $5, $6, $7, now())
           ON CONFLICT (credential_id) WHERE credential_id IS NOT NULL DO NOTHING
           RETURNING id, name, backup_eligible AS "backup_eligible!",
                     backup_state AS "backup_state!", created_at, last_used_at"#,
        user_id,
        name,
        &stored.credential_id,
        &stored.credential,
        stored.sign_count,
        stored.backup_eligible,
        stored.backup_state
    )
    .fetch_optional(conn)
    .await
}

/// Records a verified assertion: the moved counter and backup flags.
pub async fn record_use(conn: impl PgExecutor<'_>, id: Uuid, stored: &Stored) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE mfa_factors SET credential = $2, sign_count = $3, backup_eligible = $4,
                                backup_state = $5, last_used_at = now()
         WHERE id = $1",
        id,
        &stored.credential,
        stored.sign_count,
        stored.backup_eligible,
        stored.backup_state
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Renames one of the user's passkeys; `None` when it has no such one.
pub async fn rename(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
    name: &str,
) -> sqlx::Result<Option<PasskeyInfo>> {
    sqlx::query_as!(
        PasskeyInfo,
        r#"UPDATE mfa_factors SET name = $3
           WHERE id = $2 AND user_id = $1 AND kind = 'webauthn'
           RETURNING id, name, backup_eligible AS "backup_eligible!",
                     backup_state AS "backup_state!", created_at, last_used_at"#,
        user_id,
        id,
        name
    )
    .fetch_optional(conn)
    .await
}

/// Deletes one of the user's passkeys; `false` when it has no such one.
pub async fn delete(conn: impl PgExecutor<'_>, user_id: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM mfa_factors WHERE id = $2 AND user_id = $1 AND kind = 'webauthn'",
        user_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many passkeys the user holds.
pub async fn count(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM mfa_factors WHERE user_id = $1 AND kind = 'webauthn'"#,
        user_id
    )
    .fetch_one(conn)
    .await
}
