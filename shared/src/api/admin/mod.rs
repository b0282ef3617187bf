//! `/v1/admin/*`: user administration, roles, the audit log and statistics.
//! Each route names its permission in its `Authorized<…>` extractor.

pub(crate) mod audit;
pub(crate) mod mfa;
pub(crate) mod roles;
pub(crate) mod stats;
pub(crate) mod users;

use axum::Router;
use axum::routing::{get, post, put};
use uuid::Uuid;

use crate::db;
use crate::domain::user::{AdminUserView, User};
use crate::error::{Error, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::security::{AuthUser, Authorized, Permission};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/users", get(users::list_users))
        .route(
            "/v1/admin/users/{id}",
            get(users::get_user)
                .patch(users::update_user)
                .delete(users::delete_user),
        )
        .route("/v1/admin/users/{id}/unlock", post(users::unlock))
        .route(
            "/v1/admin/users/{id}/revoke-sessions",
            post(users::revoke_sessions),
        )
        .route(
            "/v1/admin/users/{id}/password-reset",
            post(users::send_password_reset),
        )
        .route("/v1/admin/users/{id}/restore", post(users::restore))
        .route(
            "/v1/admin/users/{id}/mfa",
            axum::routing::delete(mfa::reset_mfa),
        )
        .route(
            "/v1/admin/users/{id}/roles/{role_name}",
            put(roles::assign_role).delete(roles::remove_role),
        )
        .route(
            "/v1/admin/roles",
            get(roles::list_roles).post(roles::create_role),
        )
        .route(
            "/v1/admin/roles/{id}",
            axum::routing::patch(roles::update_role).delete(roles::delete_role),
        )
        .route("/v1/admin/audit-logs", get(audit::audit_logs))
        .route("/v1/admin/stats", get(stats::get_stats))
}

/// The role the migrations create, holding `*`: it cannot be renamed, lose
/// `*`, or be deleted.
pub const BUILT_IN_ADMIN: &str = "admin";

async fn subject(state: &AppState, id: Uuid) -> Result<User> {
    db::users::find_by_id(&state.db.write, id)
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
    caller: &mut Authorized<P>,
) -> Result<Tx> {
    let mut tx = state.db.write.begin().await?;
    db::roles::lock_privileges(&mut *tx).await?;
    let now = db::callers::caller(&mut *tx, caller.user_id, caller.session_id)
        .await?
        .filter(|c| !c.deleted)
        .ok_or(Error::Unauthorized)?;
    if !now.status.may_log_in(state.config.require_verified_email) {
        return Err(Error::AccountDisabled);
    }
    if !now.session_live {
        return Err(Error::Unauthorized);
    }
    // Under the privileges lock no role changes: the catalog read in this
    // transaction is at the statement's version.
    let roles = state
        .roles
        .at(&mut *tx, now.roles_version)
        .await?
        .ok_or_else(|| Error::Unavailable(anyhow::anyhow!("the roles changed under the lock")))?;
    caller.permissions = roles.permissions(&now.role_ids);
    caller.require(P::NAME)?;
    db::audit::set_context(&mut *tx, &meta.audit(Some(caller.user_id))).await?;
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
    let user = db::users::find_by_id(&mut **tx, id)
        .await?
        .filter(|u| wanted == Wanted::Any || u.deleted_at.is_none())
        .ok_or(Error::NotFound)?;
    caller.outranks(&db::users::permissions(&mut **tx, id).await?)?;
    Ok(user)
}

/// The invariant checked after a change: if there was an active `*`
/// holder before it (`before`), there is one after it; else 409 and the
/// transaction is rolled back.
async fn keep_a_superuser(tx: &mut Tx, before: i64) -> Result<()> {
    if before > 0 && db::roles::active_superusers(&mut **tx).await? == 0 {
        return Err(Error::Conflict(LAST_SUPERUSER));
    }
    Ok(())
}

pub(crate) const LAST_SUPERUSER: &str =
    "This would leave no active user holding '*': grant '*' to another active user first.";

fn admin_view(user: &User) -> ApiJson<AdminUserView> {
    ApiJson(AdminUserView::from(user))
}
