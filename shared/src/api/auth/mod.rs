//! `/v1/auth/*` and `/.well-known/*`: registration, login, refresh-token
//! rotation, logout, password reset, e-mail verification, and the public
//! key documents. Every state change is audited in its own transaction.

pub(crate) mod email;
pub(crate) mod mfa;
pub(crate) mod passkey;
pub(crate) mod password;
pub use password::FORGOT_ANSWER_FLOOR;
pub(crate) mod register;
pub(crate) mod session;
pub(crate) mod well_known;

use axum::Router;
use axum::routing::{get, post};

use crate::db::one_time_tokens::{self, MailKind};
use crate::error::{Error, Result};
use crate::http::RequestMeta;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/auth/register", post(register::register))
        .route("/v1/auth/login", post(session::login))
        .route("/v1/auth/mfa/verify", post(mfa::verify))
        .route("/v1/auth/passkey/start", post(passkey::start))
        .route("/v1/auth/passkey/finish", post(passkey::finish))
        .route("/v1/auth/refresh", post(session::refresh))
        .route("/v1/auth/logout", post(session::logout))
        .route("/v1/auth/password/forgot", post(password::forgot_password))
        .route("/v1/auth/password/reset", post(password::reset_password))
        .route("/v1/auth/email/verify", post(email::verify_email))
        .route("/v1/auth/email/resend", post(email::resend_verification))
        .route("/.well-known/jwks.json", get(well_known::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(well_known::openid_configuration),
        )
}

fn client(meta: &RequestMeta) -> String {
    meta.ip
        .map_or_else(|| "unknown".into(), |ip| ip.to_string())
}

/// Bounds an optional client-supplied string (fingerprint) before storing it.
fn bounded(field: &str, value: Option<String>, max: usize) -> Result<Option<String>> {
    match value {
        Some(v) if v.chars().count() > max || v.contains('\0') => Err(Error::field(
            field,
            format!("must be at most {max} characters without NUL"),
        )),
        other => Ok(other),
    }
}

/// The per-address hourly cap of verification mails (registration, resend,
/// e-mail change, counted together; reset mails have their own): takes the
/// address's lock for the rest of `tx` and says whether one more may go.
/// Over the cap the request still succeeds, without a mail.
pub(crate) async fn verification_allowed(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    email: &str,
) -> Result<bool> {
    one_time_tokens::lock_mail_address(&mut *tx, MailKind::Verification, email).await?;
    let recent = one_time_tokens::recent_email_verifications(&mut *tx, email).await?;
    let allowed = recent < i64::from(state.config.verification_mails_per_hour);
    if !allowed {
        tracing::info!("verification mail cap reached; request answered without a mail");
    }
    Ok(allowed)
}
