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
use crate::security::AuthUser;
use crate::state::AppState;

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
