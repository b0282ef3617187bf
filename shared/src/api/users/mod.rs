//! `/v1/users*`: the caller's own account (profile, password, e-mail,
//! sessions, second factors, GDPR export, deletion) and, with `users:read`,
//! other users.

pub(crate) mod account;
pub(crate) mod directory;
pub(crate) mod export;
pub(crate) mod mfa;
pub(crate) mod passkeys;
pub(crate) mod phone;
pub(crate) mod profile;
pub(crate) mod sessions;

use axum::Router;
use axum::routing::{delete, get, patch, post};
use serde::Deserialize;

use crate::db::users;
use crate::domain::user::User;
use crate::error::{Error, Result};
use crate::security::AuthUser;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users", get(directory::list_users))
        .route(
            "/v1/users/me",
            get(profile::get_me)
                .patch(profile::update_me)
                .delete(account::delete_me),
        )
        .route("/v1/users/me/password", post(account::change_password))
        .route("/v1/users/me/email", post(account::change_email))
        .route("/v1/users/me/sessions", get(sessions::list_sessions))
        .route(
            "/v1/users/me/sessions/{id}",
            delete(sessions::revoke_session),
        )
        .route("/v1/users/me/export", get(export::export))
        .route("/v1/users/me/mfa", get(mfa::status))
        .route("/v1/users/me/phone/verify", post(phone::send_code))
        .route("/v1/users/me/phone/confirm", post(phone::confirm))
        .route(
            "/v1/users/me/mfa/totp",
            post(mfa::start_totp).delete(mfa::change::disable_totp),
        )
        .route("/v1/users/me/mfa/totp/confirm", post(mfa::confirm_totp))
        .route("/v1/users/me/mfa/verify", post(mfa::verify))
        .route(
            "/v1/users/me/mfa/recovery-codes",
            post(mfa::change::regenerate_recovery_codes),
        )
        .route(
            "/v1/users/me/mfa/webauthn/start",
            post(passkeys::start_step_up),
        )
        .route("/v1/users/me/passkeys", get(passkeys::list))
        .route(
            "/v1/users/me/passkeys/register/start",
            post(passkeys::start_registration),
        )
        .route(
            "/v1/users/me/passkeys/register/finish",
            post(passkeys::finish_registration),
        )
        .route(
            "/v1/users/me/passkeys/{id}",
            patch(passkeys::rename).delete(passkeys::delete),
        )
        .route("/v1/users/{id}", get(directory::get_user))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The caller's live account (deleted meanwhile: 401, the token is stale).
pub(crate) async fn me(state: &AppState, auth: &AuthUser) -> Result<User> {
    users::find_live(&state.db.write, auth.user_id)
        .await?
        .ok_or(Error::Unauthorized)
}

/// A trimmed, non-empty search text of bounded length.
pub(crate) fn search_text(q: Option<String>) -> Result<Option<String>> {
    match q.map(|q| q.trim().to_string()).filter(|q| !q.is_empty()) {
        Some(q) if q.chars().count() > 200 || q.contains('\0') => Err(Error::field(
            "q",
            "must be at most 200 characters without NUL",
        )),
        other => Ok(other),
    }
}
