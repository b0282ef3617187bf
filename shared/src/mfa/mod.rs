//! Second factors: TOTP (RFC 6238) with secrets encrypted at rest, single-use
//! recovery codes, passkeys (WebAuthn), and the RFC 8176 `amr` vocabulary
//! sessions and access tokens carry. The flows that use them (two-step login, step-up,
//! enrolment) are in `session` and `api::users::mfa`; the rules are in
//! docs/security.md.

pub mod ceremony;
pub mod config;
pub mod passkeys;
pub mod recovery;
pub mod secret_box;
pub mod totp;

use uuid::Uuid;
use webauthn_rs::prelude::{PasskeyAuthentication, PublicKeyCredential, Webauthn};

use crate::db::{mfa as store, passkeys as passkey_store};
use crate::error::{Error, Result};
use secret_box::{Sealed, SecretBox};

/// `amr` of a password alone.
pub const AMR_PASSWORD: &[&str] = &["pwd"];
/// What a verified second factor (a TOTP or a recovery code) adds.
pub const AMR_SECOND_FACTOR: &[&str] = &["mfa", "otp"];

/// `amr` as stored and signed: a sorted set.
pub fn amr(parts: &[&[&str]]) -> Vec<String> {
    let mut amr: Vec<String> = parts
        .iter()
        .flat_map(|p| p.iter())
        .map(|m| m.to_string())
        .collect();
    amr.sort();
    amr.dedup();
    amr
}

/// Was a session with this `amr` authenticated with a second factor?
pub fn has_second_factor(amr: &[String]) -> bool {
    amr.iter().any(|m| m == "mfa")
}

/// The encryption keys, the issuer name shown in authenticator apps and
/// the WebAuthn relying party; built once per container.
#[derive(Debug)]
pub struct Mfa {
    pub vault: SecretBox,
    pub issuer: String,
    pub webauthn: Webauthn,
}

/// A second factor as presented: the field present says the method.
#[derive(Debug, Clone)]
pub enum Presented {
    Totp(String),
    RecoveryCode(String),
    /// A passkey's assertion (`navigator.credentials.get`'s answer).
    Passkey(Box<PublicKeyCredential>),
}

impl Presented {
    /// The method's name in audit rows.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Totp(_) => "totp",
            Self::RecoveryCode(_) => "recovery_code",
            Self::Passkey(_) => "webauthn",
        }
    }

    /// From the `code` / `recovery_code` / `webauthn` fields of a request
    /// body: exactly one of them (else 422 naming each).
    pub fn from_fields(
        code: Option<String>,
        recovery_code: Option<String>,
        webauthn: Option<serde_json::Value>,
    ) -> Result<Self> {
        match (code, recovery_code, webauthn) {
            (Some(code), None, None) => Ok(Self::Totp(code)),
            (None, Some(code), None) => Ok(Self::RecoveryCode(code)),
            (None, None, Some(raw)) => Ok(Self::Passkey(Box::new(passkeys::assertion(
                "webauthn", raw,
            )?))),
            _ => {
                let why = "give exactly one of code, recovery_code and webauthn";
                Err(Error::Validation(
                    ["code", "recovery_code", "webauthn"]
                        .into_iter()
                        .map(|field| crate::error::FieldError::new(field, why))
                        .collect(),
                ))
            }
        }
    }
}

impl Mfa {
    /// Checks `presented` against the user's confirmed factors in `tx` and
    /// spends it: a TOTP step is never accepted twice (the factor row is
    /// locked, so concurrent uses of one code cannot both pass), a
    /// recovery code only once, a passkey's assertion only against
    /// `challenge` (the ceremony state its start kept, taken by the caller)
    /// and with a counter that moved forward. The `amr` the factor adds,
    /// or `None` for a wrong, replayed or used one, or a method the user
    /// has not enrolled.
    pub async fn check(
        &self,
        tx: &mut sqlx::PgConnection,
        user_id: Uuid,
        presented: &Presented,
        challenge: Option<&PasskeyAuthentication>,
    ) -> Result<Option<&'static [&'static str]>> {
        let accepted = match presented {
            Presented::Totp(code) => {
                let Some(factor) = store::totp_for_update(&mut *tx, user_id).await? else {
                    return Ok(None);
                };
                factor.confirmed && self.accept_totp(&mut *tx, user_id, &factor, code).await?
            }
            Presented::RecoveryCode(code) => match recovery::hash(code) {
                Some(hash) => store::use_recovery_code(&mut *tx, user_id, &hash).await?,
                None => false,
            },
            Presented::Passkey(answer) => {
                let Some(challenge) = challenge else {
                    return Ok(None);
                };
                return self
                    .accept_passkey(tx, Some(user_id), answer, challenge)
                    .await;
            }
        };
        Ok(accepted.then_some(AMR_SECOND_FACTOR))
    }

    /// Verifies a passkey assertion against `challenge`, then, under the
    /// credential's row lock, that the credential is `user_id`'s (when
    /// given) and that its counter moved forward; records the use. The
    /// `amr` it adds, or `None`.
    async fn accept_passkey(
        &self,
        tx: &mut sqlx::PgConnection,
        user_id: Option<Uuid>,
        answer: &PublicKeyCredential,
        challenge: &PasskeyAuthentication,
    ) -> Result<Option<&'static [&'static str]>> {
        let Ok(result) = self
            .webauthn
            .finish_passkey_authentication(answer, challenge)
        else {
            return Ok(None);
        };
        self.record_assertion(tx, user_id, &result).await
    }

    /// The stored side of a verified assertion (both ceremonies): the
    /// credential under its row lock, its owner, the counter; the use
    /// recorded. The `amr` it adds, or `None`.
    pub async fn record_assertion(
        &self,
        tx: &mut sqlx::PgConnection,
        user_id: Option<Uuid>,
        result: &webauthn_rs::prelude::AuthenticationResult,
    ) -> Result<Option<&'static [&'static str]>> {
        let found =
            passkey_store::by_credential_id_for_update(&mut *tx, result.cred_id().as_ref()).await?;
        let Some(credential) = found.filter(|c| user_id.is_none_or(|u| u == c.user_id)) else {
            return Ok(None);
        };
        let Some(moved) =
            passkeys::after_assertion(&credential.credential, credential.sign_count, result)?
        else {
            return Ok(None);
        };
        passkey_store::record_use(&mut *tx, credential.id, &moved).await?;
        Ok(Some(passkeys::AMR_PASSKEY))
    }

    /// Accepts `code` for `factor` (confirmed or pending) if it matches a
    /// step within the window that is later than any accepted before.
    pub async fn accept_totp(
        &self,
        tx: &mut sqlx::PgConnection,
        user_id: Uuid,
        factor: &store::TotpFactor,
        code: &str,
    ) -> Result<bool> {
        let sealed = Sealed {
            key_id: factor.secret_key_id.clone(),
            bytes: factor.secret_ciphertext.clone(),
        };
        let secret = self.vault.open(user_id, &sealed).map_err(Error::Internal)?;
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
        let Some(step) = totp::matching_step(&secret, code, now).map_err(Error::Internal)? else {
            return Ok(false);
        };
        let step = i64::try_from(step).map_err(Error::internal)?;
        if factor.last_used_step.is_some_and(|last| last >= step) {
            return Ok(false);
        }
        Ok(store::accept_step(&mut *tx, factor.id, step).await?)
    }
}
