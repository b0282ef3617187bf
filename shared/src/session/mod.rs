//! The life of a session, apart from HTTP: logging in ([`log_in`]: the
//! lockout, the password check, the row lock a concurrent reset also takes),
//! the first token pair of a session ([`start`]), rotation with reuse
//! detection in one statement ([`rotate`]), logout ([`end`]),
//! and the step-up check of sensitive changes ([`confirm_password`],
//! [`step_up`]). The `/v1/auth` and `/v1/users/me` handlers parse the
//! request, call one of these and shape the answer; tests call them directly.

mod login;
mod passkey;
mod rotation;
mod second_factor;
mod step_up;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::db::sessions;
use crate::error::{Error, Result};
use crate::http::RequestMeta;
use crate::security::opaque;
use crate::state::AppState;

pub use login::{LoggedIn, MFA_TOKEN_TTL_SECONDS, log_in};
pub use passkey::{log_in_with_passkey, start_passkey_login};
pub use rotation::{end, rotate};
pub use second_factor::{NO_FACTOR, SecondFactor, complete_login, verify_for_step_up};
pub use step_up::{confirm_password, reauthenticate, require_recent_second_factor, step_up};

/// A session's token pair as issued.
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    /// The opaque refresh token; only its hash is stored.
    pub refresh_token: String,
    /// Seconds the refresh token lives (fixed when it was made, so 14 days
    /// are 1209600, not a second less).
    pub refresh_expires_in: i64,
    pub session_id: Uuid,
}

/// The session a refresh token belongs to.
struct SessionOf {
    user_id: Uuid,
    session_id: Uuid,
    /// The session's absolute end; no refresh token outlives it.
    expires_at: DateTime<Utc>,
    /// RFC 8176 methods that authenticated it.
    amr: Vec<String>,
}

/// A new opaque refresh token of `session`, stored by its hash, living
/// `REFRESH_TOKEN_TTL_DAYS` but never past the session's end, and an access
/// token for the same session. (A rotation stores its successor under the
/// same rules in its own statement, queries/sessions/rotate.sql.)
async fn issue(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    session: &SessionOf,
    meta: &RequestMeta,
    fingerprint: Option<&str>,
) -> Result<Issued> {
    let now = Utc::now();
    let ttl = Duration::days(i64::from(state.config.refresh_token_ttl_days));
    let expires_at = (now + ttl).min(session.expires_at);
    let refresh_token = opaque::generate();
    sessions::insert(
        &mut *conn,
        &sessions::NewRefreshToken {
            user_id: session.user_id,
            session_id: session.session_id,
            token_hash: &opaque::hash(&refresh_token),
            expires_at,
            session_expires_at: session.expires_at,
            ip: meta.ip.map(|ip| ip.to_string()),
            user_agent: meta.user_agent.as_deref(),
            device_fingerprint: fingerprint,
            amr: &session.amr,
            mfa_verified_at: crate::mfa::has_second_factor(&session.amr).then_some(now),
        },
    )
    .await?;
    let access_token = state
        .keys
        .issue(session.user_id, session.session_id, &session.amr)
        .map_err(Error::Internal)?;
    let issued = Issued {
        access_token,
        refresh_token,
        refresh_expires_in: (expires_at - now).num_seconds().max(0),
        session_id: session.session_id,
    };
    Ok(issued)
}

/// Starts a session of `user_id`, authenticated by `amr`, in `conn`'s
/// transaction: a new session id, its absolute end (`SESSION_MAX_DAYS`) and
/// its first token pair.
async fn start(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    meta: &RequestMeta,
    fingerprint: Option<&str>,
    amr: Vec<String>,
) -> Result<Issued> {
    let session = SessionOf {
        user_id,
        session_id: Uuid::now_v7(),
        expires_at: Utc::now() + Duration::days(i64::from(state.config.session_max_days)),
        amr,
    };
    issue(state, conn, &session, meta, fingerprint).await
}
