//! Logging in: the per-account rate limit, the lockout (counted before the
//! check), the password check in a hashing slot, and the session start under
//! the user's row lock, or, for an account with a second factor, the
//! one-time `mfa_token` that `POST /v1/auth/mfa/verify` completes.

use serde_json::json;

use super::{Issued, start};
use crate::db::audit::{self, AuditAction, AuditContext, AuditEvent};
use crate::db::{logins, mfa, passkeys as passkey_store, users};
use crate::domain::Password;
use crate::domain::user::User;
use crate::error::{Error, Result};
use crate::http::RequestMeta;
use crate::metrics::{self, Event};
use crate::mfa::ceremony::{self, Ceremony};
use crate::mfa::passkeys;
use crate::security::lockout::{self, Claimant};
use crate::security::opaque;
use crate::security::passwords::Verified;
use crate::security::rate_limit::{self, Limit};
use crate::state::AppState;

/// How long an `mfa_token` lives.
pub const MFA_TOKEN_TTL_SECONDS: i32 = 300;

/// What a right password gets.
#[derive(Debug)]
pub enum LoggedIn {
    /// A new session: its token pair and the user after the login.
    Session(Issued, Box<User>),
    /// The account has a second factor: the one-time token to present it
    /// with, and the methods the user can use.
    SecondFactor {
        mfa_token: String,
        methods: Vec<&'static str>,
        /// For a user with passkeys: the options of
        /// `navigator.credentials.get` whose answer completes the login.
        webauthn: Option<serde_json::Value>,
    },
}

/// Logs `login` (a username or an e-mail address, any case) in with
/// `password`: a new session and its token pair, and the user as it is
/// after the login, or the `mfa_token` of the second step. Every refusal of a wrong or unknown login is the same
/// 401 `invalid_credentials` after the same work; 423 while locked; 403
/// `account_disabled` for the right password of an account that may not
/// log in.
pub async fn log_in(
    state: &AppState,
    meta: &RequestMeta,
    login: &str,
    password: &Password,
    fingerprint: Option<&str>,
) -> Result<LoggedIn> {
    let ctx = meta.audit(None);
    // Logins are ASCII (usernames and e-mail addresses are): any other
    // string names no account, whatever PostgreSQL's lower() makes of it.
    let user = match login.is_ascii() {
        true => users::find_for_login(&state.db.write, login).await?,
        false => None,
    };
    // Per account, however it is named (username, e-mail, case).
    let account = user
        .as_ref()
        .map_or_else(|| login.to_lowercase(), |u| u.id.to_string());
    rate_limit::hit(state, Limit::LoginAccount, &account).await?;

    // The hashing slot first: a request refused for load (503) never
    // counts toward the lockout.
    let slot = state.hasher.slot().await?;
    let Some(user) = user else {
        // Same work, same answer as a wrong password: no enumeration. The
        // same writes (a counter row for the unknown login) and the same
        // hash, so the answer time tells nothing either.
        let attempt = lockout::reserve(state, Claimant::Unknown(login)).await?;
        state.hasher.verify_in(slot, password, None).await?;
        return Err(wrong(state, &ctx, None, attempt).await);
    };
    let attempt = lockout::reserve(state, Claimant::User(user.id)).await?;
    let verified = state
        .hasher
        .verify_in(slot, password, Some(&user.password_hash))
        .await?;
    if verified == Verified::No {
        return Err(wrong(state, &ctx, Some(user.id), attempt).await);
    }
    let rehash = match verified {
        Verified::YesRehash => Some(state.hasher.hash(password).await?),
        _ => None,
    };
    let (mut tx, status, rehash) =
        lock_checked(state, &ctx, &user, password, attempt, rehash).await?;
    let second_factor = mfa::has_factor(&mut *tx, user.id).await?;
    if second_factor {
        lockout::password_only(&mut tx, user.id, attempt).await?;
    } else {
        lockout::right_password(&mut tx, user.id, attempt).await?;
    }
    if !status.may_log_in(state.config.require_verified_email) {
        // The right password: the attempt does not count, the login fails.
        let mut event = AuditEvent::about_user(AuditAction::LoginFailed, Some(user.id));
        event.new_values = Some(json!({"reason": "account_disabled", "status": status}));
        audit::record(&mut *tx, &ctx, &event).await?;
        tx.commit().await?;
        return Err(Error::AccountDisabled);
    }
    if second_factor {
        if let Some(hash) = rehash.as_deref() {
            logins::store_rehash(&mut *tx, user.id, hash).await?;
        }
        let mfa_token = opaque::generate();
        let hash = opaque::hash(&mfa_token);
        mfa::insert_challenge(&mut *tx, &hash, user.id, MFA_TOKEN_TTL_SECONDS, fingerprint).await?;
        let kinds = mfa::factor_kinds(&mut *tx, user.id).await?;
        let mut methods = Vec::new();
        if kinds.iter().any(|k| k == "totp") {
            methods.push("totp");
        }
        let mut challenge = None;
        if kinds.iter().any(|k| k == "webauthn") {
            challenge = Some(passkey_challenge(state, &mut tx, user.id).await?);
            methods.push("webauthn");
        }
        if mfa::recovery_codes_left(&mut *tx, user.id).await? > 0 {
            methods.push("recovery_code");
        }
        tx.commit().await?;
        // Kept once the user's row lock is released: in PostgreSQL the
        // ceremony row references the user, which waits for that lock.
        let mut webauthn = None;
        if let Some((options, state_of_challenge)) = challenge {
            let ceremony = Ceremony::Login(&hash);
            ceremony::put(state, ceremony, Some(user.id), &state_of_challenge).await?;
            webauthn = Some(options);
        }
        return Ok(LoggedIn::SecondFactor {
            mfa_token,
            methods,
            webauthn,
        });
    }
    logins::record_successful_login(&mut *tx, user.id, rehash.as_deref()).await?;
    let amr = crate::mfa::amr(&[crate::mfa::AMR_PASSWORD]);
    let issued = start(state, &mut tx, user.id, meta, fingerprint, amr).await?;
    let mut event = AuditEvent::about_user(AuditAction::LoginSucceeded, Some(user.id));
    event.new_values = Some(json!({"session_id": issued.session_id}));
    audit::record(&mut *tx, &ctx, &event).await?;
    tx.commit().await?;

    metrics::count(Event::LoginSuccess);
    let user = users::find_live(&state.db.write, user.id)
        .await?
        .ok_or(Error::InvalidCredentials)?;
    Ok(LoggedIn::Session(issued, Box::new(user)))
}

/// A challenge over the user's passkeys, and its state.
async fn passkey_challenge(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    user_id: uuid::Uuid,
) -> Result<(
    serde_json::Value,
    webauthn_rs::prelude::PasskeyAuthentication,
)> {
    let keys = passkey_store::credentials(&mut *conn, user_id)
        .await?
        .iter()
        .map(|c| passkeys::passkey_of(&c.credential))
        .collect::<Result<Vec<_>>>()?;
    passkeys::start_authentication(&state.mfa.webauthn, &keys)
}

/// A wrong (or unknown) login, counted: the error to answer with.
async fn wrong(
    state: &AppState,
    ctx: &AuditContext,
    user: Option<uuid::Uuid>,
    attempt: Option<logins::Attempt>,
) -> Error {
    let reason = if user.is_some() {
        "wrong_password"
    } else {
        "unknown_login"
    };
    match lockout::wrong_password(state, ctx, user, attempt, reason, "info").await {
        Ok(refusal) => refusal,
        Err(err) => err,
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Takes the user's row lock (which a reset, suspension or delete also
/// takes): if one committed while the password was being checked, this
/// login loses. If the hash changed meanwhile (a reset, or a concurrent
/// login's rehash), the password is checked again against it, outside the
/// lock. Returns the open transaction, the status under the lock and the
/// rehash still to store.
async fn lock_checked(
    state: &AppState,
    ctx: &AuditContext,
    user: &User,
    password: &Password,
    attempt: Option<logins::Attempt>,
    mut rehash: Option<String>,
) -> Result<(Tx, crate::domain::UserStatus, Option<String>)> {
    let mut checked = user.password_hash.clone();
    for _ in 0..3 {
        let mut tx = state.db.write.begin().await?;
        audit::set_context(&mut *tx, ctx).await?;
        let current = logins::lock_for_login(&mut *tx, user.id)
            .await?
            .filter(|u| !u.deleted)
            .ok_or(Error::InvalidCredentials)?;
        if current.password_hash == checked {
            return Ok((tx, current.status, rehash));
        }
        tx.rollback().await?;
        rehash = None;
        let again = state
            .hasher
            .verify(password, Some(&current.password_hash))
            .await?;
        if again == Verified::No {
            return Err(wrong(state, ctx, Some(user.id), attempt).await);
        }
        checked = current.password_hash;
    }
    Err(Error::InvalidCredentials)
}
