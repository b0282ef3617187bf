//! Encryption at rest of second-factor secrets: AES-256-GCM (ring) under
//! keys derived with HKDF-SHA256 from `MFA_ENCRYPTION_KEY`. Each sealed
//! value is stored with the id of its key, so keys can be rotated: the last
//! key seals, every configured key opens. The owner's id is the associated
//! data: a ciphertext copied to another user's row does not open.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// What HKDF derives the AES key under (changing it changes every key).
const HKDF_SALT: &[u8] = b"user-management-api mfa secrets v1";

struct Key {
    id: String,
    key: LessSafeKey,
}

/// The configured keys; the last one seals.
pub struct SecretBox {
    keys: Vec<Key>,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("SecretBox").field("key_ids", &ids).finish()
    }
}

/// A sealed value: nonce, ciphertext and tag, and the id of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl SecretBox {
    /// Keys as `MFA_ENCRYPTION_KEY` gives them (`[<id>:]<secret>`); an
    /// entry without an id gets one derived from its secret.
    pub fn new(entries: &[SecretString]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !entries.is_empty(),
            "no MFA encryption key: set MFA_ENCRYPTION_KEY or MFA_SECRET_ARN"
        );
        let salt = Salt::new(HKDF_SHA256, HKDF_SALT);
        let mut keys = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.expose_secret();
            let (id, secret) = match entry.split_once(':') {
                Some((id, secret)) if !id.trim().is_empty() => (id.trim().to_string(), secret),
                _ => (derived_id(entry), entry),
            };
            let mut bytes = [0u8; 32];
            salt.extract(secret.as_bytes())
                .expand(&[b"aes-256-gcm"], &AES_256_GCM)
                .and_then(|okm| okm.fill(&mut bytes))
                .map_err(|_| anyhow::anyhow!("MFA_ENCRYPTION_KEY: key derivation failed"))?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| anyhow::anyhow!("MFA_ENCRYPTION_KEY: not an AES-256 key"))?;
            keys.retain(|k: &Key| k.id != id);
            keys.push(Key {
                id,
                key: LessSafeKey::new(key),
            });
        }
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Seals `plain` for `owner` under the newest key.
    pub fn seal(&self, owner: uuid::Uuid, plain: &[u8]) -> anyhow::Result<Sealed> {
        let key = self
            .keys
            .last()
            .ok_or_else(|| anyhow::anyhow!("no MFA encryption key"))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
        let mut sealed = plain.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("sealing a secret failed"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(Sealed {
            key_id: key.id.clone(),
            bytes,
        })
    }

    /// Opens a value sealed for `owner`; an error when its key is not
    /// configured or it was altered or moved.
    pub fn open(&self, owner: uuid::Uuid, sealed: &Sealed) -> anyhow::Result<Vec<u8>> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "MFA secret sealed with key `{}`, which MFA_ENCRYPTION_KEY no longer holds",
                    sealed.key_id
                )
            })?;
        anyhow::ensure!(
            sealed.bytes.len() > NONCE_LEN,
            "a sealed MFA secret is truncated"
        );
        let (nonce, rest) = sealed.bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow::anyhow!("a sealed MFA secret has a bad nonce"))?;
        let mut buffer = rest.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut buffer)
            .map_err(|_| {
                anyhow::anyhow!("an MFA secret does not open (altered, or another user's)")
            })?;
        Ok(plain.to_vec())
    }

    /// The id of the key that seals.
    pub fn current_key_id(&self) -> &str {
        self.keys.last().map_or("", |k| k.id.as_str())
    }
}

/// `k` and 8 hex digits of the secret's SHA-256: stable, and telling
/// nothing usable about a secret of 32 random characters or more.
fn derived_id(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("k{hex}")
}

/// A random key entry for local use (`MFA_ENCRYPTION_KEY` unset): 43
/// URL-safe characters (256 bits).
pub fn generate_key() -> anyhow::Result<SecretString> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    Ok(SecretString::from(format!("local:{secret}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a:0123456789abcdef0123456789abcdef";
    const B: &str = "b:fedcba9876543210fedcba9876543210";

    fn keys(entries: &[&str]) -> SecretBox {
        let entries: Vec<SecretString> = entries.iter().map(|e| SecretString::from(*e)).collect();
        SecretBox::new(&entries).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_owner_and_unaltered() {
        let (alice, bob) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let vault = keys(&[A]);
        let sealed = vault.seal(alice, b"JBSWY3DPEHPK3PXP").unwrap();
        assert_eq!(sealed.key_id, "a");
        assert!(!sealed.bytes.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
        assert_eq!(vault.open(alice, &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
        assert!(vault.open(bob, &sealed).is_err());
        let mut altered = sealed.clone();
        let last = altered.bytes.len() - 1;
        altered.bytes[last] ^= 1;
        assert!(vault.open(alice, &altered).is_err());
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(
            vault.seal(alice, b"x").unwrap(),
            vault.seal(alice, b"x").unwrap()
        );
    }

    #[test]
    fn rotation_seals_with_the_last_key_and_opens_with_any() {
        let owner = uuid::Uuid::new_v4();
        let old = keys(&[A]).seal(owner, b"secret").unwrap();
        let both = keys(&[A, B]);
        assert_eq!(both.current_key_id(), "b");
        assert_eq!(both.open(owner, &old).unwrap(), b"secret");
        let err = keys(&[B]).open(owner, &old).unwrap_err().to_string();
        assert!(err.contains("`a`"), "{err}");
    }

    #[test]
    fn keys_without_an_id_get_one_from_their_secret() {
        let vault = keys(&["0123456789abcdef0123456789abcdef"]);
        assert!(vault.current_key_id().starts_with('k'));
        assert_eq!(vault.current_key_id().len(), 9);
        assert!(SecretBox::new(&[]).is_err());
        let generated = generate_key().unwrap();
        assert!(SecretBox::new(&[generated]).is_ok());
    }
}
