//! `POST /v1/users/me/password`, `POST /v1/users/me/email`, `DELETE
//! /v1/users/me`: the changes that need the current password (step-up),
//! counted toward the lockout and re-checked under lock.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::me;
use crate::api::admin::LAST_SUPERUSER;
use crate::api::auth::{
    VERIFICATION_TTL_HOURS, deliver, limit, verification_allowed, verification_mail,
};
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::logins::{self, Attempt};
use crate::db::{one_time_tokens, roles, sessions, users};
use crate::domain::user::User;
use crate::domain::{Email, Password};
use crate::error::{Error, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::security::lockout::{self, Claimant};
use crate::security::passwords::Verified;
use crate::security::{AuthUser, opaque};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmailRequest {
    pub new_email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfirmation {
    pub password: String,
}

/// The step-up check of a sensitive change (`endpoint` names its rate
/// limit): the caller's current password, rate-limited per user and counted
/// toward the login lockout. 429 over the limit, 423 while locked, 401
/// `invalid_credentials` for a wrong password (audited as a warning).
/// Returns the counted attempt, which [`step_up`] settles in the change's
/// transaction.
async fn confirm_password(
    state: &AppState,
    meta: &RequestMeta,
    endpoint: &str,
    user: &User,
    raw: &str,
) -> Result<Option<Attempt>> {
    limit(state, endpoint, &user.id.to_string()).await?;
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
async fn step_up(
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
    let live = users::caller(&mut *tx, auth.user_id, auth.session_id)
        .await?
        .is_some_and(|c| c.session_live);
    if !live {
        return Err(Error::Unauthorized);
    }
    lockout::right_password(tx, user.id, attempt).await
}

#[utoipa::path(
    post,
    path = "/v1/users/me/password",
    tag = "users",
    summary = "Change my password",
    request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed; other sessions revoked"),
    )
)]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    auth: AuthUser,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode> {
    let user = me(&state, &auth).await?;
    // The new password is judged first: a refused one must not count as a
    // wrong current password.
    let local_part = user.email.split('@').next().unwrap_or_default();
    let password = Password::parse(&body.new_password, &[&user.username, local_part])
        .map_err(|m| Error::field("new_password", m))?;
    let attempt = confirm_password(
        &state,
        &meta,
        "password-change",
        &user,
        &body.current_password,
    )
    .await?;
    let hash = match state.hasher.hash(&password).await {
        Ok(hash) => hash,
        Err(err) => {
            lockout::forget(&state, user.id, attempt).await?;
            return Err(err);
        }
    };
    let mut tx = state.db.write.begin().await?;
    step_up(&state, &mut tx, &auth, &user, attempt).await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    users::set_password(&mut *tx, user.id, &hash).await?;
    one_time_tokens::invalidate_password_resets(&mut *tx, user.id).await?;
    one_time_tokens::invalidate_email_verifications(&mut *tx, user.id).await?;
    sessions::revoke_user_sessions(&mut tx, user.id, Some(auth.session_id)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/users/me/email",
    tag = "users",
    summary = "Change my e-mail address",
    request_body = ChangeEmailRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Verification mail sent to the new address"),
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn change_email(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    auth: AuthUser,
    ApiJson(body): ApiJson<ChangeEmailRequest>,
) -> Result<StatusCode> {
    let email = Email::parse(&body.new_email).map_err(|m| Error::field("new_email", m))?;
    let user = me(&state, &auth).await?;
    let attempt = confirm_password(&state, &meta, "email-change", &user, &body.password).await?;
    let token = opaque::generate();
    let mut tx = state.db.write.begin().await?;
    step_up(&state, &mut tx, &auth, &user, attempt).await?;
    if users::email_taken(&mut *tx, email.as_str(), user.id).await? {
        tx.commit().await?;
        return Err(Error::EmailTaken);
    }
    if !verification_allowed(&state, &mut tx, email.as_str()).await? {
        tx.commit().await?;
        return Ok(StatusCode::ACCEPTED);
    }
    // This request supersedes earlier ones (and the registration's token),
    // and reset links mailed before it.
    one_time_tokens::create_email_verification(
        &mut *tx,
        user.id,
        email.as_str(),
        &opaque::hash(&token),
        Utc::now() + Duration::hours(VERIFICATION_TTL_HOURS),
        true,
    )
    .await?;
    one_time_tokens::invalidate_password_resets(&mut *tx, user.id).await?;
    audit::record(
        &mut *tx,
        &meta.audit(None),
        &AuditEvent::about_user(AuditAction::EmailChangeRequested, Some(user.id)),
    )
    .await?;
    tx.commit().await?;
    deliver(&state, verification_mail(&state, email.as_str(), &token)).await;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(
    delete,
    path = "/v1/users/me",
    tag = "users",
    summary = "Delete my account",
    request_body = PasswordConfirmation,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; every session revoked"),
    )
)]
pub(crate) async fn delete_me(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    auth: AuthUser,
    ApiJson(body): ApiJson<PasswordConfirmation>,
) -> Result<StatusCode> {
    let user = me(&state, &auth).await?;
    let attempt = confirm_password(&state, &meta, "account-delete", &user, &body.password).await?;
    let mut tx = state.db.write.begin().await?;
    roles::lock_privileges(&mut *tx).await?;
    step_up(&state, &mut tx, &auth, &user, attempt).await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    let before = roles::active_superusers(&mut *tx).await?;
    users::soft_delete(&mut *tx, user.id).await?;
    sessions::revoke_user_sessions(&mut tx, user.id, None).await?;
    one_time_tokens::invalidate_password_resets(&mut *tx, user.id).await?;
    one_time_tokens::invalidate_email_verifications(&mut *tx, user.id).await?;
    if before > 0 && roles::active_superusers(&mut *tx).await? == 0 {
        // Refused, but the password was right: the attempt does not count.
        tx.rollback().await?;
        lockout::forget(&state, user.id, attempt).await?;
        return Err(Error::Conflict(LAST_SUPERUSER));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
