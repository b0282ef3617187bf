//! Roles (named permission sets) and their assignment to users.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

/// A role as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Role {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
}

struct RoleRow {
    id: Uuid,
    name: String,
    description: Option<String>,
    permissions: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl From<RoleRow> for Role {
    fn from(r: RoleRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            permissions: serde_json::from_value(r.permissions).unwrap_or_default(),
            created_at: r.created_at,
        }
    }
}

/// Roles ordered by name, after `after`, at most `limit + 1`.
pub async fn list(
    conn: impl PgExecutor<'_>,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<Role>> {
    let rows = sqlx::query_as!(
        RoleRow,
        "SELECT id, name, description, permissions, created_at FROM roles
         WHERE $1::text IS NULL OR name > $1 ORDER BY name LIMIT $2",
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Role::from).collect())
}

pub async fn find(conn: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Role>> {
    let row = sqlx::query_as!(
        RoleRow,
        "SELECT id, name, description, permissions, created_at FROM roles WHERE id = $1",
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Role::from))
}

/// A `roles` write refused because another role has the name: 409
/// `conflict`; anything else stays a database error.
fn name_taken(err: sqlx::Error) -> crate::Error {
    match err.as_database_error().and_then(|e| e.constraint()) {
        Some("roles_name_key") => crate::Error::Conflict("A role with this name exists."),
        _ => err.into(),
    }
}

/// Creates a role; 409 when the name is taken.
pub async fn create(
    conn: impl PgExecutor<'_>,
    name: &str,
    description: Option<&str>,
    permissions: &[String],
) -> crate::Result<Role> {
    let row = sqlx::query_as!(
        RoleRow,
        "INSERT INTO roles (id, name, description, permissions) VALUES ($1, $2, $3, $4)
         RETURNING id, name, description, permissions, created_at",
        Uuid::now_v7(),
        name,
        description,
        serde_json::json!(permissions)
    )
    .fetch_one(conn)
    .await
    .map_err(name_taken)?;
    Ok(row.into())
}

/// Updates the given fields (`description: Some(None)` clears it); 409
/// when the new name is taken.
pub async fn update(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    name: Option<&str>,
    description: Option<Option<&str>>,
    permissions: Option<&[String]>,
) -> crate::Result<Option<Role>> {
    let row = sqlx::query_as!(
        RoleRow,
        "UPDATE roles SET name = COALESCE($2, name),
                          description = CASE WHEN $3 THEN $4 ELSE description END,
                          permissions = COALESCE($5, permissions)
         WHERE id = $1 RETURNING id, name, description, permissions, created_at",
        id,
        name,
        description.is_some(),
        description.flatten(),
        permissions.map(|p| serde_json::json!(p)),
    )
    .fetch_optional(conn)
    .await
    .map_err(name_taken)?;
    Ok(row.map(Role::from))
}

pub async fn delete(conn: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    Ok(sqlx::query!("DELETE FROM roles WHERE id = $1", id)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// Assigns a role; `false` when the user already held it.
pub async fn assign(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    role_id: Uuid,
    by: Option<Uuid>,
) -> sqlx::Result<bool> {
    Ok(sqlx::query!(
        "INSERT INTO user_roles (user_id, role_id, assigned_by) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        user_id,
        role_id,
        by
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Removes a role; `false` when the user did not hold it.
pub async fn unassign(
    conn: impl PgExecutor<'_>,
    user_id: Uuid,
    role_id: Uuid,
) -> sqlx::Result<bool> {
    Ok(sqlx::query!(
        "DELETE FROM user_roles WHERE user_id = $1 AND role_id = $2",
        user_id,
        role_id
    )
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// The advisory-lock key that serialises every change of roles, role
/// assignments and user status made through the admin API.
pub const PRIVILEGES_LOCK_KEY: i64 = 0x0075_6d5f_7072_6976; // "um_priv"

/// Takes the privileges lock for the rest of the transaction: two admins
/// removing each other at once cannot both succeed and leave no `*` holder.
pub async fn lock_privileges(conn: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock($1)", PRIVILEGES_LOCK_KEY)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many active, not deleted users hold `*` through some role.
pub async fn active_superusers(conn: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(DISTINCT u.id) AS "n!" FROM users u
           JOIN user_roles ur ON ur.user_id = u.id
           JOIN roles r ON r.id = ur.role_id
           WHERE u.deleted_at IS NULL AND u.status = 'active' AND r.permissions ? '*'"#
    )
    .fetch_one(conn)
    .await
}

/// Every permission held, through any role, by the users who hold role `id`
/// (changing or deleting the role acts on each of them).
pub async fn holders_permissions(conn: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT ARRAY(SELECT DISTINCT p FROM user_roles holder
                        JOIN user_roles ur ON ur.user_id = holder.user_id
                        JOIN roles r ON r.id = ur.role_id,
                        jsonb_array_elements_text(r.permissions) p
                        WHERE holder.role_id = $1)::text[] AS "permissions!""#,
        id
    )
    .fetch_one(conn)
    .await
}

pub async fn find_by_name(conn: impl PgExecutor<'_>, name: &str) -> sqlx::Result<Option<Role>> {
    let row = sqlx::query_as!(
        RoleRow,
        "SELECT id, name, description, permissions, created_at FROM roles WHERE name = $1",
        name
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Role::from))
}
