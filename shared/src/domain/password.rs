//! `Password`: the original design's composition rule (the same as the SQL function
//! `is_strong_password`), at most 128 characters, and not guessable.

use secrecy::{ExposeSecret, SecretString};

use super::rules::{NEW_PASSWORD_CHARS, PASSWORD_MAX_CHARS};

/// A raw password that passed the strength rules; never printed.
#[derive(Clone)]
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// The design's `is_strong_password`: 8–128 characters with an upper-case
/// letter, a lower-case letter, a digit and a character that is none of these.
pub fn meets_composition_rule(password: &str) -> bool {
    let len = password.chars().count();
    (NEW_PASSWORD_CHARS.0..=NEW_PASSWORD_CHARS.1).contains(&len)
        && password.chars().any(|c| c.is_ascii_uppercase())
        && password.chars().any(|c| c.is_ascii_lowercase())
        && password.chars().any(|c| c.is_ascii_digit())
        && password.chars().any(|c| !c.is_ascii_alphanumeric())
}

impl Password {
    /// Checks a new password: composition, then guessability (zxcvbn score
    /// of at least 3, with the user's own names counted as guessable).
    pub fn parse(raw: &str, user_inputs: &[&str]) -> Result<Self, &'static str> {
        let len = raw.chars().count();
        if len < NEW_PASSWORD_CHARS.0 {
            return Err("must be at least 8 characters");
        }
        if len > NEW_PASSWORD_CHARS.1 {
            return Err("must be at most 128 characters");
        }
        if !meets_composition_rule(raw) {
            return Err(
                "must contain an upper-case letter, a lower-case letter, a digit and a symbol",
            );
        }
        let lowered = raw.to_lowercase();
        if user_inputs
            .iter()
            .map(|input| input.trim().to_lowercase())
            .any(|input| input.chars().count() >= 3 && lowered.contains(&input))
        {
            return Err("must not contain your username or e-mail address");
        }
        let estimate = zxcvbn::zxcvbn(raw, user_inputs);
        if (estimate.score() as u8) < 3 {
            return Err("is too easy to guess; use a longer, less common password");
        }
        Ok(Self(SecretString::from(raw.to_string())))
    }

    /// A password as typed at login: not checked for strength, only bounded.
    pub fn candidate(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() || raw.chars().count() > PASSWORD_MAX_CHARS {
            return Err("must be 1 to 128 characters");
        }
        Ok(Self(SecretString::from(raw.to_string())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_passwords_are_refused_even_when_composed_right() {
        assert!(meets_composition_rule("Password1!"));
        assert!(Password::parse("Password1!", &[]).is_err());
        assert!(Password::parse("Qwerty123!", &[]).is_err());
    }

    #[test]
    fn strong_passwords_are_accepted() {
        assert!(Password::parse("Tr0ub4dor&3-horse-Battery", &[]).is_ok());
        assert!(Password::parse("x7#Kp!q2Lz@v9", &[]).is_ok());
    }

    #[test]
    fn passwords_built_from_the_username_are_refused() {
        assert!(Password::parse("Zanzibar-Quokka-77!", &["zanzibar"]).is_err());
        assert!(Password::parse("Zanzibar-Quokka-77!", &["someone"]).is_ok());
    }

    #[test]
    fn length_is_bounded_and_never_truncated() {
        let long = format!("Aa1!{}", "kq8Zr#".repeat(20)); // 124 chars
        assert!(Password::parse(&long, &[]).is_ok());
        let too_long = format!("{long}Xy7!z");
        assert!(Password::parse(&too_long, &[]).is_err());
        assert!(Password::parse("Aa1!", &[]).is_err());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let password = Password::candidate("hunter2").map(|p| format!("{p:?}"));
        assert_eq!(password.as_deref(), Ok("Password([redacted])"));
    }
}
