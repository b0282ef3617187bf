//! Second factors (TOTP), recovery codes, the `mfa_token` of a two-step
//! login, and what a session knows of its second factor (`amr`, the time
//! of the last one).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A user's TOTP factor, confirmed or pending.
#[derive(Debug, Clone)]
pub struct TotpFactor {
    pub id: Uuid,
    pub secret_ciphertext: Vec<u8>,
    pub secret_key_id: String,
    pub last_used_step: Option<i64>,
    pub confirmed: bool,
    pub created_at: DateTime<Utc>,
}

/// A factor as its user (and the GDPR export) sees it: never the secret.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Factor {
    pub id: Uuid,
    /// `totp` or `webauthn` (a passkey).
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Does the user have a confirmed second factor?
pub async fn has_factor(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM mfa_factors
                          WHERE user_id = $1 AND confirmed_at IS NOT NULL) AS "exists!""#,
        user_id
    )
    .fetch_one(conn)
    .await
}

/// The kinds (`totp`, `webauthn`) of the user's confirmed factors.
pub async fn factor_kinds(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        "SELECT DISTINCT kind FROM mfa_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL",
        user_id
    )
    .fetch_all(conn)
    .await
}

/// The user's confirmed factors, oldest first.
pub async fn factors(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<Factor>> {
    sqlx::query_as!(
        Factor,
        r#"SELECT id, kind, name, created_at, last_used_at FROM mfa_factors
           WHERE user_id = $1 AND confirmed_at IS NOT NULL ORDER BY created_at, id"#,
        user_id
    )
    .fetch_all(conn)
    .await
}

/// Stores a pending TOTP enrolment (replacing an earlier pending one);
/// `None` when the user already has a confirmed TOTP factor.
pub async fn put_pending_totp(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    name: &str,
    ciphertext: &[u8],
    key_id: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        r#"INSERT INTO mfa_factors (user_id, kind, name, secret_ciphertext, secret_key_id)
           VALUES ($1, 'totp', $2, $3, $4)
           ON CONFLICT (user_id) WHERE kind = 'totp' DO UPDATE
               SET name = EXCLUDED.name, secret_ciphertext = EXCLUDED.secret_ciphertext,
                   secret_key_id = EXCLUDED.secret_key_id, last_used_step = NULL,
                   created_at = now()
               WHERE mfa_factors.confirmed_at IS NULL
           RETURNING id"#,
        user_id,
        name,
        ciphertext,
        key_id
    )
    .fetch_optional(conn)
    .await
}

/// The user's TOTP factor, row-locked until the transaction ends.
pub async fn totp_for_update(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
) -> sqlx::Result<Option<TotpFactor>> {
    sqlx::query_as!(
        TotpFactor,
        r#"SELECT id, secret_ciphertext AS "secret_ciphertext!",
                  secret_key_id AS "secret_key_id!", last_used_step,
                  confirmed_at IS NOT NULL AS "confirmed!", created_at
           FROM mfa_factors WHERE user_id = $1 AND kind = 'totp' FOR UPDATE"#,
        user_id
    )
    .fetch_optional(conn)
    .await
}

/// Accepts TOTP step `step` for factor `id` (and confirms a pending
/// factor): `false` when that step or a later one was accepted before.
pub async fn accept_step(conn: impl PgExecutor<'_>, id: Uuid, step: i64) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE mfa_factors SET last_used_step = $2, last_used_at = now(),
                                confirmed_at = COALESCE(confirmed_at, now())
         WHERE id = $1 AND (last_used_step IS NULL OR last_used_step < $2)",
        id,
        step
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the user's TOTP factor; `false` when there was none confirmed.
pub async fn delete_totp(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM mfa_factors WHERE user_id = $1 AND kind = 'totp'
         RETURNING confirmed_at IS NOT NULL AS confirmed",
        user_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(done.and_then(|row| row.confirmed).unwrap_or(false))
}

/// Replaces the user's recovery codes with `hashes`.
pub async fn replace_recovery_codes(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    hashes: &[String],
) -> sqlx::Result<()> {
    sqlx::query!(
        "WITH gone AS (DELETE FROM mfa_recovery_codes WHERE user_id = $1)
         INSERT INTO mfa_recovery_codes (user_id, code_hash) SELECT $1, unnest($2::text[])",
        user_id,
        hashes
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Spends the user's unused recovery code with this hash: `false` when
/// there is none (wrong, or used before).
pub async fn use_recovery_code(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    code_hash: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE mfa_recovery_codes SET used_at = now()
         WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        user_id,
        code_hash
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Unused recovery codes of the user.
pub async fn recovery_codes_left(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL"#,
        user_id
    )
    .fetch_one(conn)
    .await
}

/// Removes every factor, recovery code and pending `mfa_token` of the
/// user; the number of confirmed factors removed.
pub async fn delete_all(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"WITH codes AS (DELETE FROM mfa_recovery_codes WHERE user_id = $1),
                challenges AS (DELETE FROM mfa_challenges WHERE user_id = $1),
                failures AS (DELETE FROM mfa_failures WHERE user_id = $1),
                factors AS (DELETE FROM mfa_factors WHERE user_id = $1 RETURNING confirmed_at)
           SELECT count(confirmed_at) AS "n!" FROM factors"#,
        user_id
    )
    .fetch_one(conn)
    .await
}

/// Stores a new `mfa_token` (by its hash) living `ttl_seconds`; any other
/// pending one of the user dies.
pub async fn insert_challenge(
    conn: impl PgExecutor<'_>,
    token_hash: &str,
    user_id: Uuid,
    ttl_seconds: i32,
    fingerprint: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "WITH superseded AS (
             UPDATE mfa_challenges SET used_at = now()
             WHERE user_id = $2 AND used_at IS NULL AND expires_at > now())
         INSERT INTO mfa_challenges (token_hash, user_id, expires_at, device_fingerprint)
         VALUES ($1, $2, now() + make_interval(secs => $3), $4)",
        token_hash,
        user_id,
        f64::from(ttl_seconds),
        fingerprint
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A live `mfa_token`: unused, unexpired, and issued after the user's
/// password last changed.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub user_id: Uuid,
    pub device_fingerprint: Option<String>,
}

pub async fn live_challenge(
    conn: impl PgExecutor<'_>,
    token_hash: &str,
) -> sqlx::Result<Option<Challenge>> {
    sqlx::query_as!(
        Challenge,
        r#"SELECT c.user_id, c.device_fingerprint FROM mfa_challenges c
           JOIN users u ON u.id = c.user_id
           WHERE c.token_hash = $1 AND c.used_at IS NULL AND c.expires_at > now()
             AND (u.password_changed_at IS NULL OR u.password_changed_at <= c.created_at)"#,
        token_hash
    )
    .fetch_optional(conn)
    .await
}

/// Spends a live `mfa_token`: `false` when another request spent it first
/// (or it died meanwhile).
pub async fn spend_challenge(conn: impl PgExecutor<'_>, token_hash: &str) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE mfa_challenges SET used_at = now()
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()",
        token_hash
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What a step-up needs to know: does the user have a confirmed factor,
/// and when did the session (live tokens only) last verify one?
#[derive(Debug, Clone, Copy)]
pub struct StepUpState {
    pub has_factor: bool,
    pub verified_at: Option<DateTime<Utc>>,
}

pub async fn step_up_state(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    session_id: Uuid,
) -> sqlx::Result<StepUpState> {
    sqlx::query_as!(
        StepUpState,
        r#"SELECT EXISTS (SELECT 1 FROM mfa_factors
                          WHERE user_id = $1 AND confirmed_at IS NOT NULL) AS "has_factor!",
                  (SELECT max(mfa_verified_at) FROM refresh_tokens
                   WHERE session_id = $2 AND user_id = $1 AND revoked_at IS NULL) AS verified_at"#,
        user_id,
        session_id
    )
    .fetch_one(conn)
    .await
}

/// Records a second factor verified now in the session's live token(s),
/// adding `amr` to its methods; `false` when the session is not live.
pub async fn mark_session_verified(
    conn: impl PgExecutor<'_>,
    session_id: Uuid,
    amr: &[String],
) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE refresh_tokens
         SET mfa_verified_at = now(),
             amr = ARRAY(SELECT DISTINCT m FROM unnest(amr || $2::text[]) m ORDER BY m)
         WHERE session_id = $1 AND revoked_at IS NULL",
        session_id,
        amr
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Counts a wrong second factor of the user: the failures since the last
/// right one (neither a lock's end nor a password reset clears them).
pub async fn record_failure(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<i32> {
    sqlx::query_scalar!(
        "INSERT INTO mfa_failures (user_id, failures) VALUES ($1, 1)
         ON CONFLICT (user_id) DO UPDATE
             SET failures = mfa_failures.failures + 1, last_failed_at = now()
         RETURNING failures",
        user_id
    )
    .fetch_one(conn)
    .await
}

/// A lock was set on the account of `user_id`: counted when its second
/// factor has failures since its last success; the locks so far (`None`:
/// no failures, an ordinary lock).
pub async fn record_lock(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar!(
        "UPDATE mfa_failures SET locks = locks + 1
         WHERE user_id = $1
           AND EXISTS (SELECT 1 FROM mfa_factors
                       WHERE user_id = $1 AND confirmed_at IS NOT NULL)
         RETURNING locks",
        user_id
    )
    .fetch_optional(conn)
    .await
}

/// A right second factor (or an admin's unlock): the counts start again.
pub async fn clear_failures(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM mfa_failures WHERE user_id = $1", user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Lengthens the lock in force to `minutes × 2^doublings` from now, at
/// most a day; the new end (`None`: no lock in force).
pub async fn lengthen_lock(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    minutes: i32,
    doublings: i32,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar!(
        "UPDATE users
         SET locked_until = now() + LEAST(interval '24 hours',
                                          make_interval(mins => $2) * power(2, $3::int))
         WHERE id = $1 AND locked_until > now()
         RETURNING locked_until",
        user_id,
        minutes,
        doublings
    )
    .fetch_optional(conn)
    .await?
    .flatten())
}
