//! `/v1/users*`: the caller's own account (profile, password, e-mail,
//! sessions, GDPR export, deletion) and, with `users:read`, other users.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::api::admin::LAST_SUPERUSER;
use crate::api::auth::{
    VERIFICATION_TTL_HOURS, deliver, limit, verification_allowed, verification_mail,
};
use crate::db::audit::{self, AuditAction, AuditEntry, AuditEvent};
use crate::db::sessions::Session;
use crate::db::users::Attempt;
use crate::db::users::{UserCursor, UserFilter};
use crate::db::{one_time_tokens, roles, sessions, users};
use crate::domain::profile::ProfilePatch;
use crate::domain::user::{AdminUserView, User};
use crate::domain::{Email, Password, UserStatus, UserView};
use crate::error::{Error, Result};
use crate::http::{ApiJson, ApiQuery, Page, RequestMeta, pagination};
use crate::security::lockout::{self, Claimant};
use crate::security::passwords::Verified;
use crate::security::{AuthUser, Authorized, opaque, perm};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users", get(list_users))
        .route(
            "/v1/users/me",
            get(get_me).patch(update_me).delete(delete_me),
        )
        .route("/v1/users/me/password", post(change_password))
        .route("/v1/users/me/email", post(change_email))
        .route("/v1/users/me/sessions", get(list_sessions))
        .route("/v1/users/me/sessions/{id}", delete(revoke_session))
        .route("/v1/users/me/export", get(export))
        .route("/v1/users/{id}", get(get_user))
}

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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    pub q: Option<String>,
    pub status: Option<UserStatus>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Everything stored about the caller.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Export {
    pub user: AdminUserView,
    pub roles: Vec<String>,
    pub sessions: Vec<Session>,
    pub audit_events: Vec<AuditEntry>,
}

/// The caller's live account (deleted meanwhile: 401, the token is stale).
pub(crate) async fn me(state: &AppState, auth: &AuthUser) -> Result<User> {
    users::find_by_id(&state.db.write, auth.user_id)
        .await?
        .filter(|u| u.deleted_at.is_none())
        .ok_or(Error::Unauthorized)
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
    let current = users::lock_for_login(&mut *tx, user.id)
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

#[utoipa::path(
    get,
    path = "/v1/users/me",
    tag = "users",
    summary = "Read my profile",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = crate::domain::UserView),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_me(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<ApiJson<UserView>> {
    Ok(ApiJson(UserView::from(&me(&state, &auth).await?)))
}

#[utoipa::path(
    patch,
    path = "/v1/users/me",
    tag = "users",
    summary = "Update my profile (null clears a field)",
    request_body = crate::domain::profile::ProfilePatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated caller", body = crate::domain::UserView),
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update_me(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    auth: AuthUser,
    ApiJson(patch): ApiJson<ProfilePatch>,
) -> Result<ApiJson<UserView>> {
    let errors = patch.validate(Utc::now().date_naive());
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    if !users::update_profile(&mut *tx, auth.user_id, &patch).await? {
        return Err(Error::Unauthorized);
    }
    tx.commit().await?;
    Ok(ApiJson(UserView::from(&me(&state, &auth).await?)))
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
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    auth: AuthUser,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode> {
    let user = me(&state, &auth).await?;
    let attempt = confirm_password(
        &state,
        &meta,
        "password-change",
        &user,
        &body.current_password,
    )
    .await?;
    let local_part = user.email.split('@').next().unwrap_or_default();
    let password = Password::parse(&body.new_password, &[&user.username, local_part])
        .map_err(|m| Error::field("new_password", m))?;
    let hash = state.hasher.hash(&password).await?;
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
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
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
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
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
    if before > 0 && roles::active_superusers(&mut *tx).await? == 0 {
        return Err(Error::Conflict(LAST_SUPERUSER));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/users/me/sessions",
    tag = "users",
    summary = "List my sessions",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "My live sessions", body = crate::http::Page<crate::db::sessions::Session>),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<ApiJson<Page<Session>>> {
    let limit = pagination::limit(query.limit)?;
    let after: Option<Uuid> = pagination::decode(query.cursor.as_deref())?;
    let rows = sessions::list_live(&state.db.read, auth.user_id, after, limit).await?;
    Ok(ApiJson(pagination::page(
        rows,
        limit,
        |s| s.id,
        |s| Session {
            current: s.id == auth.session_id,
            ..s.clone()
        },
    )))
}

#[utoipa::path(
    delete,
    path = "/v1/users/me/sessions/{id}",
    tag = "users",
    summary = "Revoke one of my sessions",
    params(("id" = String, Path, description = "Session id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Session revoked"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_session(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    // An id that is not a UUID names no session: 404 like any other.
    let id: Uuid = id.parse().map_err(|_| Error::NotFound)?;
    let mut tx = state.db.write.begin().await?;
    if !sessions::revoke_own_session(&mut tx, auth.user_id, id).await? {
        return Err(Error::NotFound);
    }
    let mut event = AuditEvent::about_user(AuditAction::SessionsRevoked, Some(auth.user_id));
    event.new_values = Some(json!({"session_id": id}));
    audit::record(&mut *tx, &meta.audit(None), &event).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/v1/users/me/export",
    tag = "users",
    summary = "Export my data (GDPR)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Everything stored about me", body = Export),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn export(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    auth: AuthUser,
) -> Result<ApiJson<Export>> {
    let user = me(&state, &auth).await?;
    audit::record(
        &state.db.write,
        &meta.audit(None),
        &AuditEvent::about_user(AuditAction::DataExported, Some(user.id)),
    )
    .await?;
    let sessions = sessions::list_all(&state.db.write, user.id)
        .await?
        .into_iter()
        .map(|s| Session {
            current: s.id == auth.session_id,
            ..s
        })
        .collect();
    // Staff stay private: of an action someone else performed, the export
    // says what was done, not who did it or from where.
    let audit_events = audit::about_user(&state.db.write, user.id)
        .await?
        .into_iter()
        .map(|e| match e.performed_by {
            Some(by) if by != user.id => AuditEntry {
                performed_by: None,
                ip_address: None,
                user_agent: None,
                ..e
            },
            _ => e,
        })
        .collect();
    Ok(ApiJson(Export {
        roles: user.roles.clone(),
        user: AdminUserView::from(&user),
        sessions,
        audit_events,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/users",
    tag = "users",
    summary = "List users (users:read)",
    params(UserListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Users", body = crate::http::Page<crate::domain::UserView>),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    _caller: Authorized<perm::UsersRead>,
    ApiQuery(query): ApiQuery<UserListQuery>,
) -> Result<ApiJson<Page<UserView>>> {
    let limit = pagination::limit(query.limit)?;
    let after: Option<UserCursor> = pagination::decode(query.cursor.as_deref())?;
    let filter = UserFilter {
        q: search_text(query.q)?,
        status: query.status,
        ..UserFilter::default()
    };
    let rows = users::list(&state.db.read, &filter, after.as_ref(), limit).await?;
    Ok(ApiJson(pagination::page(
        rows,
        limit,
        |u| UserCursor {
            at: Some(u.created_at),
            id: u.id,
        },
        |u| UserView::from(u),
    )))
}

#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    tag = "users",
    summary = "Read a user (self or users:read)",
    params(("id" = String, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = crate::domain::UserView),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_user(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> Result<ApiJson<UserView>> {
    // An id that is not a UUID names no user: 404 like any other.
    let id: Uuid = id.parse().map_err(|_| Error::NotFound)?;
    if id != auth.user_id && !auth.can("users:read") {
        return Err(Error::NotFound);
    }
    let user = users::find_by_id(&state.db.read, id)
        .await?
        .filter(|u| u.deleted_at.is_none())
        .ok_or(Error::NotFound)?;
    Ok(ApiJson(UserView::from(&user)))
}
