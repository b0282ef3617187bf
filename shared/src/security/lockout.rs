//! Consecutive wrong passwords lock an account: at login and at the step-up
//! checks of the users routes (change password or e-mail, delete the
//! account), with one counter and one threshold (docs/security.md).
//! Each attempt is counted before its password is checked, so guesses sent
//! at once cannot all pass the lock check; a right password clears the count.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::db::audit::{self, AuditAction, AuditContext, AuditEvent};
use crate::db::logins::{self, Attempt};
use crate::db::rate_limits;
use crate::db::{mfa, users};

use crate::error::{Error, Result};
use crate::metrics::{self, Event};
use crate::security::opaque;
use crate::state::AppState;

/// Whose password is tried.
#[derive(Debug, Clone, Copy)]
pub enum Claimant<'a> {
    User(Uuid),
    /// A login that names no account.
    Unknown(&'a str),
}

/// Counts an attempt before its password is checked: 423 `account_locked`
/// (with the time left) while the account is locked. An unknown login is
/// counted and locked the same way in a row of its own (same writes, same
/// answers: the lockout tells nothing about whether an account exists); it
/// gets `None`.
pub async fn reserve(state: &AppState, who: Claimant<'_>) -> Result<Option<Attempt>> {
    let id = match who {
        Claimant::User(id) => id,
        Claimant::Unknown(login) => {
            let key = format!("sha256:{}", opaque::hash(&login.to_lowercase()));
            let counted = rate_limits::reserve_unknown_attempt(
                &state.db.write,
                &key,
                state.config.lockout_threshold as i32,
                state.config.lockout_minutes as i32,
            )
            .await?;
            if counted.is_some() {
                return Ok(None);
            }
            let until = rate_limits::unknown_blocked_until(&state.db.write, &key).await?;
            return Err(locked(until));
        }
    };
    let attempt = logins::reserve_attempt(
        &state.db.write,
        id,
        state.config.lockout_threshold as i32,
        state.config.lockout_minutes as i32,
    )
    .await?;
    if attempt.is_some() {
        return Ok(attempt);
    }
    match logins::locked_until(&state.db.write, id).await? {
        Some(until) => Err(locked(Some(until))),
        // Purged since it was read: a wrong password all the same.
        None => Err(Error::InvalidCredentials),
    }
}

/// 423 `account_locked` with the seconds left.
fn locked(until: Option<chrono::DateTime<Utc>>) -> Error {
    Error::AccountLocked {
        retry_after_secs: until.map_or(1, |u| (u - Utc::now()).num_seconds().max(1) as u64),
    }
}

/// The lock `attempt` set itself, if it reached the threshold: a right
/// answer may lift that one, never a lock other attempts set.
pub fn own_lock(attempt: Option<Attempt>) -> Option<chrono::DateTime<Utc>> {
    attempt
        .filter(|a| a.just_locked)
        .and_then(|a| a.locked_until)
}

/// A counted attempt that ended before its password was judged (a refused
/// new password, a busy hashing slot, a conflict): it stops counting.
pub async fn forget(state: &AppState, user_id: Uuid, attempt: Option<Attempt>) -> Result<()> {
    logins::clear_attempts(&state.db.write, user_id, own_lock(attempt)).await?;
    Ok(())
}

/// Clears the count after a right password (in `tx`); 423 when a lock that
/// this attempt did not set is in force.
pub async fn right_password(
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    attempt: Option<Attempt>,
) -> Result<()> {
    let cleared = logins::clear_attempts(&mut *conn, user_id, own_lock(attempt)).await?;
    settled(conn, user_id, cleared).await
}

/// After a right password of an account with a second factor (in `tx`):
/// only this attempt stops counting; 423 when a lock that this attempt did
/// not set is in force.
pub async fn password_only(
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    attempt: Option<Attempt>,
) -> Result<()> {
    let released = logins::release_attempt(&mut *conn, user_id, own_lock(attempt)).await?;
    settled(conn, user_id, released).await
}

/// A right answer's settlement: done, or 423 with the time left when a
/// lock it did not set stood in the way.
async fn settled(conn: &mut sqlx::PgConnection, user_id: Uuid, done: bool) -> Result<()> {
    if done {
        return Ok(());
    }
    Err(locked(logins::locked_until(&mut *conn, user_id).await?))
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
        if let Some(user_id) = user_id {
            lengthen_if_second_factor_guessed(state, user_id).await?;
        }
    }
    Ok(Error::InvalidCredentials)
}

/// A lock just set on an account whose second factor has failed since its
/// last success (whichever wrong answer, code or password, set the lock):
/// it lasts `LOCKOUT_MINUTES × 2^(locks before it)`, at most a day, and the
/// owner is told by mail that someone gets past their password. Other
/// locks are left as they are.
async fn lengthen_if_second_factor_guessed(state: &AppState, user_id: Uuid) -> Result<()> {
    let Some(locks) = mfa::record_lock(&state.db.write, user_id).await? else {
        return Ok(());
    };
    let doublings = (locks - 1).clamp(0, 16);
    let minutes = i32::try_from(state.config.lockout_minutes.min(24 * 60)).unwrap_or(24 * 60);
    let until = mfa::lengthen_lock(&state.db.write, user_id, minutes, doublings).await?;
    if let (Some(until), Some(user)) = (until, users::find_live(&state.db.write, user_id).await?) {
        let mail = crate::mail::templates::second_factor_failed(&user.email, until);
        state.mailer.deliver(mail).await;
    }
    Ok(())
}
