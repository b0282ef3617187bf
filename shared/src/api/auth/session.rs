//! `POST /v1/auth/login`, `/refresh`, `/logout`: the token pair of a
//! session; the session's life itself is in `crate::session`.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{bounded, client};
use crate::domain::rules;
use crate::domain::user::User;
use crate::domain::{Password, UserView};
use crate::error::{Error, Result};
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
    pub refresh_token: String,
    #[schema(schema_with = crate::domain::rules::fingerprint)]
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
    pub(crate) fn new(state: &AppState, issued: Issued, user: &User) -> ApiJson<Self> {
        ApiJson(TokenPair {
            access_token: issued.access_token,
            token_type: "Bearer".into(),
            expires_in: state.keys.ttl().as_secs(),
            refresh_token: issued.refresh_token,
            refresh_expires_in: issued.refresh_expires_in,
            user: UserView::from(user),
        })
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
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<ApiJson<LoginAnswer>> {
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
    let answer =
        match session::log_in(&state, &meta, login, &password, fingerprint.as_deref()).await? {
            LoggedIn::Session(issued, user) => {
                LoginAnswer::Tokens(Box::new(TokenPair::new(&state, issued, &user).0))
            }
            LoggedIn::SecondFactor {
                mfa_token,
                methods,
                webauthn,
            } => LoginAnswer::SecondFactor(MfaChallenge {
                mfa_required: true,
                mfa_token,
                methods: methods.into_iter().map(String::from).collect(),
                expires_in: i64::from(session::MFA_TOKEN_TTL_SECONDS),
                webauthn,
            }),
        };
    Ok(ApiJson(answer))
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
) -> Result<ApiJson<TokenPair>> {
    rate_limit::hit(&state, Limit::Refresh, &client(&meta)).await?;
    let fingerprint = bounded(
        "device_fingerprint",
        body.device_fingerprint,
        rules::FINGERPRINT_MAX_CHARS,
    )?;
    let (issued, user) =
        session::rotate(&state, &meta, &body.refresh_token, fingerprint.as_deref()).await?;
    Ok(TokenPair::new(&state, issued, &user))
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
    rate_limit::hit(&state, Limit::Logout, &client(&meta)).await?;
    session::end(&state, &meta, &body.refresh_token, body.all_sessions).await?;
    Ok(StatusCode::NO_CONTENT)
}
