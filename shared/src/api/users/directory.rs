//! `GET /v1/users` and `GET /v1/users/{id}`: other users, with `users:read`.

use axum::extract::State;
use serde::Deserialize;
use uuid::Uuid;

use super::search_text;
use crate::db::users;
use crate::db::users::{UserCursor, UserFilter};
use crate::domain::{UserStatus, UserView};
use crate::error::{Error, Result};
use crate::http::{ApiJson, ApiQuery, Page, PathOf, pagination};
use crate::security::{AuthUser, Authorized, perm};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    pub q: Option<String>,
    pub status: Option<UserStatus>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
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
    )
)]
pub(crate) async fn get_user(
    State(state): State<AppState>,
    auth: AuthUser,
    PathOf(id): PathOf<Uuid>,
) -> Result<ApiJson<UserView>> {
    if id != auth.user_id {
        if !auth.can("users:read") {
            return Err(Error::NotFound);
        }
        auth.meets_mfa_policy(&state)?;
    }
    let user = users::find_live(&state.db.read, id)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(ApiJson(UserView::from(&user)))
}
