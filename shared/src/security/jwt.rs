//! Access tokens: RS256 JWTs with a `kid`. Several keys may be published
//! (rotation): the newest signs, every published key verifies. The JWKS and
//! OpenID discovery documents are built once, at start.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rsa::PublicKeyComponents;
use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::jwt_crypto;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    /// RFC 8176 authentication method references of the session: `pwd`,
    /// and `otp` and `mfa` after a second factor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
}

/// The signing key, the verification keys by `kid`, and the public documents.
pub struct JwtKeys {
    signing: SigningKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
    jwks: Value,
    verified: Mutex<HashMap<Box<str>, Claims>>,
}

/// How many verified tokens are remembered: about 1 MB at most. A client
/// calls with the same access token until it expires, so the signature
/// check is done once per token and process, not once per request.
const VERIFIED_CAPACITY: usize = 1024;

/// Leeway on `exp`, in seconds (clock skew between issuers and verifiers).
const LEEWAY_SECS: u64 = 5;

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("signing_kid", &self.signing.kid)
            .field("kids", &self.decoding.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Generates a new 2048-bit RSA private key as PKCS#8 PEM (local use).
pub fn generate_private_key_pem() -> anyhow::Result<SecretString> {
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
    let pem = key.to_pkcs8_pem(LineEnding::LF)?;
    Ok(SecretString::from(pem.to_string()))
}

impl JwtKeys {
    /// Loads PEM private keys (PKCS#8 or PKCS#1, 2048 to 8192 bits); the
    /// last one signs.
    pub fn new(
        pems: &[SecretString],
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        jwt_crypto::install();
        let mut decoding = HashMap::new();
        let mut jwks = Vec::new();
        let mut signing = None;
        for pem in pems {
            let not_rsa = |_| anyhow::anyhow!("a JWT private key is not an RSA PEM key");
            let encoding =
                EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes()).map_err(not_rsa)?;
            let pair = jwt_crypto::key_pair(encoding.as_bytes()).map_err(|_| {
                anyhow::anyhow!("a JWT private key is not an RSA key of 2048 to 8192 bits")
            })?;
            let PublicKeyComponents { n, e } = PublicKeyComponents::<Vec<u8>>::from(pair.public());
            let kid = {
                let mut digest = Sha256::new();
                digest.update(&n);
                digest.update(&e);
                URL_SAFE_NO_PAD.encode(&digest.finalize()[..16])
            };
            decoding.insert(kid.clone(), DecodingKey::from_rsa_raw_components(&n, &e));
            jwks.push(json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(&n), "e": URL_SAFE_NO_PAD.encode(&e),
            }));
            signing = Some(SigningKey { kid, encoding });
        }
        let signing = signing.ok_or_else(|| {
            anyhow::anyhow!("no JWT signing key: set JWT_PRIVATE_KEY_PEM or JWT_SECRET_ARN")
        })?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            signing,
            decoding,
            validation,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            ttl,
            jwks: json!({ "keys": jwks }),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Issues an access token for `user` in session `sid`, authenticated by `amr`.
    pub fn issue(&self, user: Uuid, sid: Uuid, amr: &[String]) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user,
            sid,
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: Uuid::new_v4(),
            amr: amr.to_vec(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.signing.kid.clone());
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            &self.signing.encoding,
        )?)
    }

    /// Verifies signature, `kid`, algorithm, `iss`, `aud` and expiry.
    /// A token verified before is looked up, not verified again: the
    /// keys, issuer and audience are fixed for the process, so only its
    /// expiry can have changed, and that is checked on every call.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        self.verify_at(token, jsonwebtoken::get_current_timestamp())
    }

    /// [`Self::verify`] at `now` (seconds since the epoch) for remembered
    /// tokens; a token verified anew is checked against the clock.
    fn verify_at(&self, token: &str, now: u64) -> Option<Claims> {
        let unexpired = |c: &Claims| u64::try_from(c.exp).is_ok_and(|exp| exp + LEEWAY_SECS >= now);
        let remembered = self.remembered().get(token).cloned();
        if let Some(claims) = remembered {
            return unexpired(&claims).then_some(claims);
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::RS256 {
            return None;
        }
        let key = self.decoding.get(header.kid.as_deref()?)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .ok()?
            .claims;
        let mut verified = self.remembered();
        if verified.len() >= VERIFIED_CAPACITY {
            verified.retain(|_, c| unexpired(c));
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(token.into(), claims.clone());
        Some(claims)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Claims>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The access-token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The JWKS document (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        let pem = generate_private_key_pem().unwrap();
        JwtKeys::new(
            &[pem],
            "https://issuer.test",
            "api",
            Duration::from_secs(60),
        )
        .unwrap()
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let keys = keys();
        let token = keys.issue(Uuid::now_v7(), Uuid::now_v7(), &[]).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(keys.remembered().len(), 1);
        let exp = u64::try_from(claims.exp).unwrap();
        assert!(keys.verify_at(&token, exp + LEEWAY_SECS).is_some());
        assert!(keys.verify_at(&token, exp + LEEWAY_SECS + 1).is_none());
    }

    #[test]
    fn only_verified_tokens_are_remembered_and_the_memory_is_bounded() {
        let keys = keys();
        let token = keys.issue(Uuid::now_v7(), Uuid::now_v7(), &[]).unwrap();
        let (head, rest) = token.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}", rest.chars().rev().collect::<String>());
        assert!(keys.verify(&forged).is_none());
        assert!(keys.remembered().is_empty());
        for _ in 0..VERIFIED_CAPACITY + 10 {
            let token = keys.issue(Uuid::now_v7(), Uuid::now_v7(), &[]).unwrap();
            assert!(keys.verify(&token).is_some());
        }
        assert!(keys.remembered().len() <= VERIFIED_CAPACITY);
    }

    #[test]
    fn other_algorithms_are_refused_by_the_provider() {
        let keys = keys();
        let header = Header::new(Algorithm::HS256);
        let secret = EncodingKey::from_secret(b"secret");
        assert!(jsonwebtoken::encode(&header, &json!({"sub": "x"}), &secret).is_err());
        // And RS256 tokens round-trip through ring.
        let token = keys.issue(Uuid::now_v7(), Uuid::now_v7(), &[]).unwrap();
        assert!(keys.verify(&token).is_some());
    }
}
