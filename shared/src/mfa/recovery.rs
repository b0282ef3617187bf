//! Recovery codes: ten single-use codes shown once, stored as SHA-256.
//! Each is 16 characters of Crockford's base32 (80 random bits) in four
//! groups, so a hash without salt or stretching is enough: there is
//! nothing to guess offline.

use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// Codes in a set.
pub const COUNT: usize = 10;
/// Characters of a code, without the dashes.
const CHARS: usize = 16;
/// Crockford's alphabet: no I, L, O or U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new set of codes, as the user sees them (`XXXX-XXXX-XXXX-XXXX`).
pub fn generate() -> anyhow::Result<Vec<String>> {
    let rng = SystemRandom::new();
    (0..COUNT)
        .map(|_| {
            let mut bytes = [0u8; CHARS];
            rng.fill(&mut bytes)
                .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
            let chars: Vec<char> = bytes
                .iter()
                .map(|b| ALPHABET[usize::from(b & 31)] as char)
                .collect();
            Ok(chars
                .chunks(4)
                .map(|group| group.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-"))
        })
        .collect()
}

/// A code as typed, in canonical form: dashes and spaces dropped, upper
/// case, Crockford's look-alikes read as digits (`O` → 0, `I`/`L` → 1).
/// `None` when it cannot be a code.
pub fn normalize(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    (code.len() == CHARS && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// The stored form of a code (hex SHA-256 of the canonical form).
pub fn hash(typed: &str) -> Option<String> {
    let code = normalize(typed)?;
    let digest = Sha256::digest(code.as_bytes());
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_typed_forms_hash_alike() {
        let codes = generate().unwrap();
        assert_eq!(codes.len(), COUNT);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        let code = &codes[0];
        assert_eq!(code.len(), 19);
        let sloppy = code.to_lowercase().replace('-', " ");
        assert_eq!(hash(code), hash(&sloppy));
        assert_eq!(hash(code).map(|h| h.len()), Some(64));
        assert_eq!(hash("too-short"), None);
        assert_eq!(
            normalize("o1l1-0000-0000-0000"),
            Some("0111000000000000".into())
        );
    }
}
