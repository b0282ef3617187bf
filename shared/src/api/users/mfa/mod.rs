//! `/v1/users/me/mfa*`: the caller's second factors. Enrol a TOTP factor
//! (the secret as an `otpauth://` URI and a QR code), confirm it with a
//! first code (which also gives the ten recovery codes, once), verify a
//! second factor for step-up, regenerate recovery codes and disable TOTP
//! (both step-ups themselves, in [`change`]).

pub(crate) mod change;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::{mfa as store, sessions};
use crate::error::{Error, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::mail::templates;
use crate::mfa::{AMR_PASSWORD, AMR_SECOND_FACTOR, Presented, amr, recovery, totp};
use crate::security::Me;
use crate::security::rate_limit::{self, Limit};
use crate::session::{confirm_password, step_up, verify_for_step_up};
use crate::state::AppState;

/// How long a started TOTP enrolment waits for its first code.
pub const ENROLMENT_TTL_MINUTES: i64 = 15;

/// The caller's second factors.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MfaStatus {
    /// Confirmed factors, oldest first (never their secrets).
    pub factors: Vec<store::Factor>,
    /// Recovery codes not used yet.
    pub recovery_codes_left: i64,
}

/// A started TOTP enrolment: show the QR code (or the URI / secret for
/// manual entry), then confirm with a code.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TotpEnrolment {
    pub factor_id: uuid::Uuid,
    /// `otpauth://totp/…` with the secret, SHA1, 6 digits, 30 s.
    pub otpauth_uri: String,
    /// The secret in base32, for typing into an app.
    pub secret: String,
    /// The URI as a QR code: an SVG document.
    pub qr_svg: String,
    /// Seconds left to confirm.
    pub expires_in: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmation {
    /// The 6-digit code the app shows now.
    #[schema(pattern = r"^\s*\d(\s?\d){5}\s*$")]
    pub code: String,
    /// The account's password: changing how the account is signed in to
    /// needs full re-authentication (a stolen session alone must not bind
    /// a thief's authenticator).
    #[schema(schema_with = crate::domain::rules::password)]
    pub current_password: String,
}

/// A second factor: exactly one of `code` (TOTP), `recovery_code` and
/// `webauthn` (a passkey's assertion to POST /v1/users/me/mfa/webauthn/start's
/// challenge).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorRequest {
    #[schema(max_length = 20)]
    pub code: Option<String>,
    #[schema(max_length = 40)]
    pub recovery_code: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub webauthn: Option<serde_json::Value>,
}

/// New recovery codes, shown this once.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// TOTP enabled: the recovery codes (shown this once) and an access token
/// of this session that says `mfa`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TotpEnabled {
    pub recovery_codes: Vec<String>,
    pub access_token: String,
    pub expires_in: u64,
}

/// A step-up verified: a new access token of this session (its `amr` says
/// `mfa`); sensitive changes are allowed for `STEP_UP_MAX_AGE_SECONDS`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepUp {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub amr: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/v1/users/me/mfa",
    tag = "users",
    summary = "My second factors",
    security(("bearer" = [])),
    responses((status = 200, description = "Factors and recovery codes left", body = MfaStatus))
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    Me { user, .. }: Me,
) -> Result<ApiJson<MfaStatus>> {
    Ok(ApiJson(MfaStatus {
        factors: store::factors(&state.db.write, user.id).await?,
        recovery_codes_left: store::recovery_codes_left(&state.db.write, user.id).await?,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/users/me/mfa/totp",
    tag = "users",
    summary = "Start TOTP enrolment",
    description = "No body. Answers the secret as an otpauth:// URI and a QR code (SVG); confirm within 15 minutes with POST /v1/users/me/mfa/totp/confirm. A new start replaces an unconfirmed one; 409 `conflict` when TOTP is already enabled.",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Enrolment started", body = TotpEnrolment),
        (status = 409, description = "TOTP is already enabled (conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited per user; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start_totp(
    State(state): State<AppState>,
    Me { user, .. }: Me,
) -> Result<(StatusCode, ApiJson<TotpEnrolment>)> {
    rate_limit::hit(&state, Limit::MfaUser, &user.id.to_string()).await?;
    let secret = totp::new_secret().map_err(Error::Internal)?;
    let uri = totp::uri(&secret, &state.mfa.issuer, &user.email).map_err(Error::Internal)?;
    let qr_svg = totp::qr_svg(&uri).map_err(Error::Internal)?;
    let sealed = state
        .mfa
        .vault
        .seal(user.id, &secret)
        .map_err(Error::Internal)?;
    let factor_id = store::put_pending_totp(
        &state.db.write,
        user.id,
        "Authenticator app",
        &sealed.bytes,
        &sealed.key_id,
    )
    .await?
    .ok_or(Error::Conflict(TOTP_ENABLED))?;
    let base32 = totp::secret_base32(&secret);
    Ok((
        StatusCode::CREATED,
        ApiJson(TotpEnrolment {
            factor_id,
            otpauth_uri: uri,
            secret: base32,
            qr_svg,
            expires_in: ENROLMENT_TTL_MINUTES * 60,
        }),
    ))
}

const TOTP_ENABLED: &str = "TOTP is already enabled; disable it first to enrol a new one.";
const NO_ENROLMENT: &str = "No TOTP enrolment is waiting (none started, or it expired): start one with POST /v1/users/me/mfa/totp.";
pub(crate) use crate::session::NO_FACTOR;

#[utoipa::path(
    post,
    path = "/v1/users/me/mfa/totp/confirm",
    tag = "users",
    summary = "Confirm TOTP enrolment",
    description = "Enables TOTP with a first code and the account's current password (a wrong one answers 401 `invalid_credentials` and counts toward the lockout), answers the ten recovery codes (this once), ends every other session of the user, marks this session as verified with a second factor, and tells the user by mail.",
    request_body = TotpConfirmation,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "TOTP enabled", body = TotpEnabled),
        (status = 409, description = "No enrolment waiting, or TOTP already enabled (conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 423, description = "Too many wrong passwords (here or at login); Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited per user; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn confirm_totp(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Me { auth, user }: Me,
    ApiJson(body): ApiJson<TotpConfirmation>,
) -> Result<ApiJson<TotpEnabled>> {
    let codes = recovery::generate().map_err(Error::Internal)?;
    let hashes: Vec<String> = codes.iter().filter_map(|c| recovery::hash(c)).collect();
    let attempt =
        confirm_password(&state, &meta, Limit::MfaUser, &user, &body.current_password).await?;
    let mut tx = state.db.write.begin().await?;
    // The user's row first (as every change takes it), the password
    // settled: whatever comes next, the right password does not count.
    step_up(&state, &mut tx, &auth, &user, attempt).await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    let factor = store::totp_for_update(&mut *tx, user.id).await?;
    let refusal = match &factor {
        None => Some(Error::Conflict(NO_ENROLMENT)),
        Some(f) if f.confirmed => Some(Error::Conflict(TOTP_ENABLED)),
        Some(f) if Utc::now() - f.created_at > Duration::minutes(ENROLMENT_TTL_MINUTES) => {
            Some(Error::Conflict(NO_ENROLMENT))
        }
        Some(f)
            if !state
                .mfa
                .accept_totp(&mut tx, user.id, f, &body.code)
                .await? =>
        {
            Some(Error::field(
                "code",
                "wrong code: enter the code the app shows now",
            ))
        }
        Some(_) => None,
    };
    if let Some(refusal) = refusal {
        tx.commit().await?;
        return Err(refusal);
    }
    let factor_id = factor.map(|f| f.id);
    store::replace_recovery_codes(&mut *tx, user.id, &hashes).await?;
    // An older session, perhaps someone else's, must not outlive the
    // account's new protection.
    sessions::revoke_user_sessions(&mut tx, user.id, Some(auth.session_id)).await?;
    let amr = amr(&[AMR_PASSWORD, AMR_SECOND_FACTOR]);
    if !store::mark_session_verified(&mut *tx, auth.session_id, &amr).await? {
        return Err(Error::Unauthorized);
    }
    let mut event = AuditEvent::about_user(AuditAction::MfaEnabled, Some(user.id));
    event.new_values = Some(json!({"type": "totp", "factor_id": factor_id}));
    audit::record(&mut *tx, &meta.audit(None), &event).await?;
    tx.commit().await?;
    let mail = templates::mfa_changed(&user.email, "turned on (an authenticator app)");
    state.mailer.deliver(mail).await;
    let access_token = state
        .keys
        .issue(user.id, auth.session_id, &amr)
        .map_err(Error::Internal)?;
    Ok(ApiJson(TotpEnabled {
        recovery_codes: codes,
        access_token,
        expires_in: state.keys.ttl().as_secs(),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/users/me/mfa/verify",
    operation_id = "verify_second_factor",
    tag = "users",
    summary = "Verify a second factor (step-up)",
    description = "Exactly one of `code` (TOTP) and `recovery_code`. Wrong answers count toward the login lockout. Success marks this session as verified with a second factor for STEP_UP_MAX_AGE_SECONDS and answers a new access token whose `amr` says `mfa`.",
    request_body = SecondFactorRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Verified", body = StepUp),
        (status = 409, description = "No second factor is enabled (conflict); nothing is counted", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 423, description = "Too many wrong answers (here or at login); Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited per user; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Me { auth, .. }: Me,
    ApiJson(body): ApiJson<SecondFactorRequest>,
) -> Result<ApiJson<StepUp>> {
    let presented = Presented::from_fields(body.code, body.recovery_code, body.webauthn)?;
    let (access_token, amr) = verify_for_step_up(&state, &meta, &auth, &presented).await?;
    Ok(ApiJson(StepUp {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.keys.ttl().as_secs(),
        amr,
    }))
}
