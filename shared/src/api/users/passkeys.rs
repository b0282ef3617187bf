//! `/v1/users/me/passkeys*`: the caller's passkeys. Register one (a
//! challenge, then the authenticator's answer with the current password),
//! list, rename and delete them, and start a passkey step-up (answered at
//! `POST /v1/users/me/mfa/verify`).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;
use webauthn_rs::prelude::PasskeyRegistration;

use super::account::PasswordConfirmation;
use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::passkeys::{self as passkey_store, PasskeyInfo};
use crate::db::{mfa as store, sessions};
use crate::error::{Error, Result};
use crate::http::{ApiJson, PathOf, RequestMeta};
use crate::mail::templates;
use crate::mfa::ceremony::{self, CEREMONY_TTL_SECONDS, Ceremony};
use crate::mfa::passkeys::{self, MAX_PASSKEYS, Stored};
use crate::mfa::{amr, recovery};
use crate::security::Me;
use crate::security::rate_limit::{self, Limit};
use crate::session::{reauthenticate, require_recent_second_factor};
use crate::state::AppState;

/// The options of a ceremony, for the browser.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PasskeyOptions {
    /// `{"publicKey": {…}}` for `navigator.credentials.create` (registration)
    /// or `.get` (step-up); binary fields are base64url (decode them, or
    /// use `PublicKeyCredential.parseCreationOptionsFromJSON` /
    /// `parseRequestOptionsFromJSON`).
    #[schema(value_type = Object)]
    pub options: Value,
    /// Seconds left to answer.
    pub expires_in: i64,
}

/// The authenticator's answer to a registration challenge.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRegistrationRequest {
    /// The `PublicKeyCredential` `navigator.credentials.create` gave, as
    /// JSON (`credential.toJSON()`): `id`, `rawId`, `type` and
    /// `response.{attestationObject, clientDataJSON}` in base64url.
    #[schema(value_type = Object)]
    pub credential: Value,
    /// What to call it (default `Passkey`); 1 to 100 characters.
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// The account's password: adding a way in needs full
    /// re-authentication (a stolen session alone must not add a thief's
    /// passkey).
    #[schema(schema_with = crate::domain::rules::password)]
    pub current_password: String,
}

/// A passkey registered: the recovery codes when it is the account's first
/// second factor (shown this once), and an access token of this session
/// that says `mfa`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PasskeyRegistered {
    pub passkey: PasskeyInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
    pub access_token: String,
    pub expires_in: u64,
}

/// The caller's passkeys.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PasskeyList {
    /// Oldest first; never a key.
    pub passkeys: Vec<PasskeyInfo>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRename {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

const NO_REGISTRATION: &str = "No passkey registration is waiting in this session (none started, it expired, or it was answered): start one with POST /v1/users/me/passkeys/register/start.";
const ALREADY_REGISTERED: &str = "This passkey is registered already.";
const TOO_MANY: &str = "The account holds the most passkeys it may (20): delete one first.";
const NO_PASSKEY: &str = "No passkey is registered.";

/// A passkey's name: trimmed, 1 to 100 characters, no control or
/// invisible formatting characters (bidirectional overrides, zero-width
/// characters), which could make a name in a listing read as something else.
fn passkey_name(raw: Option<String>) -> Result<String> {
    let name = raw.as_deref().map_or("Passkey", str::trim);
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{061c}' | '\u{00ad}')
    };
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(invisible) {
        return Err(Error::field(
            "name",
            "must be 1 to 100 characters without control or invisible formatting characters",
        ));
    }
    Ok(name.to_string())
}

/// The stored `Passkey`s of the user.
async fn passkeys_of(
    conn: impl sqlx::PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Vec<webauthn_rs::prelude::Passkey>> {
    passkey_store::credentials(conn, user_id)
        .await?
        .iter()
        .map(|c| passkeys::passkey_of(&c.credential))
        .collect()
}

#[utoipa::path(
    post,
    path = "/v1/users/me/passkeys/register/start",
    operation_id = "start_passkey_registration",
    tag = "users",
    summary = "Start registering a passkey",
    description = "No body. Answers the options for `navigator.credentials.create` (user verification required, a discoverable credential preferred, the caller's passkeys excluded); answer within 5 minutes with POST /v1/users/me/passkeys/register/finish in this session. A new start replaces the one before.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Registration started", body = PasskeyOptions),
        (status = 409, description = "The account holds 20 passkeys already (conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited per user; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start_registration(
    State(state): State<AppState>,
    Me { auth, user }: Me,
) -> Result<ApiJson<PasskeyOptions>> {
    rate_limit::hit(&state, Limit::MfaUser, &user.id.to_string()).await?;
    let existing = passkeys_of(&state.db.write, user.id).await?;
    if existing.len() as i64 >= MAX_PASSKEYS {
        return Err(Error::Conflict(TOO_MANY));
    }
    let display = match (&user.first_name, &user.last_name) {
        (Some(first), Some(last)) => format!("{first} {last}"),
        (Some(name), None) | (None, Some(name)) => name.clone(),
        (None, None) => user.username.clone(),
    };
    let (options, challenge) = passkeys::start_registration(
        &state.mfa.webauthn,
        user.id,
        &user.email,
        &display,
        &existing,
    )?;
    let ceremony = Ceremony::Register(auth.session_id);
    ceremony::put(&state, ceremony, Some(user.id), &challenge).await?;
    Ok(ApiJson(PasskeyOptions {
        options,
        expires_in: i64::from(CEREMONY_TTL_SECONDS),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/users/me/passkeys/register/finish",
    operation_id = "finish_passkey_registration",
    tag = "users",
    summary = "Finish registering a passkey",
    description = "The authenticator's answer and the account's current password (a wrong one answers 401 `invalid_credentials` and counts toward the lockout); a user who already has a second factor also needs one verified in this session within STEP_UP_MAX_AGE_SECONDS (else 403 `mfa_required`). The challenge is spent by this answer, right or wrong. For the account's first second factor, answers the ten recovery codes (this once) and ends every other session. Marks this session as verified with a second factor; tells the user by mail.",
    request_body = PasskeyRegistrationRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Passkey registered", body = PasskeyRegistered),
        (status = 409, description = "No registration waiting, the passkey is registered already, or the account holds 20 (conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 423, description = "Too many wrong passwords (here or at login); Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited per user; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn finish_registration(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Me { auth, user }: Me,
    ApiJson(body): ApiJson<PasskeyRegistrationRequest>,
) -> Result<(StatusCode, ApiJson<PasskeyRegistered>)> {
    let name = passkey_name(body.name)?;
    let answer = passkeys::registration_answer("credential", body.credential)?;
    let codes = recovery::generate().map_err(Error::Internal)?;
    let hashes: Vec<String> = codes.iter().filter_map(|c| recovery::hash(c)).collect();
    // A missing step-up refuses before anything is spent or counted.
    require_recent_second_factor(&state, &state.db.write, &auth).await?;
    // Taken next (one answer per challenge, whatever follows), and before
    // the transaction holds the user's row: never two connections at once.
    let challenge: Option<PasskeyRegistration> =
        ceremony::take(&state, Ceremony::Register(auth.session_id)).await?;
    let mut tx = reauthenticate(
        &state,
        &meta,
        Limit::MfaUser,
        &auth,
        &user,
        &body.current_password,
    )
    .await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    // From here on the password was right: its attempt is settled (the
    // transaction commits) whatever else refuses.
    let Some(challenge) = challenge else {
        tx.commit().await?;
        return Err(Error::Conflict(NO_REGISTRATION));
    };
    let Ok(passkey) = state
        .mfa
        .webauthn
        .finish_passkey_registration(&answer, &challenge)
    else {
        tx.commit().await?;
        return Err(Error::field(
            "credential",
            "does not verify against the registration started (another challenge, origin or relying party, or no user verification): start again",
        ));
    };
    if passkey_store::count(&mut *tx, user.id).await? >= MAX_PASSKEYS {
        tx.commit().await?;
        return Err(Error::Conflict(TOO_MANY));
    }
    let first = !store::has_factor(&mut *tx, user.id).await?;
    let stored = Stored::of(&passkey)?;
    let Some(info) = passkey_store::insert(&mut *tx, user.id, &name, &stored).await? else {
        tx.commit().await?;
        return Err(Error::Conflict(ALREADY_REGISTERED));
    };
    let recovery_codes = if first {
        store::replace_recovery_codes(&mut *tx, user.id, &hashes).await?;
        // An older session, perhaps someone else's, must not outlive the
        // account's new protection.
        sessions::revoke_user_sessions(&mut tx, user.id, Some(auth.session_id)).await?;
        Some(codes)
    } else {
        None
    };
    let held: Vec<&str> = auth.amr.iter().map(String::as_str).collect();
    let amr = amr(&[&held, passkeys::AMR_PASSKEY]);
    if !store::mark_session_verified(&mut *tx, auth.session_id, &amr).await? {
        return Err(Error::Unauthorized);
    }
    let mut event = AuditEvent::about_user(AuditAction::MfaEnabled, Some(user.id));
    event.new_values = Some(json!({"type": "webauthn", "factor_id": info.id, "name": info.name}));
    audit::record(&mut *tx, &meta.audit(None), &event).await?;
    tx.commit().await?;
    // The name is the caller's text: not repeated in the owner's alert.
    let mail = templates::mfa_changed(&user.email, "given a new passkey");
    state.mailer.deliver(mail).await;
    let access_token = state
        .keys
        .issue(user.id, auth.session_id, &amr)
        .map_err(Error::Internal)?;
    Ok((
        StatusCode::CREATED,
        ApiJson(PasskeyRegistered {
            passkey: info,
            recovery_codes,
            access_token,
            expires_in: state.keys.ttl().as_secs(),
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/users/me/passkeys",
    operation_id = "list_passkeys",
    tag = "users",
    summary = "My passkeys",
    security(("bearer" = [])),
    responses((status = 200, description = "Passkeys, oldest first", body = PasskeyList))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Me { user, .. }: Me,
) -> Result<ApiJson<PasskeyList>> {
    Ok(ApiJson(PasskeyList {
        passkeys: passkey_store::list(&state.db.write, user.id).await?,
    }))
}

#[utoipa::path(
    patch,
    path = "/v1/users/me/passkeys/{id}",
    operation_id = "rename_passkey",
    tag = "users",
    summary = "Rename one of my passkeys",
    params(("id" = String, Path, description = "Passkey id (UUID)")),
    request_body = PasskeyRename,
    security(("bearer" = [])),
    responses((status = 200, description = "Renamed", body = PasskeyInfo))
)]
pub(crate) async fn rename(
    State(state): State<AppState>,
    Me { user, .. }: Me,
    PathOf(id): PathOf<Uuid>,
    ApiJson(body): ApiJson<PasskeyRename>,
) -> Result<ApiJson<PasskeyInfo>> {
    let name = passkey_name(Some(body.name))?;
    passkey_store::rename(&state.db.write, user.id, id, &name)
        .await?
        .map(ApiJson)
        .ok_or(Error::NotFound)
}

#[utoipa::path(
    delete,
    path = "/v1/users/me/passkeys/{id}",
    operation_id = "delete_passkey",
    tag = "users",
    summary = "Delete one of my passkeys",
    description = "Step-up: the current password (a wrong one counts toward the lockout) and a second factor verified in this session within STEP_UP_MAX_AGE_SECONDS (else 403 `mfa_required`, before the password is looked at). With the last factor gone, the recovery codes go too; the owner is told by mail.",
    params(("id" = String, Path, description = "Passkey id (UUID)")),
    request_body = PasswordConfirmation,
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted"))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Me { auth, user }: Me,
    PathOf(id): PathOf<Uuid>,
    ApiJson(body): ApiJson<PasswordConfirmation>,
) -> Result<StatusCode> {
    let mut tx =
        reauthenticate(&state, &meta, Limit::MfaUser, &auth, &user, &body.password).await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    if !passkey_store::delete(&mut *tx, user.id, id).await? {
        // The password was right: its attempt is settled all the same.
        tx.commit().await?;
        return Err(Error::NotFound);
    }
    if !store::has_factor(&mut *tx, user.id).await? {
        store::delete_all(&mut *tx, user.id).await?;
    }
    let mut event = AuditEvent::about_user(AuditAction::MfaDisabled, Some(user.id));
    event.new_values = Some(json!({"type": "webauthn", "factor_id": id}));
    audit::record(&mut *tx, &meta.audit(None), &event).await?;
    tx.commit().await?;
    let mail = templates::mfa_changed(&user.email, "changed: a passkey was removed");
    state.mailer.deliver(mail).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/users/me/mfa/webauthn/start",
    operation_id = "start_passkey_step_up",
    tag = "users",
    summary = "Start a passkey step-up",
    description = "No body. Answers the options for `navigator.credentials.get` over the caller's passkeys; send the assertion within 5 minutes as `{\"webauthn\": …}` to POST /v1/users/me/mfa/verify in this session. A new start replaces the one before.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Challenge", body = PasskeyOptions),
        (status = 409, description = "No passkey is registered (conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited per user; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start_step_up(
    State(state): State<AppState>,
    Me { auth, user }: Me,
) -> Result<ApiJson<PasskeyOptions>> {
    rate_limit::hit(&state, Limit::MfaUser, &user.id.to_string()).await?;
    let keys = passkeys_of(&state.db.write, user.id).await?;
    if keys.is_empty() {
        return Err(Error::Conflict(NO_PASSKEY));
    }
    let (options, challenge) = passkeys::start_authentication(&state.mfa.webauthn, &keys)?;
    ceremony::put(
        &state,
        Ceremony::StepUp(auth.session_id),
        Some(user.id),
        &challenge,
    )
    .await?;
    Ok(ApiJson(PasskeyOptions {
        options,
        expires_in: i64::from(CEREMONY_TTL_SECONDS),
    }))
}
