//! `GET /v1/admin/audit-logs`: the audit trail, filtered and paged.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::db::audit::{self, AuditAction, AuditCursor, AuditEntry, AuditFilter};
use crate::error::{Error, Result};
use crate::http::{ApiJson, ApiQuery, Page, pagination};
use crate::security::{Authorized, perm};
use crate::state::AppState;

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

#[utoipa::path(
    get,
    path = "/v1/admin/audit-logs",
    tag = "admin",
    summary = "Query the audit log (audit:read)",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Audit entries, newest first", body = crate::http::Page<crate::db::audit::AuditEntry>),
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
