//! `POST /v1/auth/password/forgot` and `/reset`: the reset mail (capped per
//! address) and the reset itself, which ends every session.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::json;

use super::client;
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::logins;
use crate::db::one_time_tokens::{self, MailKind};
use crate::db::{sessions, users};
use crate::domain::{Email, Password};
use crate::error::{Error, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::mail::templates::{self, RESET_TTL_HOURS};
use crate::security::opaque;
use crate::security::rate_limit::{self, Limit};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    #[schema(schema_with = crate::domain::rules::email)]
    pub email: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    pub token: String,
    #[schema(schema_with = crate::domain::rules::new_password)]
    pub new_password: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/password/forgot",
    tag = "auth",
    summary = "Request a password-reset mail",
    request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "Accepted, whether or not the account exists"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn forgot_password(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<ForgotPasswordRequest>,
) -> Result<StatusCode> {
    rate_limit::hit(&state, Limit::PasswordForgot, &client(&meta)).await?;
    let email = Email::parse(&body.email).map_err(|m| Error::field("email", m))?;
    rate_limit::hit(&state, Limit::PasswordForgotEmail, email.as_str()).await?;
    let answer_at = tokio::time::Instant::now() + FORGOT_ANSWER_FLOOR;
    // Both kinds of address take this look-up, so its failure (503) tells
    // nothing; what follows happens for a known address only, so its
    // failures are logged and the answer stays 202.
    let known = users::id_by_email(&state.db.write, email.as_str()).await?;
    if let Some((user_id, _status)) = known
        && let Err(err) = send_reset(&state, &meta, user_id, &email).await
    {
        tracing::error!(error = ?err, "the password-reset mail was not sent");
    }
    tokio::time::sleep_until(answer_at).await;
    Ok(StatusCode::ACCEPTED)
}

/// How long every accepted forgot-password request takes at least. The work
/// for a known address (a token, its audit row, the mail) is done within
/// it, and an unknown address waits it out too, so the time to answer does
/// not tell whether an account uses the address (OWASP Forgot Password cheat
/// sheet: a uniform response time). The mail is sent before the answer, not
/// after it: a Lambda container may be frozen once it has answered. A mail
/// service slower than this floor still shows (docs/security.md).
pub const FORGOT_ANSWER_FLOOR: std::time::Duration = std::time::Duration::from_millis(500);

/// The reset token and its mail, for the account `user_id` at `email`.
async fn send_reset(
    state: &AppState,
    meta: &RequestMeta,
    user_id: uuid::Uuid,
    email: &Email,
) -> Result<()> {
    if let Some(token) = issue_reset(state, meta, user_id, email).await? {
        let mail = templates::password_reset(&state.config, email.as_str(), &token);
        state.mailer.deliver(mail).await;
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/auth/password/reset",
    tag = "auth",
    summary = "Set a new password with a reset token",
    request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Password set; every session revoked"),
        (status = 400, description = "Malformed JSON, or the token is unknown, used or expired (invalid_token)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<ResetPasswordRequest>,
) -> Result<StatusCode> {
    rate_limit::hit(&state, Limit::PasswordReset, &client(&meta)).await?;
    let token_hash = opaque::hash(&body.token);
    let user_id = one_time_tokens::find_password_reset(&state.db.write, &token_hash)
        .await?
        .ok_or(Error::InvalidToken)?;
    let user = users::find_live(&state.db.write, user_id)
        .await?
        .ok_or(Error::InvalidToken)?;
    let local_part = user.email.split('@').next().unwrap_or_default();
    let password = Password::parse(&body.new_password, &[&user.username, local_part])
        .map_err(|m| Error::field("new_password", m))?;
    let hash = state.hasher.hash(&password).await?;

    let ctx = meta.audit(None);
    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &ctx).await?;
    // The user's row before its tokens, as every transaction takes them.
    logins::lock_for_login(&mut *tx, user_id).await?;
    if one_time_tokens::consume_password_reset(&mut *tx, &token_hash)
        .await?
        .is_none()
    {
        return Err(Error::InvalidToken);
    }
    one_time_tokens::invalidate_password_resets(&mut *tx, user_id).await?;
    // A pending e-mail change (perhaps an attacker's) dies with the old password.
    one_time_tokens::invalidate_email_verifications(&mut *tx, user_id).await?;
    users::set_password(&mut *tx, user_id, &hash).await?;
    let revoked = sessions::revoke_user_sessions(&mut tx, user_id, None).await?;
    let mut event = AuditEvent::about_user(AuditAction::PasswordResetCompleted, Some(user_id));
    event.new_values = Some(json!({"sessions_revoked": revoked.len()}));
    audit::record(&mut *tx, &ctx, &event).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A reset token for `user_id`, under the per-address hourly cap, audited,
/// in one transaction: the token to mail, or `None` over the cap.
async fn issue_reset(
    state: &AppState,
    meta: &RequestMeta,
    user_id: uuid::Uuid,
    email: &Email,
) -> Result<Option<String>> {
    let token = opaque::generate();
    let mut tx = state.db.write.begin().await?;
    // The user's row before its tokens, as every transaction takes them.
    logins::lock_for_login(&mut *tx, user_id).await?;
    one_time_tokens::lock_mail_address(&mut *tx, MailKind::PasswordReset, email.as_str()).await?;
    let recent = one_time_tokens::recent_password_resets(&mut *tx, user_id).await?;
    if recent >= i64::from(state.config.reset_mails_per_hour) {
        tracing::info!("password reset mail cap reached; request answered without a mail");
        return Ok(None);
    }
    store_reset(&mut tx, meta, None, user_id, &token).await?;
    tx.commit().await?;
    Ok(Some(token))
}

/// Stores a reset token for `user_id` (by its hash, for `RESET_TTL_HOURS`)
/// and audits the request as `actor`'s (an admin's) or the user's own, in
/// `tx`, whose caller holds the user's row lock.
pub(crate) async fn store_reset(
    tx: &mut sqlx::PgConnection,
    meta: &RequestMeta,
    actor: Option<uuid::Uuid>,
    user_id: uuid::Uuid,
    token: &str,
) -> Result<()> {
    one_time_tokens::create_password_reset(
        &mut *tx,
        user_id,
        &opaque::hash(token),
        Utc::now() + Duration::hours(RESET_TTL_HOURS),
        meta.ip.map(|ip| ip.to_string()),
    )
    .await?;
    let event = AuditEvent::about_user(AuditAction::PasswordResetRequested, Some(user_id));
    audit::record(&mut *tx, &meta.audit(actor), &event).await?;
    Ok(())
}
