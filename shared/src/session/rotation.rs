//! Refresh-token rotation with reuse detection, and logout.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use super::Issued;
use crate::db::audit::{self, AuditAction, AuditContext, AuditEvent};
use crate::db::{one_time_tokens, sessions};
use crate::domain::UserStatus;
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
/// The access token is signed after the statement committed: should that
/// fail (it cannot with a key that loaded), the session has a successor no
/// client holds, and its user logs in again.
pub async fn rotate(
    state: &AppState,
    meta: &RequestMeta,
    refresh_token: &str,
    fingerprint: Option<&str>,
) -> Result<(Issued, User)> {
    let successor = opaque::generate();
    let may_log_in = UserStatus::allowed_to_log_in(state.config.require_verified_email);
    let rotation = sessions::Rotation {
        presented_hash: &opaque::hash(refresh_token),
        fingerprint,
        may_log_in: &may_log_in,
        successor_id: Uuid::now_v7(),
        successor_hash: &opaque::hash(&successor),
        ttl_days: i32::try_from(state.config.refresh_token_ttl_days).unwrap_or(i32::MAX),
        ip: meta.ip.map(|ip| ip.to_string()),
        user_agent: meta.user_agent.as_deref(),
        request_id: &meta.request_id,
    };
    let found = sessions::rotate(&state.db.write, &rotation)
        .await?
        .ok_or(Error::RefreshTokenInvalid)?;
    let token = found.token();
    let Some(expires_at) = found.successor_expires_at else {
        // Not spent: say why, in the order of the checks.
        return Err(refusal(state, meta, &found, fingerprint).await);
    };
    let amr = found.successor_amr.clone().unwrap_or_default();
    let access_token = state
        .keys
        .issue(token.user_id, token.session_id, &amr)
        .map_err(Error::Internal)?;
    metrics::count(Event::Refresh);
    let issued = Issued {
        access_token,
        refresh_token: successor,
        refresh_expires_in: (expires_at - found.db_now).num_seconds().max(0),
        session_id: token.session_id,
    };
    Ok((issued, found.user))
}

/// Why [`rotate`] spent nothing: a rotated token past the grace window ends
/// its session (reuse); a spent, expired or foreign-device token, or one
/// whose user is gone, is invalid; a user who may no longer log in is 403;
/// and a live token another refresh spent first lost the race.
async fn refusal(
    state: &AppState,
    meta: &RequestMeta,
    found: &sessions::Rotated,
    fingerprint: Option<&str>,
) -> Error {
    let (token, user, now) = (&found.token(), &found.user, found.db_now);
    if token.revoked_at.is_some() {
        if reused(state, token, now) {
            if let Err(err) = revoke_reused(state, &meta.audit(None), token).await {
                return err;
            }
            return Error::RefreshTokenReused;
        }
        return Error::RefreshTokenInvalid;
    }
    if token.expires_at <= now || token.session_expires_at <= now {
        return Error::RefreshTokenInvalid;
    }
    if token.device_fingerprint.is_some() && token.device_fingerprint.as_deref() != fingerprint {
        return Error::RefreshTokenInvalid;
    }
    if user.deleted_at.is_some() {
        return Error::RefreshTokenInvalid;
    }
    if !user.status.may_log_in(state.config.require_verified_email) {
        return Error::AccountDisabled;
    }
    Error::RefreshTokenInvalid
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
