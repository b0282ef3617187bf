//! The mails the service sends, each with its link into the front end
//! (`APP_BASE_URL`) and the lifetime of its one-time token.

use super::Mail;
use crate::config::Config;

/// Hours an e-mail verification token lives.
pub const VERIFICATION_TTL_HOURS: i64 = 24;
/// Hours a password-reset token lives.
pub const RESET_TTL_HOURS: i64 = 1;

/// `{APP_BASE_URL}/{page}?token={token}`.
fn link(config: &Config, page: &str, token: &str) -> String {
    let base = config.app_base_url.trim_end_matches('/');
    format!("{base}/{page}?token={token}")
}

/// The e-mail verification mail (registration, resend, e-mail change).
pub fn verification(config: &Config, to: &str, token: &str) -> Mail {
    Mail {
        to: to.to_string(),
        subject: "Verify your e-mail address".into(),
        text: format!(
            "Confirm this address by opening the link below (valid for {VERIFICATION_TTL_HOURS} hours):\n\n{}\n",
            link(config, "verify-email", token)
        ),
    }
}

/// The password-reset mail (forgot-password, or an admin's reset request).
pub fn password_reset(config: &Config, to: &str, token: &str) -> Mail {
    Mail {
        to: to.to_string(),
        subject: "Reset your password".into(),
        text: format!(
            "Choose a new password by opening the link below (valid for {RESET_TTL_HOURS} hour; \
             if you did not ask for this, ignore this mail):\n\n{}\n",
            link(config, "reset-password", token)
        ),
    }
}

/// A second factor was enabled, disabled or reset (`what` says which): a
/// change the owner should know about, with what to do if it was not them.
pub fn mfa_changed(to: &str, what: &str) -> Mail {
    Mail {
        to: to.to_string(),
        subject: "Two-step verification changed".into(),
        text: format!(
            "Two-step verification on your account was {what}.\n\n\
             If this was not you, reset your password now and contact support.\n"
        ),
    }
}

/// Someone who knew the password failed the second step often enough to
/// lock the account.
pub fn second_factor_failed(to: &str, locked_until: chrono::DateTime<chrono::Utc>) -> Mail {
    Mail {
        to: to.to_string(),
        subject: "Failed sign-in with your password".into(),
        text: format!(
            "Someone got past your password (or used one of your signed-in \
             sessions) but failed the second step several times. Your account is \
             locked until {} UTC.\n\n\
             If this was not you, reset your password and sign out everywhere.\n",
            locked_until.format("%Y-%m-%d %H:%M")
        ),
    }
}
