//! Second factors in a session's life: the second step of a login (the
//! `mfa_token` and a TOTP code, a recovery code or a passkey give the token
//! pair) and the step-up of a signed-in session. Each answer is counted toward the same
//! lockout as passwords before it is checked; only a right one clears the
//! count.

use serde_json::json;

use super::{Issued, start};
use crate::db::audit::{self, AuditAction, AuditContext, AuditEvent};
use crate::db::{logins, mfa, users};
use crate::domain::user::User;
use crate::error::{Error, Result};
use crate::http::RequestMeta;
use crate::metrics::{self, Event};
use crate::mfa::ceremony::{self, Ceremony};
use crate::mfa::{AMR_PASSWORD, Presented, amr};
use crate::security::AuthUser;
use crate::security::lockout::{self, Claimant};
use crate::security::opaque;
use crate::security::rate_limit::{self, Limit};
use crate::state::AppState;

/// The step-up of a user without a second factor.
pub const NO_FACTOR: &str = "No second factor is enabled.";

/// The second step of a login.
#[derive(Debug)]
pub struct SecondFactor<'a> {
    pub mfa_token: &'a str,
    pub presented: Presented,
}

/// Completes a login with its `mfa_token` and a second factor: a new
/// session (`amr` with `mfa`) and its token pair. 401 `mfa_token_invalid`
/// for an unknown, spent or expired token (or one issued before the
/// password changed); 401 `invalid_credentials` for a wrong, replayed or
/// used code (counted and audited); 423 while locked; 403 for an account
/// that may no longer log in. The token is spent only by a success.
pub async fn complete_login(
    state: &AppState,
    meta: &RequestMeta,
    step: &SecondFactor<'_>,
) -> Result<(Issued, User)> {
    let ctx = meta.audit(None);
    let hash = opaque::hash(step.mfa_token);
    let challenge = mfa::live_challenge(&state.db.write, &hash)
        .await?
        .ok_or(Error::MfaTokenInvalid)?;
    let user_id = challenge.user_id;
    rate_limit::hit(state, Limit::MfaUser, &user_id.to_string()).await?;
    // Before the attempt is counted: a 503 here judges nothing.
    let kept = passkey_challenge(state, &step.presented, Ceremony::Login(&hash)).await?;
    let attempt = lockout::reserve(state, Claimant::User(user_id)).await?;

    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &ctx).await?;
    let current = logins::lock_for_login(&mut *tx, user_id)
        .await?
        .filter(|u| !u.deleted)
        .ok_or(Error::MfaTokenInvalid)?;
    if !current
        .status
        .may_log_in(state.config.require_verified_email)
    {
        tx.rollback().await?;
        // Not judged: this attempt stops counting, the ones before stay.
        logins::release_attempt(&state.db.write, user_id, lockout::own_lock(attempt)).await?;
        return Err(Error::AccountDisabled);
    }
    let checked = state
        .mfa
        .check(&mut tx, user_id, &step.presented, kept.as_ref());
    let Some(factor_amr) = checked.await? else {
        tx.rollback().await?;
        return Err(wrong(state, &ctx, user_id, attempt).await);
    };
    if !mfa::spend_challenge(&mut *tx, &hash).await? {
        // A concurrent request spent it first: this one changes nothing
        // (its code is not used up).
        tx.rollback().await?;
        return Err(Error::MfaTokenInvalid);
    }
    lockout::right_password(&mut tx, user_id, attempt).await?;
    mfa::clear_failures(&mut *tx, user_id).await?;
    logins::record_successful_login(&mut *tx, user_id, None).await?;
    let amr = amr(&[AMR_PASSWORD, factor_amr]);
    let fingerprint = challenge.device_fingerprint.as_deref();
    let issued = start(state, &mut tx, user_id, meta, fingerprint, amr.clone()).await?;
    let mut event = AuditEvent::about_user(AuditAction::LoginSucceeded, Some(user_id));
    event.new_values = Some(json!({
        "session_id": issued.session_id,
        "amr": amr,
        "method": step.presented.method(),
    }));
    audit::record(&mut *tx, &ctx, &event).await?;
    tx.commit().await?;

    metrics::count(Event::LoginSuccess);
    let user = users::find_live(&state.db.write, user_id)
        .await?
        .ok_or(Error::MfaTokenInvalid)?;
    Ok((issued, user))
}

/// Step-up: a second factor verified in the caller's session, which may
/// then make the sensitive changes for `STEP_UP_MAX_AGE_SECONDS`. Counted
/// and refused as in [`complete_login`]. Returns a new access token of the
/// session, whose `amr` now says `mfa`.
pub async fn verify_for_step_up(
    state: &AppState,
    meta: &RequestMeta,
    auth: &AuthUser,
    presented: &Presented,
) -> Result<(String, Vec<String>)> {
    let ctx = meta.audit(None);
    rate_limit::hit(state, Limit::MfaUser, &auth.user_id.to_string()).await?;
    if !mfa::has_factor(&state.db.write, auth.user_id).await? {
        // Nothing to verify: not a wrong answer, and nothing is counted.
        return Err(Error::Conflict(NO_FACTOR));
    }
    let kept = passkey_challenge(state, presented, Ceremony::StepUp(auth.session_id)).await?;
    let attempt = lockout::reserve(state, Claimant::User(auth.user_id)).await?;
    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &ctx).await?;
    logins::lock_for_login(&mut *tx, auth.user_id)
        .await?
        .filter(|u| !u.deleted)
        .ok_or(Error::Unauthorized)?;
    let checked = state
        .mfa
        .check(&mut tx, auth.user_id, presented, kept.as_ref());
    let Some(factor_amr) = checked.await? else {
        tx.rollback().await?;
        return Err(wrong(state, &ctx, auth.user_id, attempt).await);
    };
    lockout::right_password(&mut tx, auth.user_id, attempt).await?;
    mfa::clear_failures(&mut *tx, auth.user_id).await?;
    // What authenticated the session stays (a passwordless session has no
    // `pwd` to claim), and the factor just verified joins it.
    let held: Vec<&str> = auth.amr.iter().map(String::as_str).collect();
    let amr = amr(&[&held, factor_amr]);
    if !mfa::mark_session_verified(&mut *tx, auth.session_id, &amr).await? {
        return Err(Error::Unauthorized);
    }
    let mut event = AuditEvent::about_user(AuditAction::MfaVerified, Some(auth.user_id));
    event.new_values = Some(json!({
        "session_id": auth.session_id,
        "method": presented.method(),
    }));
    audit::record(&mut *tx, &ctx, &event).await?;
    tx.commit().await?;
    let token = state
        .keys
        .issue(auth.user_id, auth.session_id, &amr)
        .map_err(Error::Internal)?;
    Ok((token, amr))
}

/// For a passkey's answer, the challenge its ceremony's start kept (taken:
/// one answer per challenge, right or wrong); `None` for other methods, or
/// when no challenge is waiting (the answer is then wrong).
async fn passkey_challenge(
    state: &AppState,
    presented: &Presented,
    ceremony: Ceremony<'_>,
) -> Result<Option<webauthn_rs::prelude::PasskeyAuthentication>> {
    match presented {
        Presented::Passkey(_) => ceremony::take(state, ceremony).await,
        _ => Ok(None),
    }
}

/// A wrong second factor, counted toward the lockout (audited as a
/// warning) and apart from it ([`mfa::record_failure`], which makes the
/// locks that follow last longer each time: `lockout::wrong_password`);
/// the error to answer with (401 `invalid_credentials`).
async fn wrong(
    state: &AppState,
    ctx: &AuditContext,
    user_id: uuid::Uuid,
    attempt: Option<logins::Attempt>,
) -> Error {
    if let Err(err) = mfa::record_failure(&state.db.write, user_id).await {
        return err.into();
    }
    let reason = "wrong_second_factor";
    match lockout::wrong_password(state, ctx, Some(user_id), attempt, reason, "warning").await {
        Ok(refusal) => refusal,
        Err(err) => err,
    }
}
