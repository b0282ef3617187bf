//! Argon2id password hashing (PHC strings) on the blocking pool, with a dummy
//! hash so that a login for an unknown user costs what a real one costs.
//!
//! Argon2's working memory (19 MiB at the API's defaults) is kept and
//! reused between hashes instead of being allocated per hash: the allocator
//! would otherwise keep each freed block in a per-thread arena, and a Lambda
//! container's resident memory would grow with every blocking thread that
//! ever hashed.

use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;

use crate::config::Argon2Params;
use crate::domain::Password;
use crate::error::Error;

/// Salt and output lengths of new hashes (bytes).
const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

/// Working-memory buffers kept for reuse (more only when more hashes run at
/// once; a Lambda container runs one).
const KEPT_BUFFERS: usize = 4;

/// Hashes and verifies passwords with the configured Argon2id parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    /// One permit per hash that may run at once.
    slots: Arc<tokio::sync::Semaphore>,
    queue_timeout: std::time::Duration,
    /// A PHC string with the configured parameters, a random salt and a
    /// random output: verifying against it costs one real hash and never
    /// matches. Built without hashing, so start-up stays cheap.
    dummy_hash: String,
    memory: Mutex<Vec<Vec<Block>>>,
}

/// A hashing slot: one of the `ARGON2_MAX_CONCURRENT` hashes that may run at once.
pub struct Slot(tokio::sync::OwnedSemaphorePermit);

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but hashed with other parameters: store a new hash.
    YesRehash,
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A PHC string for Argon2id v0x13 with `params`, `salt` and `output`.
fn phc(params: &Params, salt: &[u8], output: &[u8]) -> Result<String, String> {
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(output).map_err(|e| e.to_string())?),
    };
    Ok(hash.to_string())
}

impl PasswordHasher {
    pub fn new(cfg: Argon2Params) -> anyhow::Result<Self> {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid Argon2 parameters: {e}"))?;
        let dummy_hash = phc(&params, &random::<SALT_LEN>(), &random::<OUTPUT_LEN>())
            .map_err(|e| anyhow::anyhow!("building the dummy hash: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrent.max(1))),
                queue_timeout: cfg.queue_timeout,
                dummy_hash,
                memory: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Waits for a hashing slot; 503 with `Retry-After` after the queue
    /// timeout. Taken before a password attempt is counted, so a request
    /// refused for load never counts toward a lockout.
    pub async fn slot(&self) -> Result<Slot, Error> {
        let wait = self.inner.queue_timeout;
        match tokio::time::timeout(wait, self.inner.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot(permit)),
            Ok(Err(closed)) => Err(Error::internal(closed)),
            Err(_) => {
                tracing::warn!("every password-hashing slot stayed busy; request refused");
                Err(Error::Busy {
                    retry_after_secs: wait.as_secs().max(1),
                })
            }
        }
    }

    /// Hashes `password` into a PHC string (on the blocking pool).
    pub async fn hash(&self, password: &Password) -> Result<String, Error> {
        let Slot(permit) = self.slot().await?;
        let inner = self.inner.clone();
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let salt = random::<SALT_LEN>();
            let mut out = [0u8; OUTPUT_LEN];
            inner
                .compute(
                    Algorithm::Argon2id,
                    Version::V0x13,
                    inner.params.clone(),
                    password.expose().as_bytes(),
                    &salt,
                    &mut out,
                )
                .map_err(|e| Error::internal(anyhow::anyhow!("hashing a password: {e}")))?;
            phc(&inner.params, &salt, &out)
                .map_err(|e| Error::internal(anyhow::anyhow!("encoding a hash: {e}")))
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
        self.verify_in(self.slot().await?, password, stored).await
    }

    /// [`verify`](Self::verify) in a slot already taken.
    pub async fn verify_in(
        &self,
        slot: Slot,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<Verified, Error> {
        let permit = slot.0;
        let inner = self.inner.clone();
        let password = password.clone();
        let known = stored.is_some();
        let stored = stored.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let phc = stored.as_deref().unwrap_or(&inner.dummy_hash);
            // An unusable stored hash (e.g. an anonymised account) never matches.
            let Some(ok) = inner.check(password.expose().as_bytes(), phc) else {
                return Verified::No;
            };
            if !ok || !known {
                return Verified::No;
            }
            let current = PasswordHash::new(phc)
                .ok()
                .and_then(|h| Params::try_from(&h).ok().map(|p| (h.algorithm, p)));
            let up_to_date = current.is_some_and(|(algorithm, p)| {
                algorithm == argon2::ARGON2ID_IDENT
                    && p.m_cost() == inner.params.m_cost()
                    && p.t_cost() == inner.params.t_cost()
                    && p.p_cost() == inner.params.p_cost()
            });
            if up_to_date {
                Verified::Yes
            } else {
                Verified::YesRehash
            }
        })
        .await
        .map_err(Error::internal)
    }
}

impl Inner {
    /// Recomputes the hash of `password` with `phc`'s algorithm, version,
    /// parameters and salt and compares the outputs in constant time;
    /// `None` when `phc` is not a usable Argon2 hash.
    fn check(&self, password: &[u8], phc: &str) -> Option<bool> {
        let hash = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(hash.algorithm.as_str()).ok()?;
        let version = match hash.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&hash).ok()?;
        let salt = hash.salt?;
        let expected = hash.hash?;
        let mut out = vec![0u8; expected.len()];
        self.compute(algorithm, version, params, password, &salt, &mut out)
            .ok()?;
        Some(Output::new(&out).ok()? == expected)
    }

    /// One Argon2 computation in a reused working-memory buffer.
    fn compute(
        &self,
        algorithm: Algorithm,
        version: Version,
        params: Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> argon2::Result<()> {
        let needed = params.block_count();
        let mut buffer = self
            .memory
            .lock()
            .ok()
            .and_then(|mut kept| kept.pop())
            .unwrap_or_default();
        if buffer.len() < needed {
            buffer.resize(needed, Block::new());
        }
        let result = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password,
            salt,
            out,
            &mut buffer[..needed],
        );
        // Keep buffers of the configured size only (an old hash's larger
        // parameters should not pin memory).
        if buffer.len() == self.params.block_count()
            && let Ok(mut kept) = self.memory.lock()
            && kept.len() < KEPT_BUFFERS
        {
            kept.push(buffer);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    fn hasher(memory_kib: u32) -> PasswordHasher {
        PasswordHasher::new(Argon2Params {
            memory_kib,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 2,
            queue_timeout: std::time::Duration::from_secs(10),
        })
        .unwrap()
    }

    fn password(p: &str) -> Password {
        Password::candidate(p).unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hasher(1024);
        let right = password("Correct-Horse-Battery-9!");
        let stored = h.hash(&right).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{stored}"
        );
        assert_eq!(
            h.verify(&right, Some(&stored)).await.unwrap(),
            Verified::Yes
        );
        let wrong = password("Correct-Horse-Battery-8!");
        assert_eq!(h.verify(&wrong, Some(&stored)).await.unwrap(), Verified::No);
        // Salted: the same password hashes differently each time.
        assert_ne!(h.hash(&right).await.unwrap(), stored);
        // Unknown user: the dummy never matches, whatever the password.
        assert_eq!(h.verify(&right, None).await.unwrap(), Verified::No);
        assert_eq!(
            h.verify(&right, Some("anonymized")).await.unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn interoperates_with_the_argon2_crates_own_phc_code() {
        let h = hasher(1024);
        let p = password("Correct-Horse-Battery-9!");
        // A hash made by the crate itself (as stored by earlier versions).
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(p.expose().as_bytes())
        .unwrap()
        .to_string();
        assert_eq!(h.verify(&p, Some(&theirs)).await.unwrap(), Verified::Yes);
        // Ours verifies with the crate's verifier.
        let ours = h.hash(&p).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(p.expose().as_bytes(), &parsed)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn other_parameters_verify_and_ask_for_a_rehash() {
        let old = hasher(2048)
            .hash(&password("Correct-Horse-Battery-9!"))
            .await;
        let h = hasher(1024);
        let verdict = h
            .verify(&password("Correct-Horse-Battery-9!"), Some(&old.unwrap()))
            .await
            .unwrap();
        assert_eq!(verdict, Verified::YesRehash);
    }

    #[tokio::test]
    async fn a_request_that_waits_too_long_for_a_slot_is_busy() {
        let h = PasswordHasher::new(Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 1,
            queue_timeout: std::time::Duration::from_millis(50),
        })
        .unwrap();
        let held = h.inner.slots.clone().acquire_owned().await.unwrap();
        let p = password("Correct-Horse-Battery-9!");
        let err = h.hash(&p).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Busy {
                    retry_after_secs: 1
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.parts().1, "unavailable");
        drop(held);
        assert!(h.hash(&p).await.is_ok(), "a free slot serves again");
    }

    #[tokio::test]
    async fn working_memory_is_reused_not_grown() {
        let h = hasher(1024);
        let p = password("Correct-Horse-Battery-9!");
        for _ in 0..5 {
            h.hash(&p).await.unwrap();
        }
        let kept = h.inner.memory.lock().unwrap();
        assert!(!kept.is_empty() && kept.len() <= KEPT_BUFFERS);
        assert!(kept.iter().all(|b| b.len() == h.inner.params.block_count()));
    }
}
