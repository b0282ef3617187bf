//! `/v1/admin/roles[/{id}]` and `/v1/admin/users/{id}/roles/{role_name}`:
//! roles and their assignment, under the privilege rule.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{BUILT_IN_ADMIN, Wanted, begin_change, keep_a_superuser, target};
use crate::api::users::PageQuery;
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::roles::{self, Role};
use crate::domain::profile::present;
use crate::error::{Error, FieldError, Result};
use crate::http::{ApiJson, ApiQuery, Page, PathOf, RequestMeta, pagination};
use crate::security::{Authorized, perm};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    #[schema(schema_with = crate::domain::rules::role_name)]
    pub name: String,
    pub description: Option<String>,
    #[schema(schema_with = crate::domain::rules::permissions)]
    pub permissions: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    #[schema(schema_with = crate::domain::rules::new_role_name)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
    #[schema(schema_with = crate::domain::rules::new_permissions)]
    pub permissions: Option<Vec<String>>,
}

fn check_role(name: Option<&str>, permissions: Option<&[String]>) -> Result<()> {
    let mut errors = Vec::new();
    if let Some(name) = name {
        let (min, max) = crate::domain::rules::ROLE_NAME_CHARS;
        let ok = (min..=max).contains(&name.chars().count())
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
        .find(|p| !perm::ALL.contains(&p.as_str()))
    {
        errors.push(FieldError::new(
            "permissions",
            format!(
                "unknown permission {bad:?}; known: {}",
                perm::ALL.join(", ")
            ),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
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
    )
)]
pub(crate) async fn assign_role(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::RolesManage>,
    PathOf((id, role_name)): PathOf<(Uuid, String)>,
) -> Result<StatusCode> {
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
    let user = target(&mut tx, &caller, id, Wanted::Live).await?;
    let role = roles::find_by_name(&mut *tx, &role_name)
        .await?
        .ok_or(Error::NotFound)?;
    caller.outranks(&role.permissions)?;
    if roles::assign(&mut *tx, user.id, role.id, Some(caller.user_id)).await? {
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
    )
)]
pub(crate) async fn remove_role(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::RolesManage>,
    PathOf((id, role_name)): PathOf<(Uuid, String)>,
) -> Result<StatusCode> {
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
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

#[utoipa::path(
    get,
    path = "/v1/admin/roles",
    tag = "admin",
    summary = "List roles (roles:manage)",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Roles", body = crate::http::Page<crate::db::roles::Role>),
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
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_role(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::RolesManage>,
    ApiJson(body): ApiJson<CreateRoleRequest>,
) -> Result<Response> {
    check_role(Some(&body.name), Some(&body.permissions))?;
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
    caller.outranks(&body.permissions)?;
    let role = roles::create(
        &mut *tx,
        &body.name,
        body.description.as_deref(),
        &body.permissions,
    )
    .await?;
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
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update_role(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::RolesManage>,
    PathOf(id): PathOf<Uuid>,
    ApiJson(body): ApiJson<UpdateRoleRequest>,
) -> Result<ApiJson<Role>> {
    check_role(body.name.as_deref(), body.permissions.as_deref())?;
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
    let current = roles::find(&mut *tx, id).await?.ok_or(Error::NotFound)?;
    caller.outranks(&current.permissions)?;
    // Changing a role changes what its holders may do: act on them all.
    caller.outranks(&roles::holders_permissions(&mut *tx, id).await?)?;
    caller.outranks(body.permissions.as_deref().unwrap_or_default())?;
    keep_built_in(&current, &body)?;
    let before = roles::active_superusers(&mut *tx).await?;
    let role = roles::update(
        &mut *tx,
        id,
        body.name.as_deref(),
        body.description.as_ref().map(|d| d.as_deref()),
        body.permissions.as_deref(),
    )
    .await?
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
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_role(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    mut caller: Authorized<perm::RolesManage>,
    PathOf(id): PathOf<Uuid>,
) -> Result<StatusCode> {
    let mut tx = begin_change(&state, &meta, &mut caller).await?;
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

/// The built-in `admin` role keeps its name and `*`: 409 otherwise.
fn keep_built_in(current: &Role, body: &UpdateRoleRequest) -> Result<()> {
    if current.name != BUILT_IN_ADMIN {
        return Ok(());
    }
    if body.name.as_deref().is_some_and(|n| n != BUILT_IN_ADMIN) {
        return Err(Error::Conflict(
            "The built-in admin role cannot be renamed.",
        ));
    }
    let keeps_star = |p: &Vec<String>| p.iter().any(|p| p == "*");
    if body.permissions.as_ref().is_some_and(|p| !keeps_star(p)) {
        return Err(Error::Conflict("The built-in admin role cannot lose '*'."));
    }
    Ok(())
}
