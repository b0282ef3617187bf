//! The users aggregate: accounts, login bookkeeping, passwords, e-mail.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::domain::user::{User, UserStatus};

/// A new account, validated and hashed.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub status: UserStatus,
    pub gdpr_consent: bool,
}

/// A `users` write refused by a unique constraint, as the API means it: the
/// address or the username is taken (409); anything else stays a database
/// error.
fn taken(err: sqlx::Error) -> crate::Error {
    match err.as_database_error().and_then(|e| e.constraint()) {
        Some("users_email_key") => crate::Error::EmailTaken,
        Some("users_username_key") => crate::Error::UsernameTaken,
        _ => err.into(),
    }
}

/// Inserts an account; 409 `email_taken` / `username_taken` when another
/// account holds either.
pub async fn insert(conn: impl PgExecutor<'_>, new: &NewUser<'_>) -> crate::Result<Uuid> {
    sqlx::query_scalar!(
        r#"INSERT INTO users (id, username, email, password_hash, first_name, last_name, status,
                              gdpr_consent_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8 THEN now() END)
           RETURNING id"#,
        Uuid::now_v7(),
        new.username,
        new.email,
        new.password_hash,
        new.first_name,
        new.last_name,
        new.status as UserStatus,
        new.gdpr_consent,
    )
    .fetch_one(conn)
    .await
    .map_err(taken)
}

/// A user by id unless soft-deleted: every route but the admin's sees
/// only live users.
pub async fn find_live(conn: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<User>> {
    Ok(find_by_id(conn, id)
        .await?
        .filter(|u| u.deleted_at.is_none()))
}

/// The SQL of [`find_by_id`] (for `EXPLAIN` and benchmarks).
pub const FIND_BY_ID_SQL: &str = include_str!("../../queries/users/find_by_id.sql");

/// A user by id, soft-deleted ones included, with role names.
pub async fn find_by_id(conn: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<User>> {
    sqlx::query_file_as!(User, "queries/users/find_by_id.sql", id)
        .fetch_optional(conn)
        .await
}

/// The SQL of [`find_for_login`] (for `EXPLAIN` and benchmarks).
pub const FIND_FOR_LOGIN_SQL: &str = include_str!("../../queries/users/find_for_login.sql");

/// The live (not soft-deleted) user whose e-mail or username is `login`,
/// compared case-insensitively (usernames cannot contain '@', so the two
/// never collide).
pub async fn find_for_login(conn: impl PgExecutor<'_>, login: &str) -> sqlx::Result<Option<User>> {
    sqlx::query_file_as!(User, "queries/users/find_for_login.sql", login)
        .fetch_optional(conn)
        .await
}

/// The SQL of [`id_by_email`] (for `EXPLAIN` and benchmarks).
pub const ID_BY_EMAIL_SQL: &str = include_str!("../../queries/users/id_by_email.sql");

/// The live user with this (normalised) e-mail address.
pub async fn id_by_email(
    conn: impl PgExecutor<'_>,
    email: &str,
) -> sqlx::Result<Option<(Uuid, UserStatus)>> {
    let row = sqlx::query_file!("queries/users/id_by_email.sql", email)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| (r.id, r.status)))
}

/// Sets a new password hash and clears any lockout.
pub async fn set_password(conn: impl PgExecutor<'_>, id: Uuid, hash: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2, failed_login_attempts = 0, locked_until = NULL
         WHERE id = $1",
        id,
        hash
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks `email` as the user's verified address (switching to it for an
/// e-mail change) and activates an account pending verification. `None`
/// when there is no live user `id`; else whether the address changed. 409
/// `email_taken` when another account took the address meanwhile.
pub async fn mark_email_verified(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    email: &str,
) -> crate::Result<Option<bool>> {
    sqlx::query_scalar!(
        r#"WITH old AS (SELECT id, email FROM users
                        WHERE id = $1 AND deleted_at IS NULL FOR UPDATE)
           UPDATE users u SET email = $2, is_email_verified = TRUE,
               status = CASE WHEN u.status = 'pending_verification' THEN 'active'::user_status
                             ELSE u.status END
           FROM old WHERE u.id = old.id
           RETURNING old.email <> u.email AS "changed!""#,
        id,
        email
    )
    .fetch_optional(conn)
    .await
    .map_err(taken)
}

/// The permissions a user holds through its roles (the privilege rule
/// compares them with the caller's), soft-deleted users included.
pub async fn permissions(conn: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT ARRAY(SELECT DISTINCT p FROM user_roles ur
                        JOIN roles r ON r.id = ur.role_id,
                        jsonb_array_elements_text(r.permissions) p
                        WHERE ur.user_id = $1)::text[] AS "permissions!""#,
        id
    )
    .fetch_one(conn)
    .await
}

/// Applies a profile patch (absent fields kept, `null` cleared) to a live user.
pub async fn update_profile(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    patch: &crate::domain::profile::ProfilePatch,
) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        r#"UPDATE users SET
               first_name = CASE WHEN $2 THEN $3 ELSE first_name END,
               last_name = CASE WHEN $4 THEN $5 ELSE last_name END,
               phone_number = CASE WHEN $6 THEN $7 ELSE phone_number END,
               date_of_birth = CASE WHEN $8 THEN $9 ELSE date_of_birth END,
               profile_picture_url = CASE WHEN $10 THEN $11 ELSE profile_picture_url END,
               bio = CASE WHEN $12 THEN $13 ELSE bio END
           WHERE id = $1 AND deleted_at IS NULL"#,
        id,
        patch.first_name.is_some(),
        patch.first_name.clone().flatten(),
        patch.last_name.is_some(),
        patch.last_name.clone().flatten(),
        patch.phone_number.is_some(),
        patch.phone_number.clone().flatten(),
        patch.date_of_birth.is_some(),
        patch.date_of_birth.flatten(),
        patch.profile_picture_url.is_some(),
        patch.profile_picture_url.clone().flatten(),
        patch.bio.is_some(),
        patch.bio.clone().flatten(),
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Sets status and/or the verified flag (an admin's change) of a live user.
pub async fn set_status_and_verification(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    status: Option<UserStatus>,
    is_email_verified: Option<bool>,
) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        r#"UPDATE users SET status = COALESCE($2, status),
                            is_email_verified = COALESCE($3, is_email_verified)
           WHERE id = $1 AND deleted_at IS NULL"#,
        id,
        status as Option<UserStatus>,
        is_email_verified
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Soft-deletes a live user (the original design's `soft_delete_user`).
pub async fn soft_delete(conn: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"SELECT soft_delete_user($1) AS "deleted!""#, id)
        .fetch_one(conn)
        .await
}

/// Restores a soft-deleted, not yet anonymised user with the status it had
/// before the delete (`inactive` where that is unknown: an admin decides);
/// 409 `email_taken` / `username_taken` when a live account took either
/// since the delete.
pub async fn restore(conn: impl PgExecutor<'_>, id: Uuid) -> crate::Result<bool> {
    let restored = sqlx::query!(
        r#"UPDATE users SET deleted_at = NULL,
                            status = COALESCE(status_before_delete, 'inactive'),
                            status_before_delete = NULL
           WHERE id = $1 AND deleted_at IS NOT NULL
             AND anonymized_at IS NULL"#,
        id
    )
    .execute(conn)
    .await
    .map_err(taken)?;
    Ok(restored.rows_affected() == 1)
}

/// Clears failed-login count and lock.
pub async fn unlock(conn: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<bool> {
    let updated = sqlx::query!(
        "UPDATE users SET failed_login_attempts = 0, locked_until = NULL
         WHERE id = $1 AND deleted_at IS NULL",
        id
    )
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Is `email` the address of a live user other than `except`?
pub async fn email_taken(
    conn: impl PgExecutor<'_>,
    email: &str,
    except: Uuid,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users WHERE deleted_at IS NULL
                          AND lower(email) = lower($1) AND id <> $2) AS "taken!""#,
        email,
        except
    )
    .fetch_one(conn)
    .await
}

/// Filters of the user lists.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub q: Option<String>,
    pub status: Option<UserStatus>,
    pub email: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub include_deleted: bool,
    pub sort: UserSort,
}

/// The orders of the user lists, each newest first, ties broken by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserSort {
    #[default]
    CreatedAt,
    LastLoginAt,
}

/// The position of the last row of a page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserCursor {
    /// `created_at` or `last_login_at`, by the sort.
    pub at: Option<DateTime<Utc>>,
    pub id: Uuid,
}

/// The full-text expression of `idx_users_fulltext` (must stay identical).
pub const FULLTEXT: &str = "to_tsvector('english', COALESCE(username, '') || ' ' || \
     COALESCE(email, '') || ' ' || COALESCE(first_name, '') || ' ' || COALESCE(last_name, ''))";

/// Builds the list query (also used by tests to `EXPLAIN` exactly what runs).
pub fn list_query<'a>(
    prefix: &str,
    filter: &'a UserFilter,
    after: Option<&'a UserCursor>,
    limit: i64,
) -> sqlx::QueryBuilder<sqlx::Postgres> {
    let mut qb = sqlx::QueryBuilder::new(prefix);
    qb.push(
        "SELECT id, username, email, password_hash, password_changed_at, failed_login_attempts, \
         locked_until, first_name, last_name, phone_number, date_of_birth, profile_picture_url, \
         bio, status, is_email_verified, is_phone_verified, created_at, updated_at, \
         last_login_at, deleted_at, gdpr_consent_at, data_retention_until, \
         ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
               WHERE ur.user_id = u.id ORDER BY r.name)::text[] AS roles \
         FROM users u WHERE TRUE",
    );
    if !filter.include_deleted {
        qb.push(" AND deleted_at IS NULL");
    }
    if let Some(q) = filter.q.as_deref() {
        qb.push(" AND ")
            .push(FULLTEXT)
            .push(" @@ plainto_tsquery('english', ")
            .push_bind(q)
            .push(")");
    }
    if let Some(status) = filter.status {
        qb.push(" AND status = ").push_bind(status);
    }
    if let Some(email) = filter.email.as_deref() {
        qb.push(" AND lower(email) = lower(")
            .push_bind(email)
            .push(")");
    }
    if let Some(from) = filter.created_from {
        qb.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.created_to {
        qb.push(" AND created_at < ").push_bind(to);
    }
    match (filter.sort, after) {
        (UserSort::CreatedAt, Some(c)) => {
            qb.push(" AND (created_at, id) < (")
                .push_bind(c.at)
                .push(", ")
                .push_bind(c.id)
                .push(")");
        }
        (UserSort::LastLoginAt, Some(c)) => match c.at {
            Some(at) => {
                qb.push(" AND (last_login_at IS NULL OR (last_login_at, id) < (")
                    .push_bind(at)
                    .push(", ")
                    .push_bind(c.id)
                    .push("))");
            }
            None => {
                qb.push(" AND last_login_at IS NULL AND id < ")
                    .push_bind(c.id);
            }
        },
        (_, None) => {}
    }
    qb.push(match filter.sort {
        UserSort::CreatedAt => " ORDER BY created_at DESC, id DESC",
        UserSort::LastLoginAt => " ORDER BY last_login_at DESC NULLS LAST, id DESC",
    });
    qb.push(" LIMIT ").push_bind(limit);
    qb
}

/// One page (`limit + 1` rows, see `http::pagination::page`) of users.
pub async fn list(
    conn: impl PgExecutor<'_>,
    filter: &UserFilter,
    after: Option<&UserCursor>,
    limit: i64,
) -> sqlx::Result<Vec<User>> {
    list_query("", filter, after, limit + 1)
        .build_query_as::<User>()
        .fetch_all(conn)
        .await
}
