//! `Username`: 3–50 characters of `[A-Za-z0-9_.-]`; case kept, compared case-insensitively.

use super::rules::USERNAME_CHARS;

/// A valid username.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let len = raw.chars().count();
        if !(USERNAME_CHARS.0..=USERNAME_CHARS.1).contains(&len) {
            return Err("must be 3 to 50 characters");
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err("may contain only letters, digits, '_', '.' and '-'");
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_contract() {
        for good in ["bob", "alice_01", "a.b-c", &"x".repeat(50)] {
            assert!(Username::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            &"x".repeat(51),
            "alice smith",
            "alice@x",
            "ålice",
            "bob\0",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }
}
