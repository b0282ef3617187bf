//! `GET /v1/users/me/export`: everything stored about the caller (GDPR).

use axum::Extension;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::db::audit::{self, AuditAction, AuditEntry, AuditEvent};
use crate::db::sessions;
use crate::db::sessions::Session;
use crate::domain::user::AdminUserView;
use crate::error::Result;
use crate::http::{ApiJson, RequestMeta};
use crate::security::Me;
use crate::state::AppState;

/// Everything stored about the caller.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Export {
    pub user: AdminUserView,
    pub roles: Vec<String>,
    pub sessions: Vec<Session>,
    pub audit_events: Vec<AuditEntry>,
    /// Second factors: type, name, created, last used; never a secret.
    pub mfa_factors: Vec<crate::db::mfa::Factor>,
}

#[utoipa::path(
    get,
    path = "/v1/users/me/export",
    tag = "users",
    summary = "Export my data (GDPR)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Everything stored about me", body = Export),
    )
)]
pub(crate) async fn export(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Me { auth, user }: Me,
) -> Result<ApiJson<Export>> {
    audit::record(
        &state.db.write,
        &meta.audit(None),
        &AuditEvent::about_user(AuditAction::DataExported, Some(user.id)),
    )
    .await?;
    let sessions = sessions::list_all(&state.db.write, user.id)
        .await?
        .into_iter()
        .map(|s| Session {
            current: s.id == auth.session_id,
            ..s
        })
        .collect();
    // Staff stay private: of an action someone else performed, the export
    // says what was done, not who did it or from where.
    let audit_events = audit::about_user(&state.db.write, user.id)
        .await?
        .into_iter()
        .map(|e| match e.performed_by {
            Some(by) if by != user.id => AuditEntry {
                performed_by: None,
                ip_address: None,
                user_agent: None,
                ..e
            },
            _ => e,
        })
        .collect();
    let mfa_factors = crate::db::mfa::factors(&state.db.write, user.id).await?;
    Ok(ApiJson(Export {
        mfa_factors,
        roles: user.roles.clone(),
        user: AdminUserView::from(&user),
        sessions,
        audit_events,
    }))
}
