//! Refresh-token rotation with reuse detection, and logout.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::{Issued, SessionOf, issue};
use crate::db::audit::{self, AuditAction, AuditContext, AuditEvent};
use crate::db::{logins, one_time_tokens, sessions, users};
use crate::domain::user::User;
use crate::error::{Error, Result};
use crate::http::RequestMeta;
use crate::metrics::{self, Event};
use crate::security::opaque;
use crate::state::AppState;

/// Rotates `refresh_token`: it is spent and its successor, in the same
/// session and never outliving it, is issued with a new access token.
/// A rotated token presented after the grace window is a copy in someone
/// else's hands: the whole session ends (401 `refresh_token_reused`). An
/// unknown, spent, expired or foreign-device token is 401
/// `refresh_token_invalid`; an account that may no longer log in, 403.
pub async fn rotate(
    state: &AppState,
    meta: &RequestMeta,
    refresh_token: &str,
    fingerprint: Option<&str>,
) -> Result<(Issued, User)> {
    let token = sessions::find_by_hash(&state.db.write, &opaque::hash(refresh_token))
        .await?
        .ok_or(Error::RefreshTokenInvalid)?;
    let ctx = meta.audit(None);
    let now = Utc::now();
    if token.revoked_at.is_some() {
        if reused(state, &token, now) {
            revoke_reused(state, &ctx, &token).await?;
            return Err(Error::RefreshTokenReused);
        }
        return Err(Error::RefreshTokenInvalid);
    }
    if token.expires_at <= now || token.session_expires_at <= now {
        return Err(Error::RefreshTokenInvalid);
    }
    if token.device_fingerprint.is_some() && token.device_fingerprint.as_deref() != fingerprint {
        return Err(Error::RefreshTokenInvalid);
    }
    let user = users::find_live(&state.db.write, token.user_id)
        .await?
        .ok_or(Error::RefreshTokenInvalid)?;
    if !user.status.may_log_in(state.config.require_verified_email) {
        return Err(Error::AccountDisabled);
    }

    let mut tx = state.db.write.begin().await?;
    // Share-locks the user row: a revocation of this user (which locks it
    // exclusively) either ran before, and the claim below fails, or waits
    // and then revokes the successor too.
    match logins::lock_for_refresh(&mut *tx, user.id).await? {
        Some((_, false)) => {}
        _ => return Err(Error::RefreshTokenInvalid),
    }
    if !sessions::claim_for_rotation(&mut *tx, token.id).await? {
        // Another refresh of the same token won the race.
        return Err(Error::RefreshTokenInvalid);
    }
    let session = SessionOf {
        user_id: user.id,
        session_id: token.session_id,
        expires_at: token.session_expires_at,
    };
    let fingerprint = token.device_fingerprint.as_deref();
    let (issued, successor) = issue(state, &mut tx, &session, meta, fingerprint).await?;
    sessions::set_successor(&mut *tx, token.id, successor).await?;
    let mut event = AuditEvent::about_user(AuditAction::TokenRefreshed, Some(user.id));
    event.new_values = Some(json!({"session_id": token.session_id}));
    audit::record(&mut *tx, &ctx, &event).await?;
    tx.commit().await?;
    metrics::count(Event::Refresh);
    Ok((issued, user))
}

/// Logs out with `refresh_token`: its session ends, or every session of
/// its user with `all_sessions` (and a pending e-mail change: "log out
/// everywhere" is what a user does who fears a thief). Idempotent: an
/// unknown, spent or expired token ends nothing, and a rotated one past the
/// grace window ends its session as at refresh.
pub async fn end(
    state: &AppState,
    meta: &RequestMeta,
    refresh_token: &str,
    all_sessions: bool,
) -> Result<()> {
    let now = Utc::now();
    let ctx = meta.audit(None);
    let hash = opaque::hash(refresh_token);
    let Some(token) = sessions::find_by_hash(&state.db.write, &hash).await? else {
        return Ok(());
    };
    if reused(state, &token, now) {
        return revoke_reused(state, &ctx, &token).await;
    }
    if token.revoked_at.is_some() || token.expires_at <= now || token.session_expires_at <= now {
        return Ok(());
    }
    let mut tx = state.db.write.begin().await?;
    if all_sessions {
        sessions::revoke_user_sessions(&mut tx, token.user_id, None).await?;
        one_time_tokens::invalidate_email_verifications(&mut *tx, token.user_id).await?;
    } else {
        sessions::revoke_session(&mut tx, token.user_id, token.session_id).await?;
    }
    let mut event = AuditEvent::about_user(AuditAction::Logout, Some(token.user_id));
    event.new_values = Some(json!({"session_id": token.session_id, "all_sessions": all_sessions}));
    audit::record(&mut *tx, &ctx, &event).await?;
    tx.commit().await?;
    Ok(())
}

/// Is `token` (revoked) a rotated token presented after the grace window,
/// that is, a copy in someone else's hands?
fn reused(state: &AppState, token: &sessions::RefreshToken, now: DateTime<Utc>) -> bool {
    let grace = Duration::from_std(state.config.refresh_reuse_grace).unwrap_or_default();
    token.replaced_by.is_some() && token.revoked_at.is_some_and(|at| now - at > grace)
}

/// Reuse detected: the whole session ends, audited as a warning (once:
/// presenting the token again, when nothing is left to revoke, writes nothing).
async fn revoke_reused(
    state: &AppState,
    ctx: &AuditContext,
    token: &sessions::RefreshToken,
) -> Result<()> {
    let mut tx = state.db.write.begin().await?;
    if sessions::revoke_session(&mut tx, token.user_id, token.session_id).await? == 0 {
        return Ok(());
    }
    let mut event = AuditEvent::about_user(AuditAction::RefreshTokenReused, Some(token.user_id));
    event.severity = "warning";
    event.new_values = Some(json!({"session_id": token.session_id}));
    audit::record(&mut *tx, ctx, &event).await?;
    tx.commit().await?;
    metrics::count(Event::RefreshReuse);
    Ok(())
}
