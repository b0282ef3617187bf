//! Access tokens: RS256 JWTs with a `kid`. Several keys may be published
//! (rotation): the newest signs, every published key verifies. The JWKS and
//! OpenID discovery documents are built once, at start.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

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
}

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
    /// Loads PEM private keys (PKCS#8 or PKCS#1); the last one signs.
    pub fn new(
        pems: &[SecretString],
        issuer: &str,
        audience: &str,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let mut decoding = HashMap::new();
        let mut jwks = Vec::new();
        let mut signing = None;
        for pem in pems {
            let pem = pem.expose_secret();
            let key = RsaPrivateKey::from_pkcs8_pem(pem)
                .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
                .map_err(|_| anyhow::anyhow!("a JWT private key is not an RSA PEM key"))?;
            let public = key.to_public_key();
            let n = public.n().to_bytes_be();
            let e = public.e().to_bytes_be();
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
            signing = Some(SigningKey {
                kid,
                encoding: EncodingKey::from_rsa_pem(pem.as_bytes())?,
            });
        }
        let signing = signing.ok_or_else(|| {
            anyhow::anyhow!("no JWT signing key: set JWT_PRIVATE_KEY_PEM or JWT_SECRET_ARN")
        })?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            signing,
            decoding,
            validation,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            ttl,
            jwks: json!({ "keys": jwks }),
        })
    }

    /// Issues an access token for `user` in session `sid`.
    pub fn issue(&self, user: Uuid, sid: Uuid) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user,
            sid,
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            jti: Uuid::new_v4(),
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
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::RS256 {
            return None;
        }
        let key = self.decoding.get(header.kid.as_deref()?)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .ok()
            .map(|data| data.claims)
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
