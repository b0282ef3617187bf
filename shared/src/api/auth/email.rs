//! `POST /v1/auth/email/verify` and `/resend`: verifying an address (also
//! an e-mail change) and sending the mail again (capped per address).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::{client, verification_allowed};
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::logins;
use crate::db::one_time_tokens;
use crate::db::users;
use crate::domain::UserView;
use crate::error::{Error, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::mail::templates::{self, VERIFICATION_TTL_HOURS};
use crate::security::rate_limit::{self, Limit};
use crate::security::{Me, opaque};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    pub token: String,
}

#[utoipa::path(
    post,
    path = "/v1/auth/email/verify",
    tag = "auth",
    summary = "Verify an e-mail address",
    request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "The verified user", body = crate::domain::UserView),
        (status = 400, description = "Malformed JSON, or the token is unknown, used or expired (invalid_token)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify_email(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<VerifyEmailRequest>,
) -> Result<ApiJson<UserView>> {
    rate_limit::hit(&state, Limit::EmailVerify, &client(&meta)).await?;
    let token_hash = opaque::hash(&body.token);
    let owner = one_time_tokens::email_verification_user(&state.db.write, &token_hash)
        .await?
        .ok_or(Error::InvalidToken)?;
    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    // The user's row before its tokens, as every transaction takes them.
    logins::lock_for_login(&mut *tx, owner).await?;
    let (user_id, email) = one_time_tokens::consume_email_verification(&mut *tx, &token_hash)
        .await?
        .filter(|(user_id, _)| *user_id == owner)
        .ok_or(Error::InvalidToken)?;
    match users::mark_email_verified(&mut *tx, user_id, &email).await? {
        None => return Err(Error::InvalidToken),
        // The address changed: reset links sent to the old one die.
        Some(true) => one_time_tokens::invalidate_password_resets(&mut *tx, user_id).await?,
        Some(false) => {}
    }
    tx.commit().await?;
    let user = users::find_live(&state.db.write, user_id)
        .await?
        .ok_or(Error::InvalidToken)?;
    Ok(ApiJson(UserView::from(&user)))
}

#[utoipa::path(
    post,
    path = "/v1/auth/email/resend",
    tag = "auth",
    summary = "Resend the verification mail",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A new verification mail is on its way"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn resend_verification(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Me { auth, user }: Me,
) -> Result<StatusCode> {
    rate_limit::hit(&state, Limit::EmailResend, &auth.user_id.to_string()).await?;
    if user.is_email_verified {
        return Ok(StatusCode::ACCEPTED);
    }
    let token = opaque::generate();
    let mut tx = state.db.write.begin().await?;
    // The user's row before its tokens, as every transaction takes them.
    logins::lock_for_login(&mut *tx, user.id).await?;
    if !verification_allowed(&state, &mut tx, &user.email).await? {
        return Ok(StatusCode::ACCEPTED);
    }
    one_time_tokens::create_email_verification(
        &mut *tx,
        user.id,
        &user.email,
        &opaque::hash(&token),
        Utc::now() + Duration::hours(VERIFICATION_TTL_HOURS),
        false,
    )
    .await?;
    audit::record(
        &mut *tx,
        &meta.audit(None),
        &AuditEvent::about_user(AuditAction::EmailVerificationSent, Some(user.id)),
    )
    .await?;
    tx.commit().await?;
    state
        .mailer
        .deliver(templates::verification(&state.config, &user.email, &token))
        .await;
    Ok(StatusCode::ACCEPTED)
}
