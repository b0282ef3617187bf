//! The second-factor settings: the key that encrypts TOTP secrets, the
//! step-up window, the permissions whose holders need a second factor, and
//! the WebAuthn relying party (passkeys).

use std::time::Duration;

use secrecy::SecretString;

use crate::config::ConfigError;

/// `MFA_*`, `STEP_UP_MAX_AGE_SECONDS` and `WEBAUTHN_*`.
#[derive(Debug, Clone)]
pub struct MfaConfig {
    /// `MFA_ENCRYPTION_KEY`: one or more keys, comma-separated, each
    /// `[<key id>:]<secret of at least 32 characters>`; the last encrypts,
    /// every one decrypts (rotation). Filled from `MFA_SECRET_ARN` in AWS.
    pub encryption_keys: Vec<SecretString>,
    /// `MFA_SECRET_ARN`: a Secrets Manager secret holding the same.
    pub secret_arn: Option<String>,
    /// `STEP_UP_MAX_AGE_SECONDS`: how recent a second factor must be for a
    /// sensitive change (default 300).
    pub step_up_max_age: Duration,
    /// `MFA_REQUIRED_FOR_PERMISSIONS`: holders of any of these use the
    /// routes that need a permission only from a session with a second factor.
    pub required_for_permissions: Vec<String>,
    /// `MFA_ISSUER`: the issuer authenticator apps show (default
    /// `User Management`).
    pub issuer: String,
    /// `WEBAUTHN_RP_ID`: the relying party id passkeys are bound to, the
    /// site's registrable domain or a host under it (default `localhost`).
    pub webauthn_rp_id: String,
    /// `WEBAUTHN_ORIGINS`: the web origins allowed to run the ceremonies,
    /// comma-separated (default `http://localhost:3000`); each must be the
    /// relying party id or a host under it.
    pub webauthn_origins: Vec<String>,
}

/// The shortest secret accepted as an encryption key (a random string of
/// this length from Secrets Manager's generator carries ≥ 190 bits).
pub const MIN_KEY_CHARS: usize = 32;

impl MfaConfig {
    pub(crate) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let encryption_keys = match get("MFA_ENCRYPTION_KEY") {
            None => Vec::new(),
            Some(raw) => parse_keys(&raw).map_err(|why| ConfigError::Invalid {
                name: "MFA_ENCRYPTION_KEY",
                why,
            })?,
        };
        let step_up: u64 = crate::config::parse(get, "STEP_UP_MAX_AGE_SECONDS", 300)?;
        let list = |raw: Option<String>| -> Vec<String> {
            raw.unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        let required_for_permissions = list(get("MFA_REQUIRED_FOR_PERMISSIONS"));
        if let Some(unknown) = required_for_permissions
            .iter()
            .find(|p| !crate::security::perm::ALL.contains(&p.as_str()))
        {
            return Err(ConfigError::Invalid {
                name: "MFA_REQUIRED_FOR_PERMISSIONS",
                why: format!("unknown permission `{unknown}`"),
            });
        }
        Ok(Self {
            encryption_keys,
            secret_arn: get("MFA_SECRET_ARN"),
            step_up_max_age: Duration::from_secs(step_up),
            required_for_permissions,
            issuer: get("MFA_ISSUER").unwrap_or_else(|| "User Management".into()),
            webauthn_rp_id: get("WEBAUTHN_RP_ID").unwrap_or_else(|| "localhost".into()),
            webauthn_origins: match get("WEBAUTHN_ORIGINS") {
                Some(raw) => list(Some(raw)),
                None => vec!["http://localhost:3000".into()],
            },
        })
    }
}

/// Splits `MFA_ENCRYPTION_KEY` (or the secret behind `MFA_SECRET_ARN`) into
/// its keys, each checked for length. The message never quotes a key.
pub fn parse_keys(raw: &str) -> Result<Vec<SecretString>, String> {
    let mut keys = Vec::new();
    for (i, entry) in raw.split(',').map(str::trim).enumerate() {
        let secret = entry.split_once(':').map_or(entry, |(_, secret)| secret);
        if secret.chars().count() < MIN_KEY_CHARS {
            return Err(format!(
                "key {} is shorter than {MIN_KEY_CHARS} characters",
                i + 1
            ));
        }
        keys.push(SecretString::from(entry.to_string()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<MfaConfig, ConfigError> {
        let get = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        MfaConfig::from_lookup(&get)
    }

    #[test]
    fn defaults_need_no_setup() -> Result<(), ConfigError> {
        let c = config(&[])?;
        assert!(c.encryption_keys.is_empty());
        assert_eq!(c.step_up_max_age, Duration::from_secs(300));
        assert!(c.required_for_permissions.is_empty());
        Ok(())
    }

    #[test]
    fn short_keys_and_unknown_permissions_are_refused_without_quoting_them() {
        let err = config(&[("MFA_ENCRYPTION_KEY", "k1:tooshort-secret")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("MFA_ENCRYPTION_KEY") && !err.contains("tooshort"),
            "{err}"
        );
        let err = config(&[("MFA_REQUIRED_FOR_PERMISSIONS", "*,users:writ")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("users:writ"), "{err}");
    }

    #[test]
    fn permissions_are_a_trimmed_list() -> Result<(), ConfigError> {
        let c = config(&[(
            "MFA_REQUIRED_FOR_PERMISSIONS",
            " *, users:write ,roles:manage",
        )])?;
        assert_eq!(
            c.required_for_permissions,
            ["*", "users:write", "roles:manage"]
        );
        Ok(())
    }
}
