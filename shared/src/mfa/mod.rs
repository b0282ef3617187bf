//! Second factors: TOTP (RFC 6238) with secrets encrypted at rest, single-use
//! recovery codes, and the RFC 8176 `amr` vocabulary sessions and access
//! tokens carry. The flows that use them (two-step login, step-up,
//! enrolment) are in `session` and `api::users::mfa`; the rules are in
//! docs/security.md.

pub mod config;
pub mod recovery;
pub mod secret_box;
pub mod totp;

use uuid::Uuid;

use crate::db::mfa as store;
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

/// The encryption keys and the issuer name shown in authenticator apps;
/// built once per container.
#[derive(Debug)]
pub struct Mfa {
    pub vault: SecretBox,
    pub issuer: String,
}

/// A second factor as presented: the field present says the method.
#[derive(Debug, Clone)]
pub enum Presented {
    Totp(String),
    RecoveryCode(String),
}

impl Presented {
    /// The method's name in audit rows.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Totp(_) => "totp",
            Self::RecoveryCode(_) => "recovery_code",
        }
    }

    /// From the `code` / `recovery_code` fields of a request body: exactly
    /// one of them (else 422 naming both).
    pub fn from_fields(code: Option<String>, recovery_code: Option<String>) -> Result<Self> {
        match (code, recovery_code) {
            (Some(code), None) => Ok(Self::Totp(code)),
            (None, Some(code)) => Ok(Self::RecoveryCode(code)),
            _ => Err(Error::Validation(vec![
                crate::error::FieldError::new("code", "give exactly one of code and recovery_code"),
                crate::error::FieldError::new(
                    "recovery_code",
                    "give exactly one of code and recovery_code",
                ),
            ])),
        }
    }
}

impl Mfa {
    /// Checks `presented` against the user's confirmed factors in `tx` and
    /// spends it: a TOTP step is never accepted twice (the factor row is
    /// locked, so concurrent uses of one code cannot both pass), a
    /// recovery code only once. `false` for a wrong, replayed or used one,
    /// or a method the user has not enrolled.
    pub async fn check(
        &self,
        tx: &mut sqlx::PgConnection,
        user_id: Uuid,
        presented: &Presented,
    ) -> Result<bool> {
        match presented {
            Presented::Totp(code) => {
                let Some(factor) = store::totp_for_update(&mut *tx, user_id).await? else {
                    return Ok(false);
                };
                if !factor.confirmed {
                    return Ok(false);
                }
                self.accept_totp(&mut *tx, user_id, &factor, code).await
            }
            Presented::RecoveryCode(code) => match recovery::hash(code) {
                Some(hash) => Ok(store::use_recovery_code(&mut *tx, user_id, &hash).await?),
                None => Ok(false),
            },
        }
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
