//! `POST /v1/auth/passkey/start` and `/finish`: passwordless login with a
//! passkey (a discoverable credential: no username is typed).

use axum::Extension;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::session::TokenPair;
use super::{bounded, client};
use crate::error::Result;
use crate::http::token_transport::TokenTransport;
use crate::http::{ApiJson, RequestMeta};
use crate::mfa::ceremony::CEREMONY_TTL_SECONDS;
use crate::mfa::passkeys;
use crate::security::rate_limit::{self, Limit};
use crate::session;
use crate::state::AppState;

/// A passwordless challenge.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PasskeyLoginOptions {
    /// Names this challenge at the finish.
    pub ceremony_id: uuid::Uuid,
    /// `{"publicKey": {…}}` for `navigator.credentials.get`, with no
    /// `allowCredentials` (the browser offers the site's passkeys); binary
    /// fields are base64url. Add `mediation: "conditional"` for autofill.
    #[schema(value_type = Object)]
    pub options: Value,
    /// Seconds left to answer.
    pub expires_in: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginRequest {
    pub ceremony_id: uuid::Uuid,
    /// The `PublicKeyCredential` `navigator.credentials.get` gave, as JSON
    /// (`credential.toJSON()`), its `response.userHandle` included.
    #[schema(value_type = Object)]
    pub credential: Value,
    #[schema(schema_with = crate::domain::rules::fingerprint)]
    pub device_fingerprint: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/auth/passkey/start",
    operation_id = "start_passkey_login",
    tag = "auth",
    summary = "Start a passwordless login with a passkey",
    description = "No body. Answers a challenge for `navigator.credentials.get`; answer within 5 minutes with POST /v1/auth/passkey/finish. Rate-limited per client as logins are.",
    responses(
        (status = 200, description = "Challenge", body = PasskeyLoginOptions),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
) -> Result<ApiJson<PasskeyLoginOptions>> {
    rate_limit::hit(&state, Limit::Login, &client(&meta)).await?;
    let (ceremony_id, options) = session::start_passkey_login(&state).await?;
    Ok(ApiJson(PasskeyLoginOptions {
        ceremony_id,
        options,
        expires_in: i64::from(CEREMONY_TTL_SECONDS),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/auth/passkey/finish",
    operation_id = "finish_passkey_login",
    tag = "auth",
    summary = "Log in with a passkey",
    description = "The assertion answers the challenge once, right or wrong. A verified passkey with user verification is two factors: the access token's `amr` is `[\"mfa\", \"swk\"]`. Refusals are audited and do not count toward the password lockout.",
    request_body = PasskeyLoginRequest,
    responses(
        (status = 200, description = "Access and refresh tokens", body = TokenPair),
        (status = 401, description = "Unknown, expired or used challenge, unknown passkey, or an assertion that does not verify (invalid_credentials)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account may not log in (account_disabled)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn finish(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    transport: TokenTransport,
    ApiJson(body): ApiJson<PasskeyLoginRequest>,
) -> Result<axum::response::Response> {
    rate_limit::hit(&state, Limit::Login, &client(&meta)).await?;
    let answer = passkeys::assertion("credential", body.credential)?;
    let fingerprint = bounded(
        "device_fingerprint",
        body.device_fingerprint,
        crate::domain::rules::FINGERPRINT_MAX_CHARS,
    )?;
    let (issued, user) = session::log_in_with_passkey(
        &state,
        &meta,
        body.ceremony_id,
        &answer,
        fingerprint.as_deref(),
    )
    .await?;
    Ok(TokenPair::answer(&state, issued, &user, transport))
}
