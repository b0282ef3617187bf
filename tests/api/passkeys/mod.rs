//! Passkeys end to end through a software authenticator (1Password's
//! passkey-rs, which makes real ES256 keys, attestation objects and
//! signatures): registration, passwordless login, the second step of a
//! password login, step-up, the counter, list / rename / delete.

mod login;
mod manage;

use axum::http::Method;
use passkey::authenticator::{Authenticator, UiHint, UserCheck, UserValidationMethod};
use passkey::client::{Client, DefaultClientData};
use passkey::types::Passkey;
use passkey::types::ctap2::{Aaguid, Ctap2Error};
use passkey::types::webauthn::{CredentialCreationOptions, CredentialRequestOptions};
use serde_json::{Value, json};
use tests::{STRONG_PASSWORD, TestApp, TestUser};
use url::Url;

/// The origin the API trusts by default (`WEBAUTHN_ORIGINS`).
pub(super) const ORIGIN: &str = "http://localhost:3000";

/// A user who is present and verified (PIN or biometric) whenever asked.
struct Verified;

#[async_trait::async_trait]
impl UserValidationMethod for Verified {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck {
            presence,
            verification,
        })
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }
}

/// A browser with an authenticator that keeps one discoverable passkey
/// (which it syncs: backup eligible) and a signature counter, at `origin`.
pub(super) struct Device {
    client: Client<Option<Passkey>, Verified, public_suffix::PublicSuffixList, ()>,
    origin: Url,
}

impl Device {
    pub fn new() -> Self {
        Self::at(ORIGIN)
    }

    pub fn at(origin: &str) -> Self {
        Self::holding(None, origin)
    }

    fn holding(store: Option<Passkey>, origin: &str) -> Self {
        let mut authenticator = Authenticator::new(Aaguid::new_empty(), store, Verified);
        authenticator.set_make_credentials_with_signature_counter(true);
        Self {
            client: Client::new(authenticator).allows_insecure_localhost(true),
            origin: Url::parse(origin).unwrap(),
        }
    }

    /// A second device holding copies of this one's keys, counters
    /// included (a cloned authenticator).
    pub fn clone_keys(&self) -> Self {
        self.clone_keys_at(self.origin.as_str())
    }

    /// The same keys in a browser at another origin.
    pub fn clone_keys_at(&self, origin: &str) -> Self {
        Self::holding(self.client.authenticator().store().clone(), origin)
    }

    /// `navigator.credentials.create(options)`, as the JSON a browser sends.
    pub async fn create(&mut self, options: &Value) -> Value {
        let request: CredentialCreationOptions = serde_json::from_value(options.clone()).unwrap();
        let created = self
            .client
            .register(&self.origin, request, DefaultClientData)
            .await
            .unwrap_or_else(|e| panic!("the authenticator refused to register: {e:?}"));
        serde_json::to_value(created).unwrap()
    }

    /// `navigator.credentials.get(options)`, as the JSON a browser sends.
    pub async fn get(&mut self, options: &Value) -> Value {
        let request: CredentialRequestOptions = serde_json::from_value(options.clone()).unwrap();
        let asserted = self
            .client
            .authenticate(&self.origin, request, DefaultClientData)
            .await
            .unwrap_or_else(|e| panic!("the authenticator refused to sign: {e:?}"));
        serde_json::to_value(asserted).unwrap()
    }
}

/// Registers a passkey on `device` for the holder of `token`: the
/// registration's answer.
pub(super) async fn register_passkey(app: &TestApp, token: &str, device: &mut Device) -> Value {
    let started = app
        .call(
            Method::POST,
            "/v1/users/me/passkeys/register/start",
            None,
            Some(token),
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert_eq!(started.body["expires_in"], 300);
    let credential = device.create(&started.body["options"]).await;
    let finished = app
        .call(
            Method::POST,
            "/v1/users/me/passkeys/register/finish",
            Some(json!({"credential": credential, "current_password": STRONG_PASSWORD})),
            Some(token),
        )
        .await;
    assert_eq!(finished.status, 201, "{}", finished.body);
    finished.body
}

/// A signed-in user with one passkey on the returned device, and the
/// access token the registration answered (its `amr` says `mfa`).
pub(super) async fn with_passkey(app: &TestApp, name: &str) -> (TestUser, Device, String) {
    let (user, pair) = app.signed_in(name).await;
    let mut device = Device::new();
    let registered =
        register_passkey(app, pair["access_token"].as_str().unwrap(), &mut device).await;
    let token = registered["access_token"].as_str().unwrap().to_string();
    (user, device, token)
}

/// A passwordless login on `device`: the finish's answer.
pub(super) async fn passwordless(app: &TestApp, device: &mut Device) -> tests::TestResponse {
    let started = app
        .call(Method::POST, "/v1/auth/passkey/start", None, None)
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    let credential = device.get(&started.body["options"]).await;
    app.post(
        "/v1/auth/passkey/finish",
        json!({"ceremony_id": started.body["ceremony_id"], "credential": credential}),
    )
    .await
}
