//! The step-up check of a sensitive change (a new password or e-mail
//! address, deleting the account): the current password, rate-limited per
//! user, counted toward the login lockout, and everything re-checked under
//! the user's row lock in the change's own transaction. For a user with a
//! second factor, also a second factor verified in this session within
//! `STEP_UP_MAX_AGE_SECONDS` ([`require_recent_second_factor`]).

use crate::db::logins::{self, Attempt};
use crate::db::{callers, mfa};
use crate::domain::Password;
use crate::domain::user::User;
use crate::error::{Error, Result};
use crate::http::RequestMeta;
use crate::security::AuthUser;
use crate::security::lockout::{self, Claimant};
use crate::security::passwords::Verified;
use crate::security::rate_limit::{self, Limit};
use crate::state::AppState;

/// 403 `mfa_required` unless the caller has no second factor or this
/// session verified one within `STEP_UP_MAX_AGE_SECONDS`. Handlers call it
/// before anything is counted (a refusal here costs no lockout attempt),
/// and [`step_up`] again under the row lock.
pub async fn require_recent_second_factor(
    state: &AppState,
    conn: impl sqlx::PgExecutor<'_>,
    auth: &AuthUser,
) -> Result<()> {
    let now = mfa::step_up_state(conn, auth.user_id, auth.session_id).await?;
    if !now.has_factor {
        return Ok(());
    }
    let max_age = chrono::Duration::from_std(state.config.mfa.step_up_max_age)
        .unwrap_or(chrono::Duration::MAX);
    match now.verified_at {
        Some(at) if chrono::Utc::now() - at <= max_age => Ok(()),
        _ => Err(Error::MfaRequired),
    }
}

/// The whole re-authentication of a change that does nothing between its
/// checks: a recent second factor (refused before anything is counted),
/// the current password ([`confirm_password`], counted under `limit`), and
/// the change's transaction, opened by [`step_up`] under the row lock.
pub async fn reauthenticate(
    state: &AppState,
    meta: &RequestMeta,
    limit: Limit,
    auth: &AuthUser,
    user: &User,
    password: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    require_recent_second_factor(state, &state.db.write, auth).await?;
    let attempt = confirm_password(state, meta, limit, user, password).await?;
    let mut tx = state.db.write.begin().await?;
    step_up(state, &mut tx, auth, user, attempt).await?;
    Ok(tx)
}

/// The step-up check of a sensitive change (`limit` names its rate
/// limit): the caller's current password, rate-limited per user and
/// counted toward the login lockout. 429 over the limit, 423 while locked, 401
/// `invalid_credentials` for a wrong password (audited as a warning).
/// Returns the counted attempt, which [`step_up`] settles in the change's
/// transaction.
pub async fn confirm_password(
    state: &AppState,
    meta: &RequestMeta,
    limit: Limit,
    user: &User,
    raw: &str,
) -> Result<Option<Attempt>> {
    rate_limit::hit(state, limit, &user.id.to_string()).await?;
    let slot = state.hasher.slot().await?;
    let attempt = lockout::reserve(state, Claimant::User(user.id)).await?;
    let verified = match Password::candidate(raw) {
        Ok(password) => {
            state
                .hasher
                .verify_in(slot, &password, Some(&user.password_hash))
                .await?
        }
        Err(_) => Verified::No,
    };
    if verified == Verified::No {
        let ctx = meta.audit(None);
        let reason = "wrong_current_password";
        let failed =
            lockout::wrong_password(state, &ctx, Some(user.id), attempt, reason, "warning");
        return Err(failed.await?);
    }
    Ok(attempt)
}

/// Opens a step-up change in `tx`: locks the caller's row (as a reset, a
/// suspension or another change would) and checks that nothing happened
/// since the password was confirmed: the same password hash (else 401
/// `invalid_credentials`), a status that may log in (else 403), a live
/// session (else 401). Then the confirmed attempt stops counting.
pub async fn step_up(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    auth: &AuthUser,
    user: &User,
    attempt: Option<Attempt>,
) -> Result<()> {
    let current = logins::lock_for_login(&mut *tx, user.id)
        .await?
        .filter(|u| !u.deleted)
        .ok_or(Error::Unauthorized)?;
    if current.password_hash != user.password_hash {
        return Err(Error::InvalidCredentials);
    }
    if !current
        .status
        .may_log_in(state.config.require_verified_email)
    {
        return Err(Error::AccountDisabled);
    }
    let live = callers::caller(&mut *tx, auth.user_id, auth.session_id)
        .await?
        .is_some_and(|c| c.session_live);
    if !live {
        return Err(Error::Unauthorized);
    }
    require_recent_second_factor(state, &mut *tx, auth).await?;
    lockout::right_password(tx, user.id, attempt).await
}
