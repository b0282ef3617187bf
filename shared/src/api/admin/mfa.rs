//! `DELETE /v1/admin/users/{id}/mfa`: an administrator resets a user's
//! second factors (the user lost their device and their recovery codes).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::{Wanted, begin_change, target};
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::{logins, mfa, sessions};
use crate::error::{Error, Result};
use crate::http::{PathOf, RequestMeta};
use crate::mail::templates;
use crate::security::{Authorized, perm};
use crate::state::AppState;

#[utoipa::path(
    delete,
    path = "/v1/admin/users/{id}/mfa",
    tag = "admin",
    summary = "Reset a user's second factors (users:write)",
    description = "Removes every factor, recovery code and pending mfa_token of the user and revokes every session (the next login needs only the password, and the user can enrol again); the user is told by mail. Audited with severity `warning`. Idempotent. Not for one's own account (403): that is DELETE /v1/users/me/mfa/totp, with its step-up.",
    params(("id" = String, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Factors removed; every session revoked"),
    )
)]
pub(crate) async fn reset_mfa(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::UsersWrite>,
    PathOf(id): PathOf<Uuid>,
) -> Result<StatusCode> {
    if id == caller.user_id {
        // One's own factors go through DELETE /v1/users/me/mfa/totp and
        // its step-up, not around it.
        return Err(Error::Forbidden);
    }
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
    let user = target(&mut tx, &caller, id, Wanted::Live).await?;
    logins::lock_for_login(&mut *tx, user.id).await?;
    let removed = mfa::delete_all(&mut *tx, user.id).await?;
    let revoked = sessions::revoke_user_sessions(&mut tx, user.id, None).await?;
    let mut event = AuditEvent::about_user(AuditAction::MfaReset, Some(user.id));
    event.severity = "warning";
    event.new_values = Some(json!({"factors_removed": removed, "sessions_revoked": revoked.len()}));
    audit::record(&mut *tx, &meta.audit(Some(caller.user_id)), &event).await?;
    tx.commit().await?;
    let mail = templates::mfa_changed(&user.email, "reset by an administrator");
    state.mailer.deliver(mail).await;
    Ok(StatusCode::NO_CONTENT)
}
