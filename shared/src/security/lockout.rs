//! Consecutive wrong passwords lock an account: at login and at the step-up
//! checks of the users routes (change password or e-mail, delete the
//! account), with one counter and one threshold (docs/security.md).

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::db::audit::{self, AuditAction, AuditContext, AuditEvent};
use crate::db::users;
use crate::domain::user::User;
use crate::error::{Error, Result};
use crate::metrics::{self, Event};
use crate::state::AppState;

/// 423 `account_locked` while the user's lock runs, whatever the password.
pub fn ensure_not_locked(user: &User) -> Result<()> {
    let now = Utc::now();
    match user.locked_until.filter(|until| *until > now) {
        Some(until) => Err(Error::AccountLocked {
            retry_after_secs: (until - now).num_seconds().max(1) as u64,
        }),
        None => Ok(()),
    }
}

/// Counts a wrong password for `user_id` (`None`: an unknown login, which
/// runs the same statements so that both take the same time), audits it
/// with `reason` and `severity`, and the lock when this failure set it.
/// Returns the error to answer: 401 `invalid_credentials`.
pub async fn wrong_password(
    state: &AppState,
    ctx: &AuditContext,
    user_id: Option<Uuid>,
    reason: &str,
    severity: &'static str,
) -> Result<Error> {
    let mut tx = state.db.write.begin().await?;
    let failed = users::record_failed_login(
        &mut *tx,
        user_id.unwrap_or_else(Uuid::nil),
        state.config.lockout_threshold as i32,
        state.config.lockout_minutes as i32,
    )
    .await?;
    let mut event = AuditEvent::about_user(AuditAction::LoginFailed, user_id);
    event.severity = severity;
    event.new_values = Some(match failed {
        Some(f) => json!({"reason": reason, "failed_login_attempts": f.attempts}),
        None => json!({"reason": reason}),
    });
    audit::record(&mut *tx, ctx, &event).await?;
    let just_locked = failed.is_some_and(|f| f.just_locked);
    if let Some(f) = failed.filter(|f| f.just_locked) {
        let mut event = AuditEvent::about_user(AuditAction::AccountLocked, user_id);
        event.severity = "warning";
        event.new_values = Some(json!({"locked_until": f.locked_until}));
        audit::record(&mut *tx, ctx, &event).await?;
    }
    tx.commit().await?;
    metrics::count(Event::LoginFailure);
    if just_locked {
        metrics::count(Event::Lockout);
    }
    Ok(Error::InvalidCredentials)
}
