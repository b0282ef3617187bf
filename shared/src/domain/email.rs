//! `Email`: trimmed, lower-cased, at most 255 characters, matching the original design's regex.

use std::sync::LazyLock;

use regex::Regex;

use super::rules::{EMAIL_MAX_CHARS, EMAIL_PATTERN};

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(EMAIL_PATTERN).expect("the e-mail pattern is valid"));

/// A normalised, valid e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Trims and lower-cases `raw`, then checks length and format.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("must not be empty");
        }
        if email.chars().count() > EMAIL_MAX_CHARS {
            return Err("must be at most 255 characters");
        }
        if !EMAIL.is_match(&email) {
            return Err("must be a valid e-mail address");
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@` (used to refuse passwords built from it).
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").map(|e| e.0),
            Ok("alice@example.com".to_string())
        );
    }

    #[test]
    fn invalid_addresses_are_refused() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "a b@example.com",
            "alice@example.c",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }
}
