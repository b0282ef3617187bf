//! `POST /v1/auth/login`, `/refresh`, `/logout`: sessions and their token
//! pairs (rotation, reuse detection, lockout through `security::lockout`).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{bounded, client, limit, load_user};
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::logins;
use crate::db::one_time_tokens;
use crate::db::{sessions, users};
use crate::domain::user::User;
use crate::domain::{Password, UserView};
use crate::error::{Error, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::metrics::{self, Event};
use crate::security::lockout::{self, Claimant};
use crate::security::opaque;
use crate::security::passwords::Verified;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub login: String,
    pub password: String,
    pub device_fingerprint: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
    pub device_fingerprint: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    pub refresh_token: String,
    #[serde(default)]
    pub all_sessions: bool,
}

/// The answer of login and refresh.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
    pub user: UserView,
}

/// Starts a session: its first refresh token, and an access token for it.
/// Returns the access token, the refresh token, the refresh token's
/// lifetime in seconds and the session id.
async fn start_session(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    meta: &RequestMeta,
    fingerprint: Option<&str>,
) -> Result<(String, String, i64, Uuid)> {
    let now = Utc::now();
    let session_id = Uuid::now_v7();
    let session_expires_at = now + Duration::days(i64::from(state.config.session_max_days));
    let expires_at = (now + Duration::days(i64::from(state.config.refresh_token_ttl_days)))
        .min(session_expires_at);
    let refresh_token = opaque::generate();
    sessions::insert(
        &mut *conn,
        &sessions::NewRefreshToken {
            user_id,
            session_id,
            token_hash: &opaque::hash(&refresh_token),
            expires_at,
            session_expires_at,
            ip: meta.ip.map(|ip| ip.to_string()),
            user_agent: meta.user_agent.as_deref(),
            device_fingerprint: fingerprint,
        },
    )
    .await?;
    let access_token = state
        .keys
        .issue(user_id, session_id)
        .map_err(Error::Internal)?;
    Ok((
        access_token,
        refresh_token,
        lifetime_secs(now, expires_at),
        session_id,
    ))
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
    ctx: &crate::db::audit::AuditContext,
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

/// Seconds from `now` to `expires_at`, both fixed when the token was made
/// (so 14 days are 1209600, not a second less).
fn lifetime_secs(now: DateTime<Utc>, expires_at: DateTime<Utc>) -> i64 {
    (expires_at - now).num_seconds().max(0)
}

fn token_pair(
    state: &AppState,
    access_token: String,
    refresh_token: String,
    refresh_expires_in: i64,
    user: &User,
) -> Response {
    let pair = TokenPair {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.keys.ttl().as_secs(),
        refresh_token,
        refresh_expires_in,
        user: UserView::from(user),
    };
    ApiJson(pair).into_response()
}

#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    summary = "Log in with e-mail or username",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Access and refresh tokens", body = TokenPair),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 423, description = "Account locked; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response> {
    limit(&state, "login", &client(&meta)).await?;
    let login = body.login.trim();
    if login.is_empty() || login.chars().count() > 255 {
        return Err(Error::field("login", "must be 1 to 255 characters"));
    }
    let password = Password::candidate(&body.password).map_err(|m| Error::field("password", m))?;
    let fingerprint = bounded("device_fingerprint", body.device_fingerprint, 255)?;
    let ctx = meta.audit(None);
    // Logins are ASCII (usernames and e-mail addresses are): any other
    // string names no account, whatever PostgreSQL's lower() makes of it.
    let user = match login.is_ascii() {
        true => users::find_for_login(&state.db.write, login).await?,
        false => None,
    };
    // Per account, however it is named (username, e-mail, case).
    let account = user
        .as_ref()
        .map_or_else(|| login.to_lowercase(), |u| u.id.to_string());
    limit(&state, "login-account", &account).await?;

    // The hashing slot first: a request refused for load (503) never
    // counts toward the lockout.
    let slot = state.hasher.slot().await?;
    let Some(user) = user else {
        // Same work, same answer as a wrong password: no enumeration. The
        // same writes (a counter row for the unknown login) and the same
        // hash, so the answer time tells nothing either.
        let attempt = lockout::reserve(&state, Claimant::Unknown(login)).await?;
        state.hasher.verify_in(slot, &password, None).await?;
        let reason = "unknown_login";
        return Err(lockout::wrong_password(&state, &ctx, None, attempt, reason, "info").await?);
    };
    let attempt = lockout::reserve(&state, Claimant::User(user.id)).await?;
    let verified = state
        .hasher
        .verify_in(slot, &password, Some(&user.password_hash))
        .await?;
    if verified == Verified::No {
        let reason = "wrong_password";
        return Err(
            lockout::wrong_password(&state, &ctx, Some(user.id), attempt, reason, "info").await?,
        );
    }
    let rehash = match verified {
        Verified::YesRehash => Some(state.hasher.hash(&password).await?),
        _ => None,
    };

    // Under the row lock a reset, suspension or delete also takes: if one
    // committed while the password was being checked, this login loses. If
    // the hash changed (a reset, or a concurrent login's rehash), the
    // password is checked again against it, outside the lock.
    let mut rehash = rehash;
    let mut checked = user.password_hash.clone();
    let mut locked = None;
    for _ in 0..3 {
        let mut tx = state.db.write.begin().await?;
        audit::set_context(&mut *tx, &ctx).await?;
        let current = logins::lock_for_login(&mut *tx, user.id)
            .await?
            .filter(|u| !u.deleted)
            .ok_or(Error::InvalidCredentials)?;
        if current.password_hash == checked {
            locked = Some((tx, current));
            break;
        }
        tx.rollback().await?;
        rehash = None;
        let again = state
            .hasher
            .verify(&password, Some(&current.password_hash))
            .await?;
        if again == Verified::No {
            let reason = "wrong_password";
            let failed =
                lockout::wrong_password(&state, &ctx, Some(user.id), attempt, reason, "info");
            return Err(failed.await?);
        }
        checked = current.password_hash;
    }
    let (mut tx, current) = locked.ok_or(Error::InvalidCredentials)?;
    lockout::right_password(&mut tx, user.id, attempt).await?;
    if !current
        .status
        .may_log_in(state.config.require_verified_email)
    {
        // The right password: the attempt does not count, the login fails.
        let mut event = AuditEvent::about_user(AuditAction::LoginFailed, Some(user.id));
        event.new_values = Some(json!({"reason": "account_disabled", "status": current.status}));
        audit::record(&mut *tx, &ctx, &event).await?;
        tx.commit().await?;
        return Err(Error::AccountDisabled);
    }
    logins::record_successful_login(&mut *tx, user.id, rehash.as_deref()).await?;
    let (access, refresh_token, refresh_expires_in, session_id) =
        start_session(&state, &mut tx, user.id, &meta, fingerprint.as_deref()).await?;
    let mut event = AuditEvent::about_user(AuditAction::LoginSucceeded, Some(user.id));
    event.new_values = Some(json!({"session_id": session_id}));
    audit::record(&mut *tx, &ctx, &event).await?;
    tx.commit().await?;

    metrics::count(Event::LoginSuccess);
    let user = load_user(&state, user.id).await?;
    Ok(token_pair(
        &state,
        access,
        refresh_token,
        refresh_expires_in,
        &user,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/auth/refresh",
    tag = "auth",
    summary = "Rotate a refresh token",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A rotated token pair", body = TokenPair),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Response> {
    limit(&state, "refresh", &client(&meta)).await?;
    let fingerprint = bounded("device_fingerprint", body.device_fingerprint, 255)?;
    let token_hash = opaque::hash(&body.refresh_token);
    let token = sessions::find_by_hash(&state.db.write, &token_hash)
        .await?
        .ok_or(Error::RefreshTokenInvalid)?;
    let ctx = meta.audit(None);
    let now = Utc::now();

    if token.revoked_at.is_some() {
        if reused(&state, &token, now) {
            revoke_reused(&state, &ctx, &token).await?;
            return Err(Error::RefreshTokenReused);
        }
        return Err(Error::RefreshTokenInvalid);
    }
    if token.expires_at <= now || token.session_expires_at <= now {
        return Err(Error::RefreshTokenInvalid);
    }
    if token.device_fingerprint.is_some() && token.device_fingerprint != fingerprint {
        return Err(Error::RefreshTokenInvalid);
    }
    let user = users::find_by_id(&state.db.write, token.user_id)
        .await?
        .filter(|u| u.deleted_at.is_none())
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
    let refresh_token = opaque::generate();
    let expires_at = (now + Duration::days(i64::from(state.config.refresh_token_ttl_days)))
        .min(token.session_expires_at);
    let successor = sessions::insert(
        &mut *tx,
        &sessions::NewRefreshToken {
            user_id: user.id,
            session_id: token.session_id,
            token_hash: &opaque::hash(&refresh_token),
            expires_at,
            session_expires_at: token.session_expires_at,
            ip: meta.ip.map(|ip| ip.to_string()),
            user_agent: meta.user_agent.as_deref(),
            device_fingerprint: token.device_fingerprint.as_deref(),
        },
    )
    .await?;
    sessions::set_successor(&mut *tx, token.id, successor).await?;
    let mut event = AuditEvent::about_user(AuditAction::TokenRefreshed, Some(user.id));
    event.new_values = Some(json!({"session_id": token.session_id}));
    audit::record(&mut *tx, &ctx, &event).await?;
    tx.commit().await?;

    metrics::count(Event::Refresh);
    let access = state
        .keys
        .issue(user.id, token.session_id)
        .map_err(Error::Internal)?;
    Ok(token_pair(
        &state,
        access,
        refresh_token,
        lifetime_secs(now, expires_at),
        &user,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    tag = "auth",
    summary = "End the session (or all sessions)",
    request_body = LogoutRequest,
    responses(
        (status = 204, description = "Logged out (idempotent)"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<LogoutRequest>,
) -> Result<StatusCode> {
    limit(&state, "logout", &client(&meta)).await?;
    let token_hash = opaque::hash(&body.refresh_token);
    let now = Utc::now();
    let ctx = meta.audit(None);
    let Some(token) = sessions::find_by_hash(&state.db.write, &token_hash).await? else {
        return Ok(StatusCode::NO_CONTENT);
    };
    // A rotated token after the grace window is a stolen copy, here as at
    // refresh: its session ends. Otherwise only a live token is a
    // credential: a spent or expired one ends nothing (204 all the same).
    if reused(&state, &token, now) {
        revoke_reused(&state, &ctx, &token).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    if token.revoked_at.is_none() && token.expires_at > now && token.session_expires_at > now {
        let mut tx = state.db.write.begin().await?;
        if body.all_sessions {
            sessions::revoke_user_sessions(&mut tx, token.user_id, None).await?;
            // "Log out everywhere" is what a user does who fears a thief:
            // a pending e-mail change goes too.
            one_time_tokens::invalidate_email_verifications(&mut *tx, token.user_id).await?;
        } else {
            sessions::revoke_session(&mut tx, token.user_id, token.session_id).await?;
        }
        let mut event = AuditEvent::about_user(AuditAction::Logout, Some(token.user_id));
        event.new_values =
            Some(json!({"session_id": token.session_id, "all_sessions": body.all_sessions}));
        audit::record(&mut *tx, &ctx, &event).await?;
        tx.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}
