//! The cryptography under `jsonwebtoken`: RS256 by ring, which the TLS
//! stack links already. The crate's own RustCrypto provider re-parses the
//! private key and signs with the `rsa` crate on every token, and builds a
//! big-integer public key on every verification; a refresh spent most of
//! its CPU there (BENCHMARKS.md). Here a key pair is parsed once per
//! process and kept, and only RS256 exists: any other algorithm is refused.

use std::sync::{Arc, Mutex, PoisonError};

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes ring `jsonwebtoken`'s provider for this process (idempotent).
pub fn install() {
    // Fails only when already installed, which is what we want.
    let _ = PROVIDER.install_default();
}

/// The key pairs parsed so far, by their PKCS#1 DER: a process holds one
/// signing key (two or three during a rotation), so a scan is enough.
static PARSED: Mutex<Vec<Parsed>> = Mutex::new(Vec::new());

/// A private key's DER and its parsed key pair.
type Parsed = (Box<[u8]>, Arc<RsaKeyPair>);

/// The parsed key pair of `der` (a PKCS#1 RSA private key).
pub fn key_pair(der: &[u8]) -> Result<Arc<RsaKeyPair>> {
    let mut parsed = PARSED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, pair)) = parsed.iter().find(|(key, _)| **key == *der) {
        return Ok(Arc::clone(pair));
    }
    let pair = Arc::new(RsaKeyPair::from_der(der).map_err(|_| {
        ErrorKind::InvalidRsaKey("not an RSA private key ring accepts (2048 to 8192 bits)".into())
    })?);
    parsed.push((der.into(), Arc::clone(&pair)));
    Ok(pair)
}

struct Rs256Signer(Arc<RsaKeyPair>);

impl Signer<Vec<u8>> for Rs256Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let mut sig = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
            .map_err(|_| signature::Error::new())?;
        Ok(sig)
    }
}

impl JwtSigner for Rs256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// The public key's modulus and exponent, big-endian.
struct Rs256Verifier {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl Verifier<Vec<u8>> for Rs256Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        ring::signature::RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, msg, sig)
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

fn signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *alg != Algorithm::RS256 || key.family() != AlgorithmFamily::Rsa {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Rs256Signer(key_pair(key.as_bytes())?)))
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    match (alg, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            Ok(Box::new(Rs256Verifier {
                n: n.clone(),
                e: e.clone(),
            }))
        }
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}
