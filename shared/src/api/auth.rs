//! `/v1/auth/*` and `/.well-known/*`: registration, login, refresh-token
//! rotation, logout, password reset, e-mail verification, and the public
//! key documents. Every state change is audited in its own transaction.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::one_time_tokens::{self, MailKind};
use crate::db::{sessions, users};
use crate::domain::user::User;
use crate::domain::{Email, Password, UserStatus, UserView, Username, profile};
use crate::error::{Error, FieldError, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::mail::Mail;
use crate::metrics::{self, Event};
use crate::security::lockout::{self, Claimant};
use crate::security::passwords::Verified;
use crate::security::{AuthUser, opaque, rate_limit};
use crate::state::AppState;

pub(crate) const VERIFICATION_TTL_HOURS: i64 = 24;
pub(crate) const RESET_TTL_HOURS: i64 = 1;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/register", post(register))
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/password/forgot", post(forgot_password))
        .route("/v1/auth/password/reset", post(reset_password))
        .route("/v1/auth/email/verify", post(verify_email))
        .route("/v1/auth/email/resend", post(resend_verification))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
}

// ------------------------------------------------------------------ bodies

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub username: String,
    pub email: String,
    pub password: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub gdpr_consent: Option<bool>,
}

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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    pub email: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    pub token: String,
    pub new_password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    pub token: String,
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

// ----------------------------------------------------------------- helpers

fn client(meta: &RequestMeta) -> String {
    meta.ip
        .map_or_else(|| "unknown".into(), |ip| ip.to_string())
}

pub(crate) async fn limit(state: &AppState, endpoint: &str, identifier: &str) -> Result<()> {
    rate_limit::check(
        state.cache.as_ref(),
        &state.db,
        endpoint,
        identifier,
        state.config.rate_limit_for(endpoint),
        60,
    )
    .await
}

/// Bounds an optional client-supplied string (fingerprint) before storing it.
fn bounded(field: &str, value: Option<String>, max: usize) -> Result<Option<String>> {
    match value {
        Some(v) if v.chars().count() > max || v.contains('\0') => Err(Error::field(
            field,
            format!("must be at most {max} characters without NUL"),
        )),
        other => Ok(other),
    }
}

fn link(state: &AppState, path: &str, token: &str) -> String {
    format!(
        "{}/{path}?token={token}",
        state.config.app_base_url.trim_end_matches('/')
    )
}

/// Sends a mail after the transaction that created its token committed; a
/// failure is logged (without the message) and the request still succeeds.
pub(crate) async fn deliver(state: &AppState, mail: Mail) {
    if let Err(err) = state.mailer.send(&mail).await {
        tracing::error!(error = %err, subject = %mail.subject, "sending mail failed");
    }
}

/// The per-address hourly cap of verification mails (registration, resend,
/// e-mail change, counted together; reset mails have their own): takes the
/// address's lock for the rest of `tx` and says whether one more may go.
/// Over the cap the request still succeeds, without a mail.
pub(crate) async fn verification_allowed(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    email: &str,
) -> Result<bool> {
    one_time_tokens::lock_mail_address(&mut *tx, MailKind::Verification, email).await?;
    let recent = one_time_tokens::recent_email_verifications(&mut *tx, email).await?;
    let allowed = recent < i64::from(state.config.verification_mails_per_hour);
    if !allowed {
        tracing::info!("verification mail cap reached; request answered without a mail");
    }
    Ok(allowed)
}

pub(crate) fn verification_mail(state: &AppState, to: &str, token: &str) -> Mail {
    Mail {
        to: to.to_string(),
        subject: "Verify your e-mail address".into(),
        text: format!(
            "Confirm this address by opening the link below (valid for {VERIFICATION_TTL_HOURS} hours):\n\n{}\n",
            link(state, "verify-email", token)
        ),
    }
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

async fn load_user(state: &AppState, id: Uuid) -> Result<User> {
    users::find_by_id(&state.db.write, id)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("user {id} vanished")))
}

// ---------------------------------------------------------------- handlers

#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "auth",
    summary = "Register an account",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The new user; Location names it", body = crate::domain::UserView),
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response> {
    limit(&state, "register", &client(&meta)).await?;

    let mut errors = Vec::new();
    let username = Username::parse(&body.username)
        .map_err(|m| errors.push(FieldError::new("username", m)))
        .ok();
    let email = Email::parse(&body.email)
        .map_err(|m| errors.push(FieldError::new("email", m)))
        .ok();
    let local_part = email.as_ref().map(Email::local_part).unwrap_or_default();
    let password = Password::parse(&body.password, &[&body.username, local_part, &body.email])
        .map_err(|m| errors.push(FieldError::new("password", m)))
        .ok();
    for (field, value) in [
        ("first_name", &body.first_name),
        ("last_name", &body.last_name),
    ] {
        if let Some(Err(m)) = value.as_deref().map(profile::name) {
            errors.push(FieldError::new(field, m));
        }
    }
    let (Some(username), Some(email), Some(password), true) =
        (username, email, password, errors.is_empty())
    else {
        return Err(Error::Validation(errors));
    };
    limit(&state, "register-email", email.as_str()).await?;

    let password_hash = state.hasher.hash(&password).await?;
    let status = if state.config.require_verified_email {
        UserStatus::PendingVerification
    } else {
        UserStatus::Active
    };
    let token = opaque::generate();
    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    let id = users::insert(
        &mut *tx,
        &users::NewUser {
            username: username.as_str(),
            email: email.as_str(),
            password_hash: &password_hash,
            first_name: body.first_name.as_deref(),
            last_name: body.last_name.as_deref(),
            status,
            gdpr_consent: body.gdpr_consent.unwrap_or(false),
        },
    )
    .await?;
    let mail = verification_allowed(&state, &mut tx, email.as_str()).await?;
    if mail {
        one_time_tokens::create_email_verification(
            &mut *tx,
            id,
            email.as_str(),
            &opaque::hash(&token),
            Utc::now() + Duration::hours(VERIFICATION_TTL_HOURS),
            false,
        )
        .await?;
    }
    tx.commit().await?;

    metrics::count(Event::Registration);
    if mail {
        deliver(&state, verification_mail(&state, email.as_str(), &token)).await;
    }
    let user = load_user(&state, id).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/users/{id}"))],
        ApiJson(UserView::from(&user)),
    )
        .into_response())
}

#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    summary = "Log in with e-mail or username",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Access and refresh tokens", body = TokenPair),
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 423, description = "Account locked; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
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

    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &ctx).await?;
    // Under the row lock a reset, suspension or delete also takes: if one
    // committed while the password was being checked, this login loses.
    let current = users::lock_for_login(&mut *tx, user.id)
        .await?
        .filter(|u| !u.deleted)
        .ok_or(Error::InvalidCredentials)?;
    let mut rehash = rehash;
    if current.password_hash != user.password_hash {
        // Changed meanwhile: by a reset (the old password must fail now) or
        // by a concurrent login's rehash (the same password still passes).
        let again = state
            .hasher
            .verify(&password, Some(&current.password_hash))
            .await?;
        if again == Verified::No {
            tx.commit().await?;
            let reason = "wrong_password";
            let failed =
                lockout::wrong_password(&state, &ctx, Some(user.id), attempt, reason, "info");
            return Err(failed.await?);
        }
        rehash = None;
    }
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
    users::record_successful_login(&mut *tx, user.id, rehash.as_deref()).await?;
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
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
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
    match users::lock_for_refresh(&mut *tx, user.id).await? {
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
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
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

#[utoipa::path(
    post,
    path = "/v1/auth/password/forgot",
    tag = "auth",
    summary = "Request a password-reset mail",
    request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "Accepted, whether or not the account exists"),
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn forgot_password(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<ForgotPasswordRequest>,
) -> Result<StatusCode> {
    limit(&state, "password-forgot", &client(&meta)).await?;
    let email = Email::parse(&body.email).map_err(|m| Error::field("email", m))?;
    limit(&state, "password-forgot-email", email.as_str()).await?;
    let Some((user_id, _status)) = users::id_by_email(&state.db.write, email.as_str()).await?
    else {
        return Ok(StatusCode::ACCEPTED);
    };
    let token = opaque::generate();
    let mut tx = state.db.write.begin().await?;
    one_time_tokens::lock_mail_address(&mut *tx, MailKind::PasswordReset, email.as_str()).await?;
    let recent = one_time_tokens::recent_password_resets(&mut *tx, user_id).await?;
    if recent >= i64::from(state.config.reset_mails_per_hour) {
        tracing::info!("password reset mail cap reached; request answered without a mail");
        return Ok(StatusCode::ACCEPTED);
    }
    one_time_tokens::create_password_reset(
        &mut *tx,
        user_id,
        &opaque::hash(&token),
        Utc::now() + Duration::hours(RESET_TTL_HOURS),
        meta.ip.map(|ip| ip.to_string()),
    )
    .await?;
    audit::record(
        &mut *tx,
        &meta.audit(None),
        &AuditEvent::about_user(AuditAction::PasswordResetRequested, Some(user_id)),
    )
    .await?;
    tx.commit().await?;
    deliver(&state, reset_mail(&state, email.as_str(), &token)).await;
    Ok(StatusCode::ACCEPTED)
}

/// The password-reset mail (also sent by an admin's reset request).
pub fn reset_mail(state: &AppState, to: &str, token: &str) -> Mail {
    Mail {
        to: to.to_string(),
        subject: "Reset your password".into(),
        text: format!(
            "Choose a new password by opening the link below (valid for {RESET_TTL_HOURS} hour; \
             if you did not ask for this, ignore this mail):\n\n{}\n",
            link(state, "reset-password", token)
        ),
    }
}

#[utoipa::path(
    post,
    path = "/v1/auth/password/reset",
    tag = "auth",
    summary = "Set a new password with a reset token",
    request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Password set; every session revoked"),
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<ResetPasswordRequest>,
) -> Result<StatusCode> {
    limit(&state, "password-reset", &client(&meta)).await?;
    let token_hash = opaque::hash(&body.token);
    let user_id = one_time_tokens::find_password_reset(&state.db.write, &token_hash)
        .await?
        .ok_or(Error::InvalidToken)?;
    let user = users::find_by_id(&state.db.write, user_id)
        .await?
        .filter(|u| u.deleted_at.is_none())
        .ok_or(Error::InvalidToken)?;
    let local_part = user.email.split('@').next().unwrap_or_default();
    let password = Password::parse(&body.new_password, &[&user.username, local_part])
        .map_err(|m| Error::field("new_password", m))?;
    let hash = state.hasher.hash(&password).await?;

    let ctx = meta.audit(None);
    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &ctx).await?;
    // The user's row before its tokens, as every transaction takes them.
    users::lock_for_login(&mut *tx, user_id).await?;
    if one_time_tokens::consume_password_reset(&mut *tx, &token_hash)
        .await?
        .is_none()
    {
        return Err(Error::InvalidToken);
    }
    one_time_tokens::invalidate_password_resets(&mut *tx, user_id).await?;
    // A pending e-mail change (perhaps an attacker's) dies with the old password.
    one_time_tokens::invalidate_email_verifications(&mut *tx, user_id).await?;
    users::set_password(&mut *tx, user_id, &hash).await?;
    let revoked = sessions::revoke_user_sessions(&mut tx, user_id, None).await?;
    let mut event = AuditEvent::about_user(AuditAction::PasswordResetCompleted, Some(user_id));
    event.new_values = Some(json!({"sessions_revoked": revoked.len()}));
    audit::record(&mut *tx, &ctx, &event).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/auth/email/verify",
    tag = "auth",
    summary = "Verify an e-mail address",
    request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "The verified user", body = crate::domain::UserView),
        (status = 400, description = "Malformed JSON, or a reset/verification token unknown, used or expired", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 16 KiB", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Validation failed; errors[] names each field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify_email(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<VerifyEmailRequest>,
) -> Result<ApiJson<UserView>> {
    limit(&state, "email-verify", &client(&meta)).await?;
    let token_hash = opaque::hash(&body.token);
    let owner = one_time_tokens::email_verification_user(&state.db.write, &token_hash)
        .await?
        .ok_or(Error::InvalidToken)?;
    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    // The user's row before its tokens, as every transaction takes them.
    users::lock_for_login(&mut *tx, owner).await?;
    let (user_id, email) = one_time_tokens::consume_email_verification(&mut *tx, &token_hash)
        .await?
        .filter(|(user_id, _)| *user_id == owner)
        .ok_or(Error::InvalidToken)?;
    match users::mark_email_verified(&mut *tx, user_id, &email).await? {
        None => return Err(Error::InvalidToken),
        // The address changed: reset links sent to the old one die.
        Some(true) => one_time_tokens::invalidate_password_resets(&mut *tx, user_id).await?,
        Some(false) => {}
    }
    tx.commit().await?;
    let user = load_user(&state, user_id).await?;
    Ok(ApiJson(UserView::from(&user)))
}

#[utoipa::path(
    post,
    path = "/v1/auth/email/resend",
    tag = "auth",
    summary = "Resend the verification mail",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A new verification mail is on its way"),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn resend_verification(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    auth: AuthUser,
) -> Result<StatusCode> {
    limit(&state, "email-resend", &auth.user_id.to_string()).await?;
    let user = load_user(&state, auth.user_id).await?;
    if user.is_email_verified {
        return Ok(StatusCode::ACCEPTED);
    }
    let token = opaque::generate();
    let mut tx = state.db.write.begin().await?;
    if !verification_allowed(&state, &mut tx, &user.email).await? {
        return Ok(StatusCode::ACCEPTED);
    }
    one_time_tokens::create_email_verification(
        &mut *tx,
        user.id,
        &user.email,
        &opaque::hash(&token),
        Utc::now() + Duration::hours(VERIFICATION_TTL_HOURS),
        false,
    )
    .await?;
    audit::record(
        &mut *tx,
        &meta.audit(None),
        &AuditEvent::about_user(AuditAction::EmailVerificationSent, Some(user.id)),
    )
    .await?;
    tx.commit().await?;
    deliver(&state, verification_mail(&state, &user.email, &token)).await;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    summary = "Public signing keys",
    responses(
        (status = 200, description = "JSON Web Key Set", body = Object),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn jwks(State(state): State<AppState>) -> ApiJson<Value> {
    ApiJson(state.keys.jwks().clone())
}

#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "auth",
    summary = "Issuer and JWKS location",
    responses(
        (status = 200, description = "OpenID discovery document", body = Object),
        (status = 500, description = "Internal error", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn openid_configuration(State(state): State<AppState>) -> ApiJson<Value> {
    let issuer = state.keys.issuer().trim_end_matches('/');
    ApiJson(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "subject_types_supported": ["public"],
        "response_types_supported": ["token"],
    }))
}
