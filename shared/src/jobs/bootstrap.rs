//! `{"grant_admin": "<e-mail>"}` sent to the cleanup function by an operator
//! (`aws lambda invoke`): gives the live account with that address the
//! `admin` role, audited as done by no user (`performed_by` empty, the
//! request id `grant_admin`). It is how the first admin is made where no
//! host can reach the database (the stack's own network has none). Only an
//! IAM principal allowed to invoke the function can send it.

use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::db::audit::{self, AuditAction, AuditContext, AuditEvent};
use crate::db::{roles, users};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantAdmin {
    pub grant_admin: String,
}

impl GrantAdmin {
    /// The event, if `payload` is one.
    pub fn from_payload(payload: &Value) -> Option<Self> {
        payload.get("grant_admin")?;
        serde_json::from_value(payload.clone()).ok()
    }
}

/// Grants `admin` to the account of `email`: `{"granted": true, "user_id"}`,
/// `granted: false` when it held the role already; an error naming the
/// address when no live account has it.
pub async fn grant_admin(pool: &PgPool, email: &str) -> anyhow::Result<Value> {
    let mut tx = pool.begin().await?;
    let Some((user, _)) = users::id_by_email(&mut *tx, email.trim()).await? else {
        anyhow::bail!("no live account has the address {email}: register it through the API first");
    };
    let Some(admin) = roles::find_by_name(&mut *tx, "admin").await? else {
        anyhow::bail!("the admin role is missing (were the migrations applied?)");
    };
    // No acting user: an operator's event, not an account.
    let granted = roles::assign(&mut *tx, user, admin.id, None).await?;
    if granted {
        let mut event = AuditEvent::about_user(AuditAction::RoleAssigned, Some(user));
        event.new_values = Some(json!({"role": "admin", "by": "grant_admin event"}));
        event.severity = "warning";
        let ctx = AuditContext {
            request_id: Some("grant_admin".into()),
            ..AuditContext::default()
        };
        audit::record(&mut *tx, &ctx, &event).await?;
    }
    tx.commit().await?;
    tracing::warn!(%user, granted, "grant_admin: the admin role was given by an operator's event");
    Ok(json!({"granted": granted, "user_id": user}))
}
