//! `GET /v1/users/me/sessions` and `DELETE /v1/users/me/sessions/{id}`.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::PageQuery;
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::sessions;
use crate::db::sessions::Session;
use crate::error::{Error, Result};
use crate::http::{ApiJson, ApiQuery, Page, PathOf, RequestMeta, pagination};
use crate::security::AuthUser;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/v1/users/me/sessions",
    tag = "users",
    summary = "List my sessions",
    params(PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "My live sessions", body = crate::http::Page<crate::db::sessions::Session>),
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
    )
)]
pub(crate) async fn revoke_session(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    auth: AuthUser,
    PathOf(id): PathOf<Uuid>,
) -> Result<StatusCode> {
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
