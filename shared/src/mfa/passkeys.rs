//! Passkeys (WebAuthn Level 3) through webauthn-rs: the relying party
//! built once per container from `WEBAUTHN_RP_ID` / `WEBAUTHN_ORIGINS`,
//! the ceremonies' options as the JSON a browser's
//! `navigator.credentials.create/get` takes, and what a verified assertion
//! changes on the stored credential (counter, backup state).
//!
//! User verification is required in every ceremony, so a passkey is two
//! factors in one (something held, and a PIN or biometric): it serves as
//! the second factor of a password login and as a passwordless login.

use serde_json::Value;
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, Credential, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Webauthn,
    WebauthnBuilder,
};

use super::config::MfaConfig;
use crate::error::{Error, FieldError, Result};

/// How many passkeys one account may hold.
pub const MAX_PASSKEYS: i64 = 20;

/// The RFC 8176 methods a verified passkey adds: proof of possession of a
/// key, and (user verification being required) more than one factor.
/// Always `swk`, never `hwk`: without attestation (none is asked for) a
/// key's hardware binding is only the authenticator's own claim, and a
/// relying party must not be told more than the server knows.
pub const AMR_PASSKEY: &[&str] = &["mfa", "swk"];

/// The relying party: `WEBAUTHN_RP_ID`, every origin of
/// `WEBAUTHN_ORIGINS`, and `MFA_ISSUER` as the name authenticators show.
pub fn relying_party(config: &MfaConfig) -> anyhow::Result<Webauthn> {
    let origins = config
        .webauthn_origins
        .iter()
        .map(|o| {
            Url::parse(o)
                .ok()
                .filter(|u| match (u.scheme(), u.host_str()) {
                    ("https", Some(_)) => true,
                    // Plain http only on the developer's own machine.
                    ("http", Some(host)) => matches!(host, "localhost" | "127.0.0.1" | "[::1]"),
                    _ => false,
                })
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "WEBAUTHN_ORIGINS: `{o}` is not an https origin (http only for localhost)"
                    )
                })
        })
        .collect::<anyhow::Result<Vec<Url>>>()?;
    let rp = config.webauthn_rp_id.as_str();
    for origin in &origins {
        let host = origin.host_str().unwrap_or_default();
        if host != rp && !host.ends_with(&format!(".{rp}")) {
            anyhow::bail!(
                "WEBAUTHN_ORIGINS: `{origin}` is not WEBAUTHN_RP_ID `{rp}` or a host under it"
            );
        }
    }
    let Some((first, rest)) = origins.split_first() else {
        anyhow::bail!("WEBAUTHN_ORIGINS: at least one origin is needed");
    };
    let mut builder = WebauthnBuilder::new(rp, first)
        .map_err(|e| anyhow::anyhow!("WEBAUTHN_RP_ID `{rp}` does not fit `{first}`: {e}"))?;
    for origin in rest {
        builder = builder.append_allowed_origin(origin);
    }
    builder
        .rp_name(&config.issuer)
        .build()
        .map_err(|e| anyhow::anyhow!("WEBAUTHN_RP_ID / WEBAUTHN_ORIGINS: {e}"))
}

/// A registration started: the options for `navigator.credentials.create`
/// and the state its finish needs.
pub fn start_registration(
    rp: &Webauthn,
    user_id: Uuid,
    user_name: &str,
    display_name: &str,
    existing: &[Passkey],
) -> Result<(Value, PasskeyRegistration)> {
    let exclude = existing.iter().map(|p| p.cred_id().clone()).collect();
    let (options, state) = rp
        .start_passkey_registration(user_id, user_name, display_name, Some(exclude))
        .map_err(|e| Error::Internal(anyhow::anyhow!("passkey registration start: {e}")))?;
    let mut options = serde_json::to_value(options).map_err(Error::internal)?;
    // A passkey should be discoverable (usable without a username) where
    // the authenticator can keep one; webauthn-rs asks for none.
    if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection") {
        selection["residentKey"] = "preferred".into();
        selection["requireResidentKey"] = false.into();
    }
    Ok((options, state))
}

/// A passkey-as-second-factor challenge over the user's passkeys.
pub fn start_authentication(
    rp: &Webauthn,
    passkeys: &[Passkey],
) -> Result<(Value, PasskeyAuthentication)> {
    let (options, state) = rp
        .start_passkey_authentication(passkeys)
        .map_err(|e| Error::Internal(anyhow::anyhow!("passkey authentication start: {e}")))?;
    Ok((
        serde_json::to_value(options).map_err(Error::internal)?,
        state,
    ))
}

/// A passwordless challenge: any discoverable passkey of this site.
pub fn start_passwordless(rp: &Webauthn) -> Result<(Value, DiscoverableAuthentication)> {
    let (mut options, state) = rp
        .start_discoverable_authentication()
        .map_err(|e| Error::Internal(anyhow::anyhow!("passkey login start: {e}")))?;
    // A sign-in button, not only autofill: the client may still ask for
    // `mediation: "conditional"` itself.
    options.mediation = None;
    Ok((
        serde_json::to_value(options).map_err(Error::internal)?,
        state,
    ))
}

/// A browser's registration answer, parsed (422 naming `field` if it is
/// not one).
pub fn registration_answer(field: &str, raw: Value) -> Result<RegisterPublicKeyCredential> {
    serde_json::from_value(raw).map_err(|_| {
        Error::Validation(vec![FieldError::new(
            field,
            "must be the PublicKeyCredential of navigator.credentials.create, as JSON (base64url fields)",
        )])
    })
}

/// A browser's assertion, parsed (422 naming `field` if it is not one).
pub fn assertion(field: &str, raw: Value) -> Result<PublicKeyCredential> {
    serde_json::from_value(raw).map_err(|_| {
        Error::Validation(vec![FieldError::new(
            field,
            "must be the PublicKeyCredential of navigator.credentials.get, as JSON (base64url fields)",
        )])
    })
}

/// A credential as stored: the `Passkey` JSON and the columns kept beside
/// it for listing and checks.
#[derive(Debug, Clone)]
pub struct Stored {
    pub credential_id: Vec<u8>,
    pub credential: Value,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

impl Stored {
    pub fn of(passkey: &Passkey) -> Result<Self> {
        let cred = Credential::from(passkey.clone());
        Ok(Self {
            credential_id: passkey.cred_id().to_vec(),
            credential: serde_json::to_value(passkey).map_err(Error::internal)?,
            sign_count: i64::from(cred.counter),
            backup_eligible: cred.backup_eligible,
            backup_state: cred.backup_state,
        })
    }
}

/// The stored `Passkey` JSON, read back.
pub fn passkey_of(credential: &Value) -> Result<Passkey> {
    serde_json::from_value(credential.clone()).map_err(Error::internal)
}

/// What a verified assertion changes on the stored credential: `None` when
/// the authenticator's counter did not move forward although it keeps
/// one (a cloned authenticator, or an assertion older than the last one
/// accepted), which refuses the assertion.
pub fn after_assertion(
    stored: &Value,
    stored_count: i64,
    result: &AuthenticationResult,
) -> Result<Option<Stored>> {
    let counter = i64::from(result.counter());
    if (counter != 0 || stored_count != 0) && counter <= stored_count {
        tracing::warn!("passkey assertion with a counter that did not increase: refused");
        return Ok(None);
    }
    let mut passkey = passkey_of(stored)?;
    passkey.update_credential(result);
    Stored::of(&passkey).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rp_id: &str, origins: &[&str]) -> MfaConfig {
        let vars = [
            ("WEBAUTHN_RP_ID".to_string(), rp_id.to_string()),
            ("WEBAUTHN_ORIGINS".to_string(), origins.join(",")),
        ];
        let get = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        match MfaConfig::from_lookup(&get) {
            Ok(config) => config,
            Err(err) => panic!("{err}"),
        }
    }

    fn refusal(rp_id: &str, origins: &[&str]) -> String {
        relying_party(&config(rp_id, origins))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn the_defaults_and_origins_under_the_rp_id_build() {
        let defaults = MfaConfig::from_lookup(&|_: &str| None);
        assert!(defaults.is_ok_and(|c| relying_party(&c).is_ok()));
        let site = config(
            "example.com",
            &["https://example.com", "https://app.example.com"],
        );
        assert!(relying_party(&site).is_ok());
    }

    #[test]
    fn origins_outside_the_rp_id_or_not_http_are_init_errors_naming_the_variable() {
        let err = refusal("example.com", &["https://example.com", "https://evil.test"]);
        assert!(
            err.contains("WEBAUTHN_ORIGINS") && err.contains("evil.test"),
            "{err}"
        );
        let err = refusal("example.com", &["https://notexample.com"]);
        assert!(
            err.contains("WEBAUTHN_RP_ID") && err.contains("notexample"),
            "{err}"
        );
        let err = refusal("example.com", &["ftp://example.com"]);
        assert!(err.contains("WEBAUTHN_ORIGINS"), "{err}");
        let err = refusal("example.com", &["http://example.com"]);
        assert!(err.contains("https"), "{err}");
        let err = refusal("example.com", &[]);
        assert!(err.contains("WEBAUTHN_ORIGINS"), "{err}");
    }
}
