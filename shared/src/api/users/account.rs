//! `POST /v1/users/me/password`, `POST /v1/users/me/email`, `DELETE
//! /v1/users/me`: the changes that need the current password (step-up),
//! counted toward the lockout and re-checked under lock, and, for a user
//! with a second factor, one verified recently in this session.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use serde::Deserialize;

use crate::api::admin::LAST_SUPERUSER;
use crate::api::auth::verification_allowed;
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::{one_time_tokens, roles, sessions, users};
use crate::domain::{Email, Password};
use crate::error::{Error, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::mail::templates::{self, VERIFICATION_TTL_HOURS};
use crate::security::lockout;
use crate::security::rate_limit::Limit;
use crate::security::{Me, opaque};
use crate::session::{confirm_password, reauthenticate, require_recent_second_factor, step_up};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(schema_with = crate::domain::rules::password)]
    pub current_password: String,
    #[schema(schema_with = crate::domain::rules::new_password)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmailRequest {
    #[schema(schema_with = crate::domain::rules::email)]
    pub new_email: String,
    #[schema(schema_with = crate::domain::rules::password)]
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfirmation {
    #[schema(schema_with = crate::domain::rules::password)]
    pub password: String,
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
    Me { auth, user }: Me,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode> {
    // The new password is judged first: a refused one must not count as a
    // wrong current password.
    let local_part = user.email.split('@').next().unwrap_or_default();
    let password = Password::parse(&body.new_password, &[&user.username, local_part])
        .map_err(|m| Error::field("new_password", m))?;
    require_recent_second_factor(&state, &state.db.write, &auth).await?;
    let attempt = confirm_password(
        &state,
        &meta,
        Limit::PasswordChange,
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
    Me { auth, user }: Me,
    ApiJson(body): ApiJson<ChangeEmailRequest>,
) -> Result<StatusCode> {
    let email = Email::parse(&body.new_email).map_err(|m| Error::field("new_email", m))?;
    let token = opaque::generate();
    let mut tx = reauthenticate(
        &state,
        &meta,
        Limit::EmailChange,
        &auth,
        &user,
        &body.password,
    )
    .await?;
    let change = request_change(&state, &mut tx, &meta, user.id, &email, &token).await?;
    // The step-up's settled attempt stays, whatever the answer.
    tx.commit().await?;
    match change {
        Change::Taken => return Err(Error::EmailTaken),
        Change::Capped => {}
        Change::Requested => {
            let mail = templates::verification(&state.config, email.as_str(), &token);
            state.mailer.deliver(mail).await;
        }
    }
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
    Me { auth, user }: Me,
    ApiJson(body): ApiJson<PasswordConfirmation>,
) -> Result<StatusCode> {
    require_recent_second_factor(&state, &state.db.write, &auth).await?;
    let attempt =
        confirm_password(&state, &meta, Limit::AccountDelete, &user, &body.password).await?;
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

/// What an e-mail change request came to.
enum Change {
    /// Another account holds the address: 409.
    Taken,
    /// The address's hourly cap of verification mails is reached: 202, no mail.
    Capped,
    /// A verification token is stored: 202, and the mail goes.
    Requested,
}

/// In the step-up's transaction `tx`: the new address must be free and
/// within its mail cap; then its verification token is stored (superseding
/// earlier ones, the registration's too, and reset links mailed before) and
/// the request audited.
async fn request_change(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    meta: &RequestMeta,
    user_id: uuid::Uuid,
    email: &Email,
    token: &str,
) -> Result<Change> {
    if users::email_taken(&mut *tx, email.as_str(), user_id).await? {
        return Ok(Change::Taken);
    }
    if !verification_allowed(state, &mut *tx, email.as_str()).await? {
        return Ok(Change::Capped);
    }
    // This request supersedes earlier ones (and the registration's token),
    // and reset links mailed before it.
    one_time_tokens::create_email_verification(
        &mut *tx,
        user_id,
        email.as_str(),
        &opaque::hash(token),
        Utc::now() + Duration::hours(VERIFICATION_TTL_HOURS),
        true,
    )
    .await?;
    one_time_tokens::invalidate_password_resets(&mut *tx, user_id).await?;
    audit::record(
        &mut *tx,
        &meta.audit(None),
        &AuditEvent::about_user(AuditAction::EmailChangeRequested, Some(user_id)),
    )
    .await?;
    Ok(Change::Requested)
}
