//! The field rules the server enforces, stated once: the domain types check
//! these constants, and openapi.json states them as JSON Schema (each
//! request field names its builder with `#[schema(schema_with = ...)]`), so
//! a generated client validates as the server does. What JSON Schema cannot
//! say (guessability, a date in the past) is left to the 422 the operation
//! documents.

use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};

/// Usernames: 3–50 of these characters.
pub const USERNAME_CHARS: (usize, usize) = (3, 50);
pub const USERNAME_PATTERN: &str = "^[A-Za-z0-9_.-]+$";
/// E-mail addresses (after trimming and lower-casing).
pub const EMAIL_MAX_CHARS: usize = 255;
pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$";
/// New passwords: 8–128 characters (then composition and guessability).
pub const NEW_PASSWORD_CHARS: (usize, usize) = (8, 128);
/// A password as typed at login or to confirm a change: 1–128 characters.
pub const PASSWORD_MAX_CHARS: usize = 128;
/// Logins (username or e-mail), trimmed: 1–255 characters.
pub const LOGIN_MAX_CHARS: usize = 255;
/// Device fingerprints: at most 255 characters, no NUL.
pub const FINGERPRINT_MAX_CHARS: usize = 255;
/// `first_name`, `last_name`: at most 100 characters, no control characters.
pub const NAME_MAX_CHARS: usize = 100;
/// E.164 phone numbers.
pub const PHONE_PATTERN: &str = r"^\+?[1-9][0-9]{1,14}$";
/// `profile_picture_url`: an https:// URL with a host, no whitespace or
/// control characters, at most 500 characters.
pub const URL_MAX_CHARS: usize = 500;
/// `bio`: at most 500 characters, no NUL.
pub const BIO_MAX_CHARS: usize = 500;
/// Role names: 1–50 of these characters.
pub const ROLE_NAME_CHARS: (usize, usize) = (1, 50);
pub const ROLE_NAME_PATTERN: &str = "^[A-Za-z0-9_.:-]+$";

/// No control character (Unicode category Cc, as `char::is_control`).
const NO_CONTROL: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
/// No NUL: no string of a request body may hold one (`http::json`);
/// `openapi.rs` states this on every body string without a pattern of its
/// own, so the builders here leave it out.
pub const NO_NUL: &str = r"^[^\u0000]*$";
/// No NUL, and at least one character that is not whitespace (what
/// trimming keeps).
const NOT_BLANK: &str = r"^[^\u0000]*[^\s\u0085\u0000][^\u0000]*$";

fn string(min: usize, max: usize, pattern: Option<&str>, nullable: bool) -> Object {
    let kind = match nullable {
        true => SchemaType::from_iter([Type::String, Type::Null]),
        false => SchemaType::Type(Type::String),
    };
    ObjectBuilder::new()
        .schema_type(kind)
        .min_length((min > 0).then_some(min))
        .max_length(Some(max))
        .pattern(pattern)
        .build()
}

pub fn username() -> Object {
    string(
        USERNAME_CHARS.0,
        USERNAME_CHARS.1,
        Some(USERNAME_PATTERN),
        false,
    )
}

pub fn email() -> Object {
    string(1, EMAIL_MAX_CHARS, Some(EMAIL_PATTERN), false)
}

pub fn new_password() -> Object {
    string(NEW_PASSWORD_CHARS.0, NEW_PASSWORD_CHARS.1, None, false)
}

pub fn password() -> Object {
    string(1, PASSWORD_MAX_CHARS, None, false)
}

pub fn login() -> Object {
    string(1, LOGIN_MAX_CHARS, Some(NOT_BLANK), false)
}

pub fn fingerprint() -> Object {
    string(0, FINGERPRINT_MAX_CHARS, None, true)
}

pub fn name() -> Object {
    string(0, NAME_MAX_CHARS, Some(NO_CONTROL), true)
}

pub fn phone_number() -> Object {
    string(0, 16, Some(PHONE_PATTERN), true)
}

pub fn profile_picture_url() -> Object {
    let url = r"^https://[^/?#\s\u0000-\u001F\u007F-\u009F][^\s\u0000-\u001F\u007F-\u009F]*$";
    string(0, URL_MAX_CHARS, Some(url), true)
}

pub fn bio() -> Object {
    string(0, BIO_MAX_CHARS, None, true)
}

pub fn role_name() -> Object {
    string(
        ROLE_NAME_CHARS.0,
        ROLE_NAME_CHARS.1,
        Some(ROLE_NAME_PATTERN),
        false,
    )
}

pub fn new_role_name() -> Object {
    string(
        ROLE_NAME_CHARS.0,
        ROLE_NAME_CHARS.1,
        Some(ROLE_NAME_PATTERN),
        true,
    )
}

/// The permissions a role may grant: each one of `perm::ALL`.
pub fn permissions() -> utoipa::openapi::schema::Array {
    let permission = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(crate::security::perm::ALL.iter().copied()))
        .build();
    ArrayBuilder::new().items(permission).build()
}

/// Like [`permissions`], or null (an update that keeps them).
pub fn new_permissions() -> utoipa::openapi::schema::Array {
    let mut array = permissions();
    array.schema_type = SchemaType::from_iter([Type::Array, Type::Null]);
    array
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patterns_are_valid_regular_expressions() {
        for pattern in [
            USERNAME_PATTERN,
            EMAIL_PATTERN,
            PHONE_PATTERN,
            ROLE_NAME_PATTERN,
        ] {
            assert!(regex::Regex::new(pattern).is_ok(), "{pattern}");
        }
        let blank = regex::Regex::new(NOT_BLANK).ok();
        assert!(blank.as_ref().is_some_and(|r| r.is_match(" a ")));
        assert!(blank.as_ref().is_some_and(|r| !r.is_match(" \t\u{85}")));
        assert!(blank.as_ref().is_some_and(|r| !r.is_match("a\u{0}")));
        let control = regex::Regex::new(NO_CONTROL).ok();
        assert!(control.as_ref().is_some_and(|r| r.is_match("Zoë")));
        assert!(control.is_some_and(|r| !r.is_match("a\u{7}b")));
    }
}
