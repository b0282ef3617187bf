//! Second factors end to end, with real computations: TOTP codes made from
//! the enrolled secret, recovery codes, the two-step login, lockout,
//! step-up, `amr` in the tokens, the permission policy and the admin reset.

mod login;
mod manage;

use axum::http::Method;
use base64::Engine;
use serde_json::{Value, json};
use shared::mfa::totp;
use tests::{STRONG_PASSWORD, TestApp, TestUser};

/// A user with TOTP enabled: their secret, recovery codes and an access
/// token of the session that enrolled (its `amr` says `mfa`).
pub(super) struct Enrolled {
    pub user: TestUser,
    pub secret: Vec<u8>,
    pub recovery_codes: Vec<String>,
    pub token: String,
}

pub(super) fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap()
}

/// The code of the step `offset` steps from now.
pub(super) fn code(secret: &[u8], offset: i64) -> String {
    let at = now() as i64 + offset * totp::STEP_SECONDS as i64;
    totp::code_at(secret, at as u64).unwrap()
}

pub(super) fn access_token(body: &Value) -> String {
    body["access_token"].as_str().unwrap().to_string()
}

/// The claims of an access token (its payload, decoded; the API verified it).
pub(super) fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub(super) fn amr(token: &str) -> Vec<String> {
    serde_json::from_value(claims(token)["amr"].clone()).unwrap_or_default()
}

/// Registers `name`, signs in, enrols and confirms TOTP.
pub(super) async fn enrolled(app: &TestApp, name: &str) -> Enrolled {
    let (user, pair) = app.signed_in(name).await;
    let token = access_token(&pair);
    let started = app
        .call(Method::POST, "/v1/users/me/mfa/totp", None, Some(&token))
        .await;
    assert_eq!(started.status, 201, "{}", started.body);
    let secret = totp::secret_from_base32(started.body["secret"].as_str().unwrap()).unwrap();
    let confirmed = app
        .call(
            Method::POST,
            "/v1/users/me/mfa/totp/confirm",
            Some(json!({"code": code(&secret, 0), "current_password": STRONG_PASSWORD})),
            Some(&token),
        )
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let recovery_codes = serde_json::from_value(confirmed.body["recovery_codes"].clone()).unwrap();
    Enrolled {
        user,
        secret,
        recovery_codes,
        token: access_token(&confirmed.body),
    }
}

/// A right password of an enrolled user: the `mfa_token` of the second step.
pub(super) async fn mfa_token(app: &TestApp, user: &TestUser) -> String {
    let response = app.login_as(user).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["mfa_required"], true, "{}", response.body);
    assert!(response.body.get("access_token").is_none());
    response.body["mfa_token"].as_str().unwrap().to_string()
}

/// A code the factor has not accepted yet and the server accepts now: the
/// next step (within the window of one step) after the enrolment's.
pub(super) fn fresh_code(secret: &[u8]) -> String {
    code(secret, 1)
}
