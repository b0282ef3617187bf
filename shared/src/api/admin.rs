//! `/v1/admin/*`: user administration, roles, the audit log and statistics.
//! Each route names its permission in its `Authorized<…>` extractor.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::api::auth::{RESET_TTL_HOURS, deliver, reset_mail};
use crate::api::users::{PageQuery, search_text};
use crate::db::audit::{self, AuditAction, AuditCursor, AuditEntry, AuditEvent, AuditFilter};
use crate::db::roles::{self, Role};
use crate::db::stats::{self, Stats};
use crate::db::users::{UserCursor, UserFilter, UserSort};
use crate::db::{one_time_tokens, sessions, users};
use crate::domain::profile::{ProfilePatch, present};
use crate::domain::user::{AdminUserView, User};
use crate::domain::{Email, UserStatus};
use crate::error::{Error, FieldError, Result};
use crate::http::{ApiJson, ApiQuery, Page, RequestMeta, pagination};
use crate::security::{AuthUser, Authorized, Permission, opaque, perm};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/users", get(list_users))
        .route(
            "/v1/admin/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/v1/admin/users/{id}/unlock", post(unlock))
        .route(
            "/v1/admin/users/{id}/revoke-sessions",
            post(revoke_sessions),
        )
        .route(
            "/v1/admin/users/{id}/password-reset",
            post(send_password_reset),
        )
        .route("/v1/admin/users/{id}/restore", post(restore))
        .route(
            "/v1/admin/users/{id}/roles/{role_name}",
            put(assign_role).delete(remove_role),
        )
        .route("/v1/admin/roles", get(list_roles).post(create_role))
        .route(
            "/v1/admin/roles/{id}",
            axum::routing::patch(update_role).delete(delete_role),
        )
        .route("/v1/admin/audit-logs", get(audit_logs))
        .route("/v1/admin/stats", get(get_stats))
}

// ------------------------------------------------------------------ bodies

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
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub phone_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub date_of_birth: Option<Option<chrono::NaiveDate>>,
    #[serde(default, deserialize_with = "present")]
    pub profile_picture_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub bio: Option<Option<String>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    pub permissions: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub user_id: Option<Uuid>,
    pub performed_by: Option<Uuid>,
    pub action: Option<AuditAction>,
    pub entity_type: Option<String>,
    pub entity_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The role the migrations create, holding `*`: it cannot be renamed, lose
/// `*`, or be deleted.
pub const BUILT_IN_ADMIN: &str = "admin";

/// The permissions a role may hold.
pub const PERMISSIONS: [&str; 7] = [
    "*",
    "users:read",
    "users:write",
    "users:delete",
    "roles:manage",
    "audit:read",
    "stats:read",
];

// ----------------------------------------------------------------- helpers

fn parse_id(raw: &str) -> Result<Uuid> {
    raw.parse().map_err(|_| Error::NotFound)
}

async fn subject(state: &AppState, id: Uuid) -> Result<User> {
    users::find_by_id(&state.db.write, id)
        .await?
        .ok_or(Error::NotFound)
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Begins an admin change: privileged changes are serialised (so the last
/// `*` holder cannot be removed by two admins at once) and audited as the
/// caller's. Under that lock the caller is checked again (status, session,
/// permissions), so a suspension, revocation or lost rank that committed
/// while this request waited is not used.
async fn begin_change<P: Permission>(
    state: &AppState,
    meta: &RequestMeta,
    caller: &mut AuthUser,
) -> Result<Tx> {
    let mut tx = state.db.write.begin().await?;
    roles::lock_privileges(&mut *tx).await?;
    let now = users::caller(&mut *tx, caller.user_id, caller.session_id)
        .await?
        .filter(|c| !c.deleted)
        .ok_or(Error::Unauthorized)?;
    if !now.status.may_log_in(state.config.require_verified_email) {
        return Err(Error::AccountDisabled);
    }
    if !now.session_live {
        return Err(Error::Unauthorized);
    }
    caller.permissions = now.permissions;
    caller.require(P::NAME)?;
    audit::set_context(&mut *tx, &meta.audit(Some(caller.user_id))).await?;
    Ok(tx)
}

/// Whether an action needs a live user or a soft-deleted one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Live,
    Any,
}

/// The user an admin acts on, with the privilege rule applied: 404 when
/// there is no such user (or a live one is wanted and it is soft-deleted),
/// 403 `forbidden` unless the caller holds every permission it holds.
async fn target(tx: &mut Tx, caller: &AuthUser, id: Uuid, wanted: Wanted) -> Result<User> {
    let user = users::find_by_id(&mut **tx, id)
        .await?
        .filter(|u| wanted == Wanted::Any || u.deleted_at.is_none())
        .ok_or(Error::NotFound)?;
    caller.outranks(&users::permissions(&mut **tx, id).await?)?;
    Ok(user)
}

/// The invariant checked after a change: if there was an active `*`
/// holder before it (`before`), there is one after it; else 409 and the
/// transaction is rolled back.
async fn keep_a_superuser(tx: &mut Tx, before: i64) -> Result<()> {
    if before > 0 && roles::active_superusers(&mut **tx).await? == 0 {
        return Err(Error::Conflict(LAST_SUPERUSER));
    }
    Ok(())
}

pub(crate) const LAST_SUPERUSER: &str =
    "This would leave no active user holding '*': grant '*' to another active user first.";

fn admin_view(user: &User) -> ApiJson<AdminUserView> {
    ApiJson(AdminUserView::from(user))
}

fn check_role(name: Option<&str>, permissions: Option<&[String]>) -> Result<()> {
    let mut errors = Vec::new();
    if let Some(name) = name {
        let ok = (1..=50).contains(&name.chars().count())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !ok {
            errors.push(FieldError::new(
                "name",
                "must be 1 to 50 characters of letters, digits, '_', '-', '.', ':'",
            ));
        }
    }
    if let Some(bad) = permissions
        .unwrap_or_default()
        .iter()
        .find(|p| !PERMISSIONS.contains(&p.as_str()))
    {
        errors.push(FieldError::new(
            "permissions",
            format!(
                "unknown permission {bad:?}; known: {}",
                PERMISSIONS.join(", ")
            ),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

fn role_conflict(err: sqlx::Error) -> Error {
    let unique = err
        .as_database_error()
        .and_then(|e| e.constraint())
        .is_some_and(|c| c == "roles_name_key");
    if unique {
        Error::Conflict("A role with this name exists.")
    } else {
        Error::from(err)
    }
}

// ------------------------------------------------------------------- users

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
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_user(
    State(state): State<AppState>,
    _caller: Authorized<perm::UsersRead>,
    Path(id): Path<String>,
) -> Result<ApiJson<AdminUserView>> {
    Ok(admin_view(&subject(&state, parse_id(&id)?).await?))
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
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update_user(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::UsersWrite>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AdminUserPatch>,
) -> Result<ApiJson<AdminUserView>> {
    let id = parse_id(&id)?;
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
    let mut tx = begin_change::<perm::UsersWrite>(&state, &meta, &mut caller).await?;
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
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn unlock(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::UsersWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    let mut tx = begin_change::<perm::UsersWrite>(&state, &meta, &mut caller).await?;
    target(&mut tx, &caller, id, Wanted::Live).await?;
    users::unlock(&mut *tx, id).await?;
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
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_sessions(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::UsersWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    let mut tx = begin_change::<perm::UsersWrite>(&state, &meta, &mut caller).await?;
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
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn send_password_reset(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::UsersWrite>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    let token = opaque::generate();
    let mut tx = begin_change::<perm::UsersWrite>(&state, &meta, &mut caller).await?;
    let user = target(&mut tx, &caller, id, Wanted::Live).await?;
    one_time_tokens::create_password_reset(
        &mut *tx,
        user.id,
        &opaque::hash(&token),
        Utc::now() + Duration::hours(RESET_TTL_HOURS),
        meta.ip.map(|ip| ip.to_string()),
    )
    .await?;
    audit::record(
        &mut *tx,
        &meta.audit(Some(caller.user_id)),
        &AuditEvent::about_user(AuditAction::PasswordResetRequested, Some(user.id)),
    )
    .await?;
    tx.commit().await?;
    deliver(&state, reset_mail(&state, &user.email, &token)).await;
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
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::UsersDelete>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    let mut tx = begin_change::<perm::UsersDelete>(&state, &meta, &mut caller).await?;
    target(&mut tx, &caller, id, Wanted::Any).await?;
    let before = roles::active_superusers(&mut *tx).await?;
    users::soft_delete(&mut *tx, id).await?;
    sessions::revoke_user_sessions(&mut tx, id, None).await?;
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
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn restore(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::UsersDelete>,
    Path(id): Path<String>,
) -> Result<ApiJson<AdminUserView>> {
    let id = parse_id(&id)?;
    let mut tx = begin_change::<perm::UsersDelete>(&state, &meta, &mut caller).await?;
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

#[utoipa::path(
    put,
    path = "/v1/admin/users/{id}/roles/{role_name}",
    tag = "admin",
    summary = "Assign a role (roles:manage)",
    params(("id" = String, Path, description = "User id (UUID)"), ("role_name" = String, Path, description = "Role name")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Assigned (idempotent)"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn assign_role(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::RolesManage>,
    Path((id, role_name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    let mut tx = begin_change::<perm::RolesManage>(&state, &meta, &mut caller).await?;
    let user = target(&mut tx, &caller, id, Wanted::Live).await?;
    let role = roles::find_by_name(&mut *tx, &role_name)
        .await?
        .ok_or(Error::NotFound)?;
    caller.outranks(&role.permissions)?;
    if roles::assign(&mut *tx, user.id, role.id, caller.user_id).await? {
        let mut event = AuditEvent::about_user(AuditAction::RoleAssigned, Some(user.id));
        event.new_values = Some(json!({"role": role_name}));
        audit::record(&mut *tx, &meta.audit(Some(caller.user_id)), &event).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/v1/admin/users/{id}/roles/{role_name}",
    tag = "admin",
    summary = "Remove a role (roles:manage)",
    params(("id" = String, Path, description = "User id (UUID)"), ("role_name" = String, Path, description = "Role name")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed (idempotent)"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_role(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::RolesManage>,
    Path((id, role_name)): Path<(String, String)>,
) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    let mut tx = begin_change::<perm::RolesManage>(&state, &meta, &mut caller).await?;
    let user = target(&mut tx, &caller, id, Wanted::Any).await?;
    let role = roles::find_by_name(&mut *tx, &role_name)
        .await?
        .ok_or(Error::NotFound)?;
    caller.outranks(&role.permissions)?;
    let before = roles::active_superusers(&mut *tx).await?;
    if roles::unassign(&mut *tx, user.id, role.id).await? {
        let mut event = AuditEvent::about_user(AuditAction::RoleRemoved, Some(user.id));
        event.new_values = Some(json!({"role": role_name}));
        audit::record(&mut *tx, &meta.audit(Some(caller.user_id)), &event).await?;
    }
    keep_a_superuser(&mut tx, before).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------- roles

#[utoipa::path(
    get,
    path = "/v1/admin/roles",
    tag = "admin",
    summary = "List roles (roles:manage)",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Roles", body = crate::http::Page<crate::db::roles::Role>),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_roles(
    State(state): State<AppState>,
    _caller: Authorized<perm::RolesManage>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<ApiJson<Page<Role>>> {
    let limit = pagination::limit(query.limit)?;
    let after: Option<String> = pagination::decode(query.cursor.as_deref())?;
    let rows = roles::list(&state.db.read, after.as_deref(), limit).await?;
    Ok(ApiJson(pagination::page(
        rows,
        limit,
        |r| r.name.clone(),
        Role::clone,
    )))
}

fn role_event(action: AuditAction, role: &Role) -> AuditEvent<'static> {
    AuditEvent {
        action,
        user_id: None,
        entity_type: "role",
        entity_id: Some(role.id),
        new_values: Some(json!({"name": role.name, "permissions": role.permissions})),
        severity: "info",
    }
}

#[utoipa::path(
    post,
    path = "/v1/admin/roles",
    tag = "admin",
    summary = "Create a role (roles:manage)",
    request_body = CreateRoleRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new role", body = crate::db::roles::Role),
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
pub(crate) async fn create_role(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::RolesManage>,
    ApiJson(body): ApiJson<CreateRoleRequest>,
) -> Result<Response> {
    check_role(Some(&body.name), Some(&body.permissions))?;
    let mut tx = begin_change::<perm::RolesManage>(&state, &meta, &mut caller).await?;
    caller.outranks(&body.permissions)?;
    let role = roles::create(
        &mut *tx,
        &body.name,
        body.description.as_deref(),
        &body.permissions,
    )
    .await
    .map_err(role_conflict)?;
    audit::record(
        &mut *tx,
        &meta.audit(Some(caller.user_id)),
        &role_event(AuditAction::RoleCreated, &role),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, ApiJson(role)).into_response())
}

#[utoipa::path(
    patch,
    path = "/v1/admin/roles/{id}",
    tag = "admin",
    summary = "Update a role (roles:manage)",
    request_body = UpdateRoleRequest,
    params(("id" = String, Path, description = "Role id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated role", body = crate::db::roles::Role),
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update_role(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::RolesManage>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateRoleRequest>,
) -> Result<ApiJson<Role>> {
    let id = parse_id(&id)?;
    check_role(body.name.as_deref(), body.permissions.as_deref())?;
    let mut tx = begin_change::<perm::RolesManage>(&state, &meta, &mut caller).await?;
    let current = roles::find(&mut *tx, id).await?.ok_or(Error::NotFound)?;
    caller.outranks(&current.permissions)?;
    // Changing a role changes what its holders may do: act on them all.
    caller.outranks(&roles::holders_permissions(&mut *tx, id).await?)?;
    caller.outranks(body.permissions.as_deref().unwrap_or_default())?;
    if current.name == BUILT_IN_ADMIN {
        if body.name.as_deref().is_some_and(|n| n != BUILT_IN_ADMIN) {
            return Err(Error::Conflict(
                "The built-in admin role cannot be renamed.",
            ));
        }
        if body
            .permissions
            .as_ref()
            .is_some_and(|p| !p.iter().any(|p| p == "*"))
        {
            return Err(Error::Conflict("The built-in admin role cannot lose '*'."));
        }
    }
    let before = roles::active_superusers(&mut *tx).await?;
    let role = roles::update(
        &mut *tx,
        id,
        body.name.as_deref(),
        body.description.as_ref().map(|d| d.as_deref()),
        body.permissions.as_deref(),
    )
    .await
    .map_err(role_conflict)?
    .ok_or(Error::NotFound)?;
    keep_a_superuser(&mut tx, before).await?;
    audit::record(
        &mut *tx,
        &meta.audit(Some(caller.user_id)),
        &role_event(AuditAction::RoleUpdated, &role),
    )
    .await?;
    tx.commit().await?;
    Ok(ApiJson(role))
}

#[utoipa::path(
    delete,
    path = "/v1/admin/roles/{id}",
    tag = "admin",
    summary = "Delete a role (roles:manage)",
    params(("id" = String, Path, description = "Role id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_role(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Authorized { mut caller, .. }: Authorized<perm::RolesManage>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let id = parse_id(&id)?;
    let mut tx = begin_change::<perm::RolesManage>(&state, &meta, &mut caller).await?;
    let role = roles::find(&mut *tx, id).await?.ok_or(Error::NotFound)?;
    caller.outranks(&role.permissions)?;
    caller.outranks(&roles::holders_permissions(&mut *tx, id).await?)?;
    if role.name == BUILT_IN_ADMIN {
        return Err(Error::Conflict(
            "The built-in admin role cannot be deleted.",
        ));
    }
    let before = roles::active_superusers(&mut *tx).await?;
    roles::delete(&mut *tx, id).await?;
    keep_a_superuser(&mut tx, before).await?;
    audit::record(
        &mut *tx,
        &meta.audit(Some(caller.user_id)),
        &role_event(AuditAction::RoleDeleted, &role),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------ audit, stats

#[utoipa::path(
    get,
    path = "/v1/admin/audit-logs",
    tag = "admin",
    summary = "Query the audit log (audit:read)",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Audit entries, newest first", body = crate::http::Page<crate::db::audit::AuditEntry>),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn audit_logs(
    State(state): State<AppState>,
    _caller: Authorized<perm::AuditRead>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<ApiJson<Page<AuditEntry>>> {
    let limit = pagination::limit(query.limit)?;
    let after: Option<AuditCursor> = pagination::decode(query.cursor.as_deref())?;
    if query
        .entity_type
        .as_deref()
        .is_some_and(|t| t.chars().count() > 50)
    {
        return Err(Error::field("entity_type", "must be at most 50 characters"));
    }
    let filter = AuditFilter {
        user_id: query.user_id,
        performed_by: query.performed_by,
        action: query.action,
        entity_type: query.entity_type,
        entity_id: query.entity_id,
        from: query.from,
        to: query.to,
    };
    let rows = audit::list(&state.db.read, &filter, after.as_ref(), limit).await?;
    Ok(ApiJson(pagination::page(
        rows,
        limit,
        |e| AuditCursor {
            at: e.created_at,
            id: e.id,
        },
        AuditEntry::clone,
    )))
}

#[utoipa::path(
    get,
    path = "/v1/admin/stats",
    tag = "admin",
    summary = "Statistics (stats:read)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Statistics", body = crate::db::stats::Stats),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_stats(
    State(state): State<AppState>,
    _caller: Authorized<perm::StatsRead>,
) -> Result<ApiJson<Stats>> {
    Ok(ApiJson(stats::collect(&state.db.read).await?))
}
