//! Step-ups on the caller's factors: regenerating the recovery codes and
//! disabling TOTP. Both need the current password and a second factor
//! verified in this session within `STEP_UP_MAX_AGE_SECONDS` (full
//! re-authentication, ASVS V7.5.1), and both mail the owner.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use super::{NO_FACTOR, RecoveryCodes};
use crate::api::users::account::PasswordConfirmation;
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::mfa as store;
use crate::error::{Error, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::mail::templates;
use crate::mfa::recovery;
use crate::security::Me;
use crate::security::rate_limit::Limit;
use crate::session::reauthenticate;
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/v1/users/me/mfa/recovery-codes",
    tag = "users",
    summary = "Regenerate my recovery codes",
    description = "Step-up: the current password (a wrong one counts toward the lockout) and a second factor verified in this session within STEP_UP_MAX_AGE_SECONDS (else 403 `mfa_required`, before the password is looked at). The old codes stop working; the owner is told by mail.",
    request_body = PasswordConfirmation,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new codes, shown this once", body = RecoveryCodes),
        (status = 409, description = "No second factor is enabled (conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Me { auth, user }: Me,
    ApiJson(body): ApiJson<PasswordConfirmation>,
) -> Result<ApiJson<RecoveryCodes>> {
    let codes = recovery::generate().map_err(Error::Internal)?;
    let hashes: Vec<String> = codes.iter().filter_map(|c| recovery::hash(c)).collect();
    let mut tx =
        reauthenticate(&state, &meta, Limit::MfaUser, &auth, &user, &body.password).await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    if !store::has_factor(&mut *tx, user.id).await? {
        // The password was right: its attempt is settled all the same.
        tx.commit().await?;
        return Err(Error::Conflict(NO_FACTOR));
    }
    store::replace_recovery_codes(&mut *tx, user.id, &hashes).await?;
    audit::record(
        &mut *tx,
        &meta.audit(None),
        &AuditEvent::about_user(AuditAction::RecoveryCodesRegenerated, Some(user.id)),
    )
    .await?;
    tx.commit().await?;
    let mail = templates::mfa_changed(
        &user.email,
        "given new recovery codes (the old ones stopped working)",
    );
    state.mailer.deliver(mail).await;
    Ok(ApiJson(RecoveryCodes {
        recovery_codes: codes,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/users/me/mfa/totp",
    tag = "users",
    summary = "Disable TOTP",
    description = "Step-up: the current password (a wrong one counts toward the lockout) and a second factor verified in this session within STEP_UP_MAX_AGE_SECONDS (else 403 `mfa_required`, before the password is looked at). With the last factor gone, the recovery codes go too; the owner is told by mail.",
    request_body = PasswordConfirmation,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Disabled"),
        (status = 409, description = "TOTP is not enabled (conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn disable_totp(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Me { auth, user }: Me,
    ApiJson(body): ApiJson<PasswordConfirmation>,
) -> Result<StatusCode> {
    let mut tx =
        reauthenticate(&state, &meta, Limit::MfaUser, &auth, &user, &body.password).await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    if !store::delete_totp(&mut *tx, user.id).await? {
        // Nothing to disable (a pending enrolment went): the password was
        // right, its attempt is settled all the same.
        tx.commit().await?;
        return Err(Error::Conflict(NO_FACTOR));
    }
    if !store::has_factor(&mut *tx, user.id).await? {
        store::delete_all(&mut *tx, user.id).await?;
    }
    let mut event = AuditEvent::about_user(AuditAction::MfaDisabled, Some(user.id));
    event.new_values = Some(json!({"type": "totp"}));
    audit::record(&mut *tx, &meta.audit(None), &event).await?;
    tx.commit().await?;
    let mail = templates::mfa_changed(&user.email, "turned off (the authenticator app)");
    state.mailer.deliver(mail).await;
    Ok(StatusCode::NO_CONTENT)
}
