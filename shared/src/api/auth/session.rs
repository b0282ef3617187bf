//! `POST /v1/auth/login`, `/refresh`, `/logout`: the token pair of a
//! session; the session's life itself is in `crate::session`.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{bounded, client};
use crate::domain::rules;
use crate::domain::user::User;
use crate::domain::{Password, UserView};
use crate::error::{Error, Result};
use crate::http::token_transport::TokenTransport;
use crate::http::{ApiJson, RequestMeta};
use crate::security::rate_limit::{self, Limit};
use crate::session::{self, Issued, LoggedIn};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(schema_with = crate::domain::rules::login)]
    pub login: String,
    #[schema(schema_with = crate::domain::rules::password)]
    pub password: String,
    #[schema(schema_with = crate::domain::rules::fingerprint)]
    pub device_fingerprint: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token. Absent, with `X-Token-Transport: cookie` the
    /// refresh cookie is the token; without it, nothing is presented (a
    /// refresh answers 401, a logout ends nothing).
    pub refresh_token: Option<String>,
    #[schema(schema_with = crate::domain::rules::fingerprint)]
    pub device_fingerprint: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// The refresh token. Absent, with `X-Token-Transport: cookie` the
    /// refresh cookie is the token; without it, nothing is presented (a
    /// refresh answers 401, a logout ends nothing).
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub all_sessions: bool,
}

/// The answer of login and refresh.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    /// Absent in cookie mode (`X-Token-Transport: cookie`): the token is
    /// then in the `__Host-refresh` cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub refresh_expires_in: i64,
    pub user: UserView,
}

/// The answer of a right password when the account has a second factor.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MfaChallenge {
    /// Always `true`.
    pub mfa_required: bool,
    /// Opaque, single use, 5 minutes: present it to POST /v1/auth/mfa/verify.
    pub mfa_token: String,
    /// What the user can answer with, of `totp`, `webauthn`, `recovery_code`.
    pub methods: Vec<String>,
    pub expires_in: i64,
    /// With `webauthn` among the methods: `{"publicKey": {…}}` for
    /// `navigator.credentials.get` over the user's passkeys (binary fields
    /// base64url); its answer goes to POST /v1/auth/mfa/verify as
    /// `webauthn`, once (a refused answer needs a new login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub webauthn: Option<serde_json::Value>,
}

/// Login's answer: the token pair, or the second step.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    Tokens(Box<TokenPair>),
    SecondFactor(MfaChallenge),
}

impl TokenPair {
    /// The answer carrying a new session's or a rotation's tokens: both in
    /// the body, or in cookie mode the refresh token in its cookie.
    pub(crate) fn answer(
        state: &AppState,
        issued: Issued,
        user: &User,
        transport: TokenTransport,
    ) -> Response {
        let (refresh_token, cookie) = match transport {
            TokenTransport::Body => (Some(issued.refresh_token), None),
            TokenTransport::Cookie => (
                None,
                Some(
                    state
                        .config
                        .refresh_cookie
                        .set(issued.refresh_token, issued.refresh_expires_in),
                ),
            ),
        };
        let mut response = ApiJson(TokenPair {
            access_token: issued.access_token,
            token_type: "Bearer".into(),
            expires_in: state.keys.ttl().as_secs(),
            refresh_token,
            refresh_expires_in: issued.refresh_expires_in,
            user: UserView::from(user),
        })
        .into_response();
        if let Some(cookie) = cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }
}

#[utoipa::path(
    post,
    path = "/v1/auth/login",
    tag = "auth",
    summary = "Log in with e-mail or username",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Access and refresh tokens; or, for an account with a second factor, `{mfa_required: true, mfa_token, methods}` to complete with POST /v1/auth/mfa/verify", body = LoginAnswer),
        (status = 401, description = "Missing or invalid credentials or token", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Authenticated but not allowed (forbidden / account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 423, description = "Account locked; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    transport: TokenTransport,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response> {
    rate_limit::hit(&state, Limit::Login, &client(&meta)).await?;
    let login = body.login.trim();
    if login.is_empty() || login.chars().count() > rules::LOGIN_MAX_CHARS {
        return Err(Error::field("login", "must be 1 to 255 characters"));
    }
    let password = Password::candidate(&body.password).map_err(|m| Error::field("password", m))?;
    let fingerprint = bounded(
        "device_fingerprint",
        body.device_fingerprint,
        rules::FINGERPRINT_MAX_CHARS,
    )?;
    match session::log_in(&state, &meta, login, &password, fingerprint.as_deref()).await? {
        LoggedIn::Session(issued, user) => Ok(TokenPair::answer(&state, issued, &user, transport)),
        // The second step says X-Token-Transport again for its tokens.
        LoggedIn::SecondFactor {
            mfa_token,
            methods,
            webauthn,
        } => Ok(ApiJson(LoginAnswer::SecondFactor(MfaChallenge {
            mfa_required: true,
            mfa_token,
            methods: methods.into_iter().map(String::from).collect(),
            expires_in: i64::from(session::MFA_TOKEN_TTL_SECONDS),
            webauthn,
        }))
        .into_response()),
    }
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
    transport: TokenTransport,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Response> {
    rate_limit::hit(&state, Limit::Refresh, &client(&meta)).await?;
    let cookie = state.config.refresh_cookie;
    let presented = cookie.presented(transport, body.refresh_token, &headers);
    let fingerprint = bounded(
        "device_fingerprint",
        body.device_fingerprint,
        rules::FINGERPRINT_MAX_CHARS,
    )?;
    let rotated = match presented {
        Some(token) => session::rotate(&state, &meta, &token, fingerprint.as_deref()).await,
        None => Err(Error::RefreshTokenInvalid),
    };
    match rotated {
        Ok((issued, user)) => Ok(TokenPair::answer(&state, issued, &user, transport)),
        // Reuse killed the session: its cookie goes with it. Not for
        // refresh_token_invalid: a refresh that lost a race answers that
        // too, possibly after the winner's new cookie arrived, and
        // deleting then would sign the user out.
        Err(Error::RefreshTokenReused) => {
            Ok(cookie.cleared_in(transport, Error::RefreshTokenReused))
        }
        Err(other) => Err(other),
    }
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
    transport: TokenTransport,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LogoutRequest>,
) -> Result<Response> {
    rate_limit::hit(&state, Limit::Logout, &client(&meta)).await?;
    let cookie = state.config.refresh_cookie;
    // Without a token there is nothing to end: 204, as for an unknown one.
    if let Some(token) = cookie.presented(transport, body.refresh_token, &headers) {
        session::end(&state, &meta, &token, body.all_sessions).await?;
    }
    Ok(cookie.cleared_in(transport, StatusCode::NO_CONTENT))
}
