//! Audit trail: the request context the `users` trigger records, and explicit
//! audit events for what is not a change of a user row.

use std::net::IpAddr;

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

/// Who caused a change and through which request; recorded in every audit row.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    pub request_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The acting user when it differs from the subject (an admin).
    pub actor: Option<Uuid>,
}

/// Makes the `users` audit trigger record `ctx` for the rest of the current
/// transaction (transaction-local settings; call inside a transaction).
pub async fn set_context(conn: impl PgExecutor<'_>, ctx: &AuditContext) -> sqlx::Result<()> {
    sqlx::query!(
        r#"SELECT set_config('app.request_id', $1, true) AS "a!",
                  set_config('app.ip', $2, true) AS "b!",
                  set_config('app.user_agent', $3, true) AS "c!",
                  set_config('app.actor', $4, true) AS "d!""#,
        ctx.request_id.clone().unwrap_or_default(),
        ctx.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        ctx.user_agent.clone().unwrap_or_default(),
        ctx.actor.map(|id| id.to_string()).unwrap_or_default(),
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// The `audit_action` enum of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type, serde::Serialize, serde::Deserialize)]
#[sqlx(type_name = "audit_action", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    UserRegistered,
    LoginSucceeded,
    LoginFailed,
    AccountLocked,
    AccountUnlocked,
    Logout,
    TokenRefreshed,
    RefreshTokenReused,
    SessionsRevoked,
    PasswordChanged,
    PasswordResetRequested,
    PasswordResetCompleted,
    EmailVerificationSent,
    EmailVerified,
    EmailChangeRequested,
    ProfileUpdated,
    StatusChanged,
    RoleCreated,
    RoleUpdated,
    RoleDeleted,
    RoleAssigned,
    RoleRemoved,
    UserSoftDeleted,
    UserRestored,
    UserAnonymized,
    UserPurged,
    DataExported,
}

/// One audit event written by the application.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub action: AuditAction,
    pub user_id: Option<Uuid>,
    pub entity_type: &'a str,
    pub entity_id: Option<Uuid>,
    pub new_values: Option<Value>,
    pub severity: &'a str,
}

impl<'a> AuditEvent<'a> {
    /// An `info` event about `user_id`, on the user entity.
    pub fn about_user(action: AuditAction, user_id: Option<Uuid>) -> Self {
        Self {
            action,
            user_id,
            entity_type: "user",
            entity_id: user_id,
            new_values: None,
            severity: "info",
        }
    }
}

/// Appends `event` to the audit trail.
pub async fn record(
    conn: impl PgExecutor<'_>,
    ctx: &AuditContext,
    event: &AuditEvent<'_>,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"INSERT INTO audit_logs (user_id, performed_by, action, entity_type, entity_id,
                                  new_values, ip_address, user_agent, request_id, severity)
           VALUES ($1, $2, $3, $4, $5, $6, $7::text::inet, $8, $9, $10)"#,
        event.user_id,
        ctx.actor,
        event.action as AuditAction,
        event.entity_type,
        event.entity_id,
        event.new_values,
        ctx.ip.map(|ip| ip.to_string()),
        ctx.user_agent,
        ctx.request_id,
        event.severity,
    )
    .execute(conn)
    .await?;
    Ok(())
}
