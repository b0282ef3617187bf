//! `/v1/admin/users` and `/v1/admin/users/{id}[/…]`: the admin view of
//! users and what an admin may do to them, under the privilege rule.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::domain::rules;

use super::{Wanted, admin_view, begin_change, keep_a_superuser, subject, target};
use crate::api::auth::password::store_reset;
use crate::api::users::search_text;
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::logins;
use crate::db::roles;
use crate::db::users::{UserCursor, UserFilter, UserSort};
use crate::db::{one_time_tokens, sessions, users};
use crate::domain::profile::{ProfilePatch, present};
use crate::domain::user::AdminUserView;
use crate::domain::{Email, UserStatus};
use crate::error::{Error, FieldError, Result};
use crate::http::{ApiJson, ApiQuery, Page, PathOf, RequestMeta, pagination};
use crate::mail::templates;
use crate::security::{Authorized, opaque, perm};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminUserQuery {
    pub q: Option<String>,
    pub status: Option<UserStatus>,
    pub email: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub include_deleted: Option<bool>,
    pub sort: Option<UserSort>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// An admin's change of a user: status, verification and profile fields.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminUserPatch {
    pub status: Option<UserStatus>,
    pub is_email_verified: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = rules::name)]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = rules::name)]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = rules::phone_number)]
    pub phone_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub date_of_birth: Option<Option<chrono::NaiveDate>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = rules::profile_picture_url)]
    pub profile_picture_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = rules::bio)]
    pub bio: Option<Option<String>>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/users",
    operation_id = "admin_list_users",
    tag = "admin",
    summary = "List users (users:read)",
    params(AdminUserQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Users, admin view", body = crate::http::Page<crate::domain::user::AdminUserView>),
    )
)]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    _caller: Authorized<perm::UsersRead>,
    ApiQuery(query): ApiQuery<AdminUserQuery>,
) -> Result<ApiJson<Page<AdminUserView>>> {
    let limit = pagination::limit(query.limit)?;
    let after: Option<UserCursor> = pagination::decode(query.cursor.as_deref())?;
    let email = query
        .email
        .as_deref()
        .map(|e| Email::parse(e).map_err(|m| Error::field("email", m)))
        .transpose()?;
    let filter = UserFilter {
        q: search_text(query.q)?,
        status: query.status,
        email: email.map(|e| e.as_str().to_string()),
        created_from: query.created_from,
        created_to: query.created_to,
        include_deleted: query.include_deleted.unwrap_or(false),
        sort: query.sort.unwrap_or_default(),
    };
    let rows = users::list(&state.db.read, &filter, after.as_ref(), limit).await?;
    let sort = filter.sort;
    Ok(ApiJson(pagination::page(
        rows,
        limit,
        |u| UserCursor {
            at: match sort {
                UserSort::CreatedAt => Some(u.created_at),
                UserSort::LastLoginAt => u.last_login_at,
            },
            id: u.id,
        },
        |u| AdminUserView::from(u),
    )))
}

#[utoipa::path(
    get,
    path = "/v1/admin/users/{id}",
    operation_id = "admin_get_user",
    tag = "admin",
    summary = "Read a user (users:read)",
    params(("id" = String, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user, also when soft-deleted", body = crate::domain::user::AdminUserView),
    )
)]
pub(crate) async fn get_user(
    State(state): State<AppState>,
    _caller: Authorized<perm::UsersRead>,
    PathOf(id): PathOf<Uuid>,
) -> Result<ApiJson<AdminUserView>> {
    Ok(admin_view(&subject(&state, id).await?))
}

#[utoipa::path(
    patch,
    path = "/v1/admin/users/{id}",
    tag = "admin",
    summary = "Update a user (users:write)",
    request_body = AdminUserPatch,
    params(("id" = String, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated user", body = crate::domain::user::AdminUserView),
    )
)]
pub(crate) async fn update_user(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::UsersWrite>,
    PathOf(id): PathOf<Uuid>,
    ApiJson(body): ApiJson<AdminUserPatch>,
) -> Result<ApiJson<AdminUserView>> {
    let profile = ProfilePatch {
        first_name: body.first_name,
        last_name: body.last_name,
        phone_number: body.phone_number,
        date_of_birth: body.date_of_birth,
        profile_picture_url: body.profile_picture_url,
        bio: body.bio,
    };
    let mut errors = profile.validate(Utc::now().date_naive());
    if body.status == Some(UserStatus::Deleted) {
        errors.push(FieldError::new(
            "status",
            "use DELETE /v1/admin/users/{id} to delete a user",
        ));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
    let user = target(&mut tx, &caller, id, Wanted::Live).await?;
    let before = roles::active_superusers(&mut *tx).await?;
    users::update_profile(&mut *tx, id, &profile).await?;
    users::set_status_and_verification(&mut *tx, id, body.status, body.is_email_verified).await?;
    // A status that may not log in ends every session, for good: the
    // refresh tokens do not come back with a later reactivation.
    let disabled = body
        .status
        .filter(|s| *s != user.status && !s.may_log_in(state.config.require_verified_email));
    if disabled.is_some() {
        let revoked = sessions::revoke_user_sessions(&mut tx, id, None).await?;
        one_time_tokens::invalidate_email_verifications(&mut *tx, id).await?;
        let mut event = AuditEvent::about_user(AuditAction::SessionsRevoked, Some(id));
        event.new_values = Some(json!({"sessions_revoked": revoked.len(), "status": disabled}));
        audit::record(&mut *tx, &meta.audit(Some(caller.user_id)), &event).await?;
    }
    keep_a_superuser(&mut tx, before).await?;
    tx.commit().await?;
    Ok(admin_view(&subject(&state, id).await?))
}

#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/unlock",
    tag = "admin",
    summary = "Clear a lockout (users:write)",
    params(("id" = String, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Unlocked"),
    )
)]
pub(crate) async fn unlock(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::UsersWrite>,
    PathOf(id): PathOf<Uuid>,
) -> Result<StatusCode> {
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
    target(&mut tx, &caller, id, Wanted::Live).await?;
    users::unlock(&mut *tx, id).await?;
    // The second factor's failure count too: an admin decided.
    crate::db::mfa::clear_failures(&mut *tx, id).await?;
    audit::record(
        &mut *tx,
        &meta.audit(Some(caller.user_id)),
        &AuditEvent::about_user(AuditAction::AccountUnlocked, Some(id)),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/revoke-sessions",
    tag = "admin",
    summary = "Revoke a user's sessions (users:write)",
    params(("id" = String, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session revoked"),
    )
)]
pub(crate) async fn revoke_sessions(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::UsersWrite>,
    PathOf(id): PathOf<Uuid>,
) -> Result<StatusCode> {
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
    target(&mut tx, &caller, id, Wanted::Any).await?;
    let revoked = sessions::revoke_user_sessions(&mut tx, id, None).await?;
    // A pending e-mail change (perhaps a thief's) goes with the sessions.
    one_time_tokens::invalidate_email_verifications(&mut *tx, id).await?;
    let mut event = AuditEvent::about_user(AuditAction::SessionsRevoked, Some(id));
    event.new_values = Some(json!({"sessions_revoked": revoked.len()}));
    audit::record(&mut *tx, &meta.audit(Some(caller.user_id)), &event).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/password-reset",
    tag = "admin",
    summary = "Send a password-reset mail (users:write)",
    params(("id" = String, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Reset mail sent"),
    )
)]
pub(crate) async fn send_password_reset(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::UsersWrite>,
    PathOf(id): PathOf<Uuid>,
) -> Result<StatusCode> {
    let token = opaque::generate();
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
    let user = target(&mut tx, &caller, id, Wanted::Live).await?;
    // The user's row before its tokens, as every transaction takes them.
    logins::lock_for_login(&mut *tx, user.id).await?;
    store_reset(&mut tx, &meta, Some(caller.user_id), user.id, &token).await?;
    tx.commit().await?;
    state
        .mailer
        .deliver(templates::password_reset(
            &state.config,
            &user.email,
            &token,
        ))
        .await;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(
    delete,
    path = "/v1/admin/users/{id}",
    tag = "admin",
    summary = "Soft-delete a user (users:delete)",
    params(("id" = String, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Soft-deleted"),
    )
)]
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::UsersDelete>,
    PathOf(id): PathOf<Uuid>,
) -> Result<StatusCode> {
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
    target(&mut tx, &caller, id, Wanted::Any).await?;
    let before = roles::active_superusers(&mut *tx).await?;
    users::soft_delete(&mut *tx, id).await?;
    sessions::revoke_user_sessions(&mut tx, id, None).await?;
    // Nothing pending survives a delete (a restore must not revive it).
    one_time_tokens::invalidate_password_resets(&mut *tx, id).await?;
    one_time_tokens::invalidate_email_verifications(&mut *tx, id).await?;
    keep_a_superuser(&mut tx, before).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/admin/users/{id}/restore",
    tag = "admin",
    summary = "Restore a soft-deleted user (users:delete)",
    params(("id" = String, Path, description = "User id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The restored user", body = crate::domain::user::AdminUserView),
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn restore(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::UsersDelete>,
    PathOf(id): PathOf<Uuid>,
) -> Result<ApiJson<AdminUserView>> {
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
    let user = target(&mut tx, &caller, id, Wanted::Any).await?;
    if user.deleted_at.is_none() {
        return Err(Error::Conflict("The user is not deleted."));
    }
    if !users::restore(&mut *tx, user.id).await? {
        return Err(Error::Conflict(
            "The user was anonymised and can no longer be restored.",
        ));
    }
    tx.commit().await?;
    Ok(admin_view(&subject(&state, user.id).await?))
}
