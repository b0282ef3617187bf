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
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    sqlx::Type,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
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
    MfaEnabled,
    MfaDisabled,
    MfaVerified,
    RecoveryCodesRegenerated,
    MfaReset,
    PhoneVerificationSent,
    PhoneVerified,
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

/// An audit row as the API shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub user_id: Option<Uuid>,
    pub performed_by: Option<Uuid>,
    pub action: AuditAction,
    pub entity_type: String,
    pub entity_id: Option<Uuid>,
    pub old_values: Option<Value>,
    pub new_values: Option<Value>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub severity: String,
    pub tags: Option<Vec<String>>,
}

/// Filters of the audit-log query.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user_id: Option<Uuid>,
    pub performed_by: Option<Uuid>,
    pub action: Option<AuditAction>,
    pub entity_type: Option<String>,
    pub entity_id: Option<Uuid>,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

/// The position of the last entry of a page (newest first).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditCursor {
    pub at: chrono::DateTime<chrono::Utc>,
    pub id: i64,
}

/// Builds the audit query (tests `EXPLAIN` exactly this). Time bounds are
/// also applied to `log_date`, so partitions outside the range are pruned.
pub fn list_query<'a>(
    prefix: &str,
    filter: &'a AuditFilter,
    after: Option<&'a AuditCursor>,
    limit: i64,
) -> sqlx::QueryBuilder<sqlx::Postgres> {
    let mut qb = sqlx::QueryBuilder::new(prefix);
    qb.push(
        "SELECT id, user_id, performed_by, action, entity_type, entity_id, old_values, \
         new_values, host(ip_address) AS ip_address, user_agent, request_id, created_at, \
         severity, tags FROM audit_logs WHERE TRUE",
    );
    if let Some(id) = filter.user_id {
        qb.push(" AND user_id = ").push_bind(id);
    }
    if let Some(id) = filter.performed_by {
        qb.push(" AND performed_by = ").push_bind(id);
    }
    if let Some(action) = filter.action {
        qb.push(" AND action = ").push_bind(action);
    }
    if let Some(kind) = filter.entity_type.as_deref() {
        qb.push(" AND entity_type = ").push_bind(kind);
    }
    if let Some(id) = filter.entity_id {
        qb.push(" AND entity_id = ").push_bind(id);
    }
    if let Some(from) = filter.from {
        qb.push(" AND created_at >= ").push_bind(from);
        qb.push(" AND log_date >= (")
            .push_bind(from)
            .push(" AT TIME ZONE 'UTC')::date");
    }
    if let Some(to) = filter.to {
        qb.push(" AND created_at < ").push_bind(to);
        qb.push(" AND log_date <= (")
            .push_bind(to)
            .push(" AT TIME ZONE 'UTC')::date");
    }
    if let Some(c) = after {
        qb.push(" AND (created_at, id) < (")
            .push_bind(c.at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    qb
}

/// One page (`limit + 1` rows) of audit entries.
pub async fn list(
    conn: impl PgExecutor<'_>,
    filter: &AuditFilter,
    after: Option<&AuditCursor>,
    limit: i64,
) -> sqlx::Result<Vec<AuditEntry>> {
    list_query("", filter, after, limit + 1)
        .build_query_as::<AuditEntry>()
        .fetch_all(conn)
        .await
}

/// Every audit entry about a user (the GDPR export).
pub async fn about_user(conn: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<AuditEntry>> {
    sqlx::query_as!(
        AuditEntry,
        r#"SELECT id, user_id, performed_by, action AS "action: AuditAction", entity_type,
                  entity_id, old_values, new_values, host(ip_address) AS ip_address, user_agent,
                  request_id, created_at, severity AS "severity!", tags
           FROM audit_logs WHERE user_id = $1 ORDER BY created_at, id"#,
        user_id
    )
    .fetch_all(conn)
    .await
}
