//! Consecutive wrong passwords lock an account: at login and at the step-up
//! checks of the users routes (change password or e-mail, delete the
//! account), with one counter and one threshold (docs/security.md).
//! Each attempt is counted before its password is checked, so guesses sent
//! at once cannot all pass the lock check; a right password clears the count.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::db::audit::{self, AuditAction, AuditContext, AuditEvent};
use crate::db::users::{self, Attempt};
use crate::error::{Error, Result};
use crate::metrics::{self, Event};
use crate::state::AppState;

/// Counts an attempt for `user_id` before its password is checked: 423
/// `account_locked` (with the time left) while the account is locked.
/// `None` for an unknown login (`user_id` `None`), which runs the same
/// statement so that both take the same time.
pub async fn reserve(state: &AppState, user_id: Option<Uuid>) -> Result<Option<Attempt>> {
    let attempt = users::reserve_attempt(
        &state.db.write,
        user_id.unwrap_or_else(Uuid::nil),
        state.config.lockout_threshold as i32,
        state.config.lockout_minutes as i32,
    )
    .await?;
    let Some(id) = user_id.filter(|_| attempt.is_none()) else {
        return Ok(attempt);
    };
    match users::locked_until(&state.db.write, id).await? {
        Some(until) => Err(Error::AccountLocked {
            retry_after_secs: (until - Utc::now()).num_seconds().max(1) as u64,
        }),
        // Purged since it was read: a wrong password all the same.
        None => Err(Error::InvalidCredentials),
    }
}

/// Audits a wrong password (the attempt was counted by [`reserve`]) with
/// `reason` and `severity`, and the lock if this attempt set it. Returns the
/// error to answer: 401 `invalid_credentials`.
pub async fn wrong_password(
    state: &AppState,
    ctx: &AuditContext,
    user_id: Option<Uuid>,
    attempt: Option<Attempt>,
    reason: &str,
    severity: &'static str,
) -> Result<Error> {
    let mut tx = state.db.write.begin().await?;
    let mut event = AuditEvent::about_user(AuditAction::LoginFailed, user_id);
    event.severity = severity;
    event.new_values = Some(match attempt {
        Some(a) => json!({"reason": reason, "failed_login_attempts": a.attempts}),
        None => json!({"reason": reason}),
    });
    audit::record(&mut *tx, ctx, &event).await?;
    let locked = attempt.filter(|a| a.just_locked);
    if let Some(a) = locked {
        let mut event = AuditEvent::about_user(AuditAction::AccountLocked, user_id);
        event.severity = "warning";
        event.new_values = Some(json!({"locked_until": a.locked_until}));
        audit::record(&mut *tx, ctx, &event).await?;
    }
    tx.commit().await?;
    metrics::count(Event::LoginFailure);
    if locked.is_some() {
        metrics::count(Event::Lockout);
    }
    Ok(Error::InvalidCredentials)
}
