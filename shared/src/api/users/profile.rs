//! `GET` and `PATCH /v1/users/me`: the caller's profile.

use axum::Extension;
use axum::extract::State;
use chrono::Utc;

use super::me;
use crate::db::audit;
use crate::db::users;
use crate::domain::UserView;
use crate::domain::profile::ProfilePatch;
use crate::error::{Error, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::security::{AuthUser, Me};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/v1/users/me",
    tag = "users",
    summary = "Read my profile",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = crate::domain::UserView),
    )
)]
pub(crate) async fn get_me(Me { user, .. }: Me) -> Result<ApiJson<UserView>> {
    Ok(ApiJson(UserView::from(&user)))
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
