//! Fixed-window rate limits per endpoint and identifier (client IP, login,
//! e-mail). Redis when configured (INCR and EXPIRE in one round trip), else,
//! or while Redis is down, the `rate_limits` table (one upsert).

use chrono::{DateTime, TimeZone, Utc};

use crate::cache::Cache;
use crate::db::{Db, rate_limits};
use crate::error::Error;
use crate::security::opaque;
use crate::state::AppState;

/// A rate-limited action and what its count is kept per (the client's IP
/// unless the name says otherwise). Limits are per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Register,
    /// Registrations per e-mail address.
    RegisterEmail,
    Login,
    /// Logins per account, however it is named.
    LoginAccount,
    Refresh,
    Logout,
    PasswordForgot,
    /// Reset requests per e-mail address.
    PasswordForgotEmail,
    PasswordReset,
    EmailVerify,
    /// Per user.
    EmailResend,
    /// Per user, as are the other step-ups.
    PasswordChange,
    EmailChange,
    AccountDelete,
    /// Second-factor answers of a two-step login, per client IP.
    MfaVerify,
    /// Second-factor answers of a signed-in user (enrolment, step-up), per user.
    MfaUser,
    /// Phone verification codes sent and tried, per user.
    PhoneVerify,
}

impl Limit {
    pub const ALL: [Limit; 17] = [
        Limit::Register,
        Limit::RegisterEmail,
        Limit::Login,
        Limit::LoginAccount,
        Limit::Refresh,
        Limit::Logout,
        Limit::PasswordForgot,
        Limit::PasswordForgotEmail,
        Limit::PasswordReset,
        Limit::EmailVerify,
        Limit::EmailResend,
        Limit::PasswordChange,
        Limit::EmailChange,
        Limit::AccountDelete,
        Limit::MfaVerify,
        Limit::MfaUser,
        Limit::PhoneVerify,
    ];

    /// The counter's name (in Redis keys and `rate_limits.endpoint`) and
    /// the variable overriding `RATE_LIMIT_PER_MINUTE` for it (a per-address
    /// or per-account limit shares its endpoint's).
    pub fn names(self) -> (&'static str, &'static str) {
        match self {
            Limit::Register => ("register", "RATE_LIMIT_REGISTER_PER_MINUTE"),
            Limit::RegisterEmail => ("register-email", "RATE_LIMIT_REGISTER_PER_MINUTE"),
            Limit::Login => ("login", "RATE_LIMIT_LOGIN_PER_MINUTE"),
            Limit::LoginAccount => ("login-account", "RATE_LIMIT_LOGIN_PER_MINUTE"),
            Limit::Refresh => ("refresh", "RATE_LIMIT_REFRESH_PER_MINUTE"),
            Limit::Logout => ("logout", "RATE_LIMIT_LOGOUT_PER_MINUTE"),
            Limit::PasswordForgot => ("password-forgot", "RATE_LIMIT_PASSWORD_FORGOT_PER_MINUTE"),
            Limit::PasswordForgotEmail => (
                "password-forgot-email",
                "RATE_LIMIT_PASSWORD_FORGOT_PER_MINUTE",
            ),
            Limit::PasswordReset => ("password-reset", "RATE_LIMIT_PASSWORD_RESET_PER_MINUTE"),
            Limit::EmailVerify => ("email-verify", "RATE_LIMIT_EMAIL_VERIFY_PER_MINUTE"),
            Limit::EmailResend => ("email-resend", "RATE_LIMIT_EMAIL_RESEND_PER_MINUTE"),
            Limit::PasswordChange => ("password-change", "RATE_LIMIT_PASSWORD_CHANGE_PER_MINUTE"),
            Limit::EmailChange => ("email-change", "RATE_LIMIT_EMAIL_CHANGE_PER_MINUTE"),
            Limit::AccountDelete => ("account-delete", "RATE_LIMIT_ACCOUNT_DELETE_PER_MINUTE"),
            Limit::MfaVerify => ("mfa-verify", "RATE_LIMIT_MFA_VERIFY_PER_MINUTE"),
            Limit::MfaUser => ("mfa-user", "RATE_LIMIT_MFA_USER_PER_MINUTE"),
            Limit::PhoneVerify => ("phone-verify", "RATE_LIMIT_PHONE_VERIFY_PER_MINUTE"),
        }
    }
}

/// Counts one `limit` request of `identifier` in the current minute:
/// `Err(RateLimited)` past the configured limit.
pub async fn hit(state: &AppState, limit: Limit, identifier: &str) -> Result<(), Error> {
    check(
        state.cache.as_ref(),
        &state.db,
        limit.names().0,
        identifier,
        state.config.rate_limit_for(limit),
        60,
    )
    .await
}

/// Identifiers longer than this (in bytes) are stored as their SHA-256: a
/// login of 255 'İ' lower-cases to 510 characters, more than the column holds.
const MAX_IDENTIFIER_BYTES: usize = 128;

/// The key under which `identifier` is counted: itself, or its hash when long.
fn key_of(identifier: &str) -> std::borrow::Cow<'_, str> {
    if identifier.len() > MAX_IDENTIFIER_BYTES {
        format!("sha256:{}", opaque::hash(identifier)).into()
    } else {
        identifier.into()
    }
}

/// Counts one request; `Err(RateLimited)` when the window's `limit` is exceeded.
pub async fn check(
    cache: Option<&Cache>,
    db: &Db,
    endpoint: &str,
    identifier: &str,
    limit: u32,
    window_secs: i64,
) -> Result<(), Error> {
    let identifier = &*key_of(identifier);
    let now = Utc::now().timestamp();
    let start = now - now.rem_euclid(window_secs);
    let retry_after = (start + window_secs - now).max(1) as u64;
    let count = match count_in_redis(cache, endpoint, identifier, start, window_secs).await {
        Some(count) => count,
        None => {
            let window_start: DateTime<Utc> = Utc
                .timestamp_opt(start, 0)
                .single()
                .unwrap_or_else(Utc::now);
            let window_end = window_start + chrono::Duration::seconds(window_secs);
            i64::from(
                rate_limits::hit(&db.write, identifier, endpoint, window_start, window_end).await?,
            )
        }
    };
    if count > i64::from(limit) {
        return Err(Error::RateLimited {
            retry_after_secs: retry_after,
        });
    }
    Ok(())
}

async fn count_in_redis(
    cache: Option<&Cache>,
    endpoint: &str,
    identifier: &str,
    start: i64,
    window_secs: i64,
) -> Option<i64> {
    let cache = cache?;
    let key = format!("rate:{endpoint}:{identifier}:{start}");
    let result: redis::RedisResult<i64> = async {
        let mut conn = cache.conn().await?;
        let (count, _): (i64, bool) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .expire(&key, window_secs + 1)
            .query_async(&mut conn)
            .await?;
        Ok(count)
    }
    .await;
    match result {
        Ok(count) => Some(count),
        Err(err) => {
            tracing::warn!(error = %err, "Redis unavailable; rate limiting in PostgreSQL");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_identifiers_are_hashed_to_a_bounded_key() {
        assert_eq!(key_of("alice@example.com"), "alice@example.com");
        let long = "i\u{307}".repeat(255);
        let key = key_of(&long);
        assert!(key.starts_with("sha256:") && key.len() <= 80, "{key}");
        assert_ne!(key_of(&"a".repeat(200)), key_of(&"b".repeat(200)));
    }
}
