//! The contract's field rules for profile fields; each returns the message
//! for `errors[]` when the value breaks its rule.

use std::sync::LazyLock;

use chrono::NaiveDate;
use regex::Regex;

use super::rules::{BIO_MAX_CHARS, NAME_MAX_CHARS, PHONE_PATTERN, URL_MAX_CHARS};

static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(PHONE_PATTERN).expect("the phone pattern is valid"));

/// `first_name`, `last_name`: at most 100 characters, no control characters.
pub fn name(value: &str) -> Result<(), &'static str> {
    if value.chars().count() > NAME_MAX_CHARS {
        return Err("must be at most 100 characters");
    }
    no_control_chars(value)
}

/// `phone_number`: E.164.
pub fn phone_number(value: &str) -> Result<(), &'static str> {
    if PHONE.is_match(value) {
        Ok(())
    } else {
        Err("must be an E.164 number such as +447911123456")
    }
}

/// `date_of_birth`: a date in the past.
pub fn date_of_birth(value: NaiveDate, today: NaiveDate) -> Result<(), &'static str> {
    if value < today {
        Ok(())
    } else {
        Err("must be in the past")
    }
}

/// `profile_picture_url`: an `https://` URL of at most 500 characters.
pub fn profile_picture_url(value: &str) -> Result<(), &'static str> {
    if value.chars().count() > URL_MAX_CHARS {
        return Err("must be at most 500 characters");
    }
    let rest = value
        .strip_prefix("https://")
        .ok_or("must be an https:// URL")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be an https:// URL");
    }
    Ok(())
}

/// `bio`: at most 500 characters.
pub fn bio(value: &str) -> Result<(), &'static str> {
    if value.chars().count() > BIO_MAX_CHARS {
        return Err("must be at most 500 characters");
    }
    if value.contains('\0') {
        return Err("must not contain NUL characters");
    }
    Ok(())
}

fn no_control_chars(value: &str) -> Result<(), &'static str> {
    if value.chars().any(char::is_control) {
        Err("must not contain control characters")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_rules_follow_the_contract() {
        assert!(name(&"x".repeat(100)).is_ok());
        assert!(name(&"x".repeat(101)).is_err());
        assert!(name("Al\0ice").is_err());
        assert!(phone_number("+447911123456").is_ok());
        assert!(phone_number("0123").is_err());
        assert!(phone_number("+1234567890123456").is_err());
        let today = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap_or_default();
        assert!(date_of_birth(today.pred_opt().unwrap_or_default(), today).is_ok());
        assert!(date_of_birth(today, today).is_err());
        assert!(profile_picture_url("https://cdn.example.com/a.png").is_ok());
        assert!(profile_picture_url("http://cdn.example.com/a.png").is_err());
        assert!(profile_picture_url("https://").is_err());
        assert!(bio(&"x".repeat(500)).is_ok());
        assert!(bio(&"x".repeat(501)).is_err());
    }
}

/// A partial update of the profile: an absent field is kept, `null` clears it.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::rules::name)]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::rules::name)]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::rules::phone_number)]
    pub phone_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub date_of_birth: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::rules::profile_picture_url)]
    pub profile_picture_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::rules::bio)]
    pub bio: Option<Option<String>>,
}

/// Tells a field given as `null` (Some(None)) from one left out (None);
/// use as `#[serde(default, deserialize_with = "present")]`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

impl ProfilePatch {
    /// Every broken field rule, each naming its field.
    pub fn validate(&self, today: NaiveDate) -> Vec<crate::error::FieldError> {
        use crate::error::FieldError;
        let mut errors = Vec::new();
        let mut check = |field: &str, result: Result<(), &'static str>| {
            if let Err(message) = result {
                errors.push(FieldError::new(field, message));
            }
        };
        if let Some(Some(v)) = &self.first_name {
            check("first_name", name(v));
        }
        if let Some(Some(v)) = &self.last_name {
            check("last_name", name(v));
        }
        if let Some(Some(v)) = &self.phone_number {
            check("phone_number", phone_number(v));
        }
        if let Some(Some(v)) = self.date_of_birth {
            check("date_of_birth", date_of_birth(v, today));
        }
        if let Some(Some(v)) = &self.profile_picture_url {
            check("profile_picture_url", profile_picture_url(v));
        }
        if let Some(Some(v)) = &self.bio {
            check("bio", bio(v));
        }
        errors
    }
}
