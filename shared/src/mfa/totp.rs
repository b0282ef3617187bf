//! TOTP (RFC 6238) as authenticator apps support it: HMAC-SHA-1, 6 digits,
//! 30-second steps, one step of clock skew either way. The computation is
//! the `totp-rs` crate's; this module adds the secret, the `otpauth://`
//! URI with its QR code (SVG), and the step a code matched, which the
//! caller stores so that no code is accepted twice.

use ring::rand::{SecureRandom, SystemRandom};
use totp_rs::{Algorithm, Builder, Totp};

/// Bytes of a new TOTP secret (160 bits, RFC 4226's recommendation).
pub const SECRET_BYTES: usize = 20;
/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;

/// A new random secret.
pub fn new_secret() -> anyhow::Result<Vec<u8>> {
    let mut secret = vec![0u8; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(secret)
}

fn totp(secret: &[u8], issuer: Option<&str>, account: &str) -> anyhow::Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.to_vec())
        .with_issuer(issuer.map(|i| i.replace(':', " ")))
        .with_account_name(account.replace(':', " "))
        .build()
        .map_err(|e| anyhow::anyhow!("building a TOTP: {e:?}"))
}

/// The `otpauth://totp/…` URI an authenticator app enrols from.
pub fn uri(secret: &[u8], issuer: &str, account: &str) -> anyhow::Result<String> {
    totp(secret, Some(issuer), account)?
        .to_url()
        .map_err(|e| anyhow::anyhow!("the otpauth URI: {e:?}"))
}

/// The URI as a QR code, an SVG document to inline in a page.
pub fn qr_svg(uri: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(uri, qrcode::EcLevel::M)
        .map_err(|e| anyhow::anyhow!("the QR code: {e}"))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build())
}

/// A code as typed: six digits, spaces allowed between them.
pub fn normalize(code: &str) -> Option<String> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == DIGITS && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The step (`unix time / 30`) that `code` is valid for at `now`, within
/// one step either way; `None` for a wrong code.
pub fn matching_step(secret: &[u8], code: &str, now: u64) -> anyhow::Result<Option<u64>> {
    let Some(code) = normalize(code) else {
        return Ok(None);
    };
    Ok(totp(secret, None, "")?.check(&code, now))
}

/// The secret for manual entry into an app: base32, as in the URI.
pub fn secret_base32(secret: &[u8]) -> String {
    totp_rs::Secret::from(secret.to_vec()).to_base32()
}

/// The secret of an `otpauth://` URI or of manual entry (base32), as bytes.
pub fn secret_from_base32(encoded: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::try_from_base32(encoded)
        .ok()
        .map(|secret| secret.as_ref().to_vec())
}

/// The code for `time` (tests and tools that play the authenticator).
pub fn code_at(secret: &[u8], time: u64) -> anyhow::Result<String> {
    Ok(totp(secret, None, "")?.generate(time).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 vectors, truncated to six digits.
    #[test]
    fn the_rfc_vectors_hold() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(secret, time).unwrap(), code, "at {time}");
        }
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let secret = new_secret().unwrap();
        let now = 1_800_000_015;
        let step = now / STEP_SECONDS;
        for offset in [-1i64, 0, 1] {
            let at = (step as i64 + offset) as u64 * STEP_SECONDS;
            let code = code_at(&secret, at).unwrap();
            assert_eq!(
                matching_step(&secret, &code, now).unwrap(),
                Some(at / STEP_SECONDS)
            );
        }
        for offset in [-2i64, 2] {
            let at = (step as i64 + offset) as u64 * STEP_SECONDS;
            let code = code_at(&secret, at).unwrap();
            // (A code of a step two away may equal one in the window by
            // chance, 1 in 10^6 per step.)
            let near = [-1i64, 0, 1].iter().any(|o| {
                code_at(&secret, (step as i64 + o) as u64 * STEP_SECONDS).unwrap() == code
            });
            if !near {
                assert_eq!(matching_step(&secret, &code, now).unwrap(), None);
            }
        }
        assert_eq!(matching_step(&secret, "12345", now).unwrap(), None);
        assert_eq!(matching_step(&secret, "abcdef", now).unwrap(), None);
    }

    #[test]
    fn the_uri_and_qr_code_carry_the_secret() {
        let secret = new_secret().unwrap();
        let uri = uri(&secret, "User Management", "ada@example.com").unwrap();
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains("issuer=User%20Management"), "{uri}");
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg") && svg.len() > 1000);
        let encoded = uri
            .split("secret=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap();
        assert_eq!(secret_from_base32(encoded).unwrap(), secret);
        assert_eq!(secret_base32(&secret), encoded);
        assert_eq!(normalize(" 123 456 "), Some("123456".into()));
    }
}
