//! Argon2id password hashing (PHC strings) on the blocking pool, with a dummy
//! hash so that a login for an unknown user costs what a real one costs.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};

use crate::config::Argon2Params;
use crate::domain::Password;
use crate::error::Error;

/// Hashes and verifies passwords with the configured Argon2id parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
    params: Params,
    dummy_hash: String,
}

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but hashed with other parameters: store a new hash.
    YesRehash,
}

impl PasswordHasher {
    pub fn new(cfg: Argon2Params) -> anyhow::Result<Self> {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid Argon2 parameters: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let dummy_hash = argon2
            .hash_password(b"dummy password for unknown users")
            .map_err(|e| anyhow::anyhow!("hashing the dummy password: {e}"))?
            .to_string();
        Ok(Self {
            inner: Arc::new(Inner {
                argon2,
                params,
                dummy_hash,
            }),
        })
    }

    /// Hashes `password` into a PHC string (on the blocking pool).
    pub async fn hash(&self, password: &Password) -> Result<String, Error> {
        let inner = self.inner.clone();
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .argon2
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::internal(anyhow::anyhow!("hashing a password: {e}")))
        })
        .await
        .map_err(Error::internal)?
    }

    /// Checks `password` against `stored`; with `None` (unknown user) checks
    /// against the dummy hash and answers `No`, in the same time.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<Verified, Error> {
        let inner = self.inner.clone();
        let password = password.clone();
        let known = stored.is_some();
        let stored = stored.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let phc = stored.as_deref().unwrap_or(&inner.dummy_hash);
            let Ok(hash) = PasswordHash::new(phc) else {
                // An unusable stored hash (e.g. an anonymised account) never matches.
                return Verified::No;
            };
            let ok = inner
                .argon2
                .verify_password(password.expose().as_bytes(), &hash)
                .is_ok();
            if !ok || !known {
                return Verified::No;
            }
            let current = Params::try_from(&hash).ok();
            let same_params = current.is_some_and(|p| {
                p.m_cost() == inner.params.m_cost()
                    && p.t_cost() == inner.params.t_cost()
                    && p.p_cost() == inner.params.p_cost()
            });
            if hash.algorithm.as_str() == "argon2id" && same_params {
                Verified::Yes
            } else {
                Verified::YesRehash
            }
        })
        .await
        .map_err(Error::internal)
    }
}
