//! `POST /v1/auth/mfa/verify`: the second step of a login for an account
//! with a second factor.

use axum::Extension;
use axum::extract::State;
use serde::Deserialize;

use super::client;
use super::session::TokenPair;
use crate::error::Result;
use crate::http::token_transport::TokenTransport;
use crate::http::{ApiJson, RequestMeta};
use crate::mfa::Presented;
use crate::security::rate_limit::{self, Limit};
use crate::session::{self, SecondFactor};
use crate::state::AppState;

/// The `mfa_token` of the login and exactly one of `code` (TOTP),
/// `recovery_code` and `webauthn` (a passkey's assertion to the login's
/// challenge): the field present says the method.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaVerifyRequest {
    #[schema(max_length = 100)]
    pub mfa_token: String,
    #[schema(max_length = 20)]
    pub code: Option<String>,
    #[schema(max_length = 40)]
    pub recovery_code: Option<String>,
    /// The `PublicKeyCredential` `navigator.credentials.get` gave for the
    /// login's `webauthn` options, as JSON (`credential.toJSON()`).
    #[schema(value_type = Option<Object>)]
    pub webauthn: Option<serde_json::Value>,
}

#[utoipa::path(
    post,
    path = "/v1/auth/mfa/verify",
    operation_id = "complete_login",
    tag = "auth",
    summary = "Complete a login with a second factor",
    description = "Wrong, replayed or used codes answer 401 `invalid_credentials` and count toward the same lockout as wrong passwords; only a right second factor clears that count. The `mfa_token` is spent by the success.",
    request_body = MfaVerifyRequest,
    responses(
        (status = 200, description = "Access and refresh tokens; the access token's `amr` says `mfa`", body = TokenPair),
        (status = 401, description = "Wrong code (invalid_credentials), or the mfa_token is unknown, used or expired (mfa_token_invalid)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account may not log in (account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 423, description = "Account locked; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    transport: TokenTransport,
    ApiJson(body): ApiJson<MfaVerifyRequest>,
) -> Result<axum::response::Response> {
    rate_limit::hit(&state, Limit::MfaVerify, &client(&meta)).await?;
    let presented = Presented::from_fields(body.code, body.recovery_code, body.webauthn)?;
    let step = SecondFactor {
        mfa_token: &body.mfa_token,
        presented,
    };
    let (issued, user) = session::complete_login(&state, &meta, &step).await?;
    Ok(TokenPair::answer(&state, issued, &user, transport))
}
