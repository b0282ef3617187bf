//! `POST /v1/users/me/phone/verify` and `/confirm`: proving the caller
//! holds their `phone_number` with a 6-digit code sent by SMS. Phone is a
//! verification channel, not a second factor (NIST SP 800-63B restricts
//! SMS as an authenticator).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::db::audit::{self, AuditAction, AuditEvent};
use crate::db::{logins, phone};
use crate::domain::UserView;
use crate::error::{Error, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::security::Me;
use crate::security::rate_limit::{self, Limit};
use crate::sms::Sms;
use crate::state::AppState;

/// Minutes a code lives.
pub const CODE_TTL_MINUTES: i32 = 10;
/// Wrong tries before a code dies.
pub const CODE_TRIES: i32 = 5;

/// A code is on its way.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodeSent {
    /// Seconds the code stays valid.
    pub expires_in: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneConfirmation {
    /// The 6-digit code of the SMS.
    #[schema(pattern = r"^\s*\d(\s?\d){5}\s*$")]
    pub code: String,
}

const NO_NUMBER: &str = "No phone number is set: PATCH /v1/users/me with phone_number first.";
const VERIFIED: &str = "The phone number is already verified.";
const TAKEN: &str = "Another account has verified this phone number.";

/// A number as the audit trail keeps it: its last two digits (the trail
/// outlives anonymisation, and the number may be someone else's).
fn redacted(number: &str) -> String {
    let digits: Vec<char> = number.chars().collect();
    let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
    format!("…{tail}")
}

/// The stored form of a code: hex SHA-256 of `"<id>:<code>"` (the row id
/// salts it).
fn code_hash(id: uuid::Uuid, code: &str) -> String {
    let digest = Sha256::digest(format!("{id}:{code}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_code() -> Result<String> {
    let mut bytes = [0u8; 4];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal(anyhow::anyhow!("the system random source failed")))?;
    // 2^32 mod 10^6 skews the low codes by less than 1 in 4,000.
    Ok(format!("{:06}", u32::from_le_bytes(bytes) % 1_000_000))
}

#[utoipa::path(
    post,
    path = "/v1/users/me/phone/verify",
    operation_id = "send_phone_code",
    tag = "users",
    summary = "Send a verification code to my phone number",
    description = "No body. Sends a 6-digit code by SMS to the caller's phone_number, which must start with + and the country code (valid 10 minutes, 5 tries; a newer code replaces it once sent). At most PHONE_CODES_PER_HOUR codes per number and per user per hour (429 with Retry-After), SMS_MAX_PER_HOUR for the whole service (503 with Retry-After). 409 `conflict` without a number, when it is already verified, or when another account has verified it.",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Code sent", body = CodeSent),
        (status = 409, description = "No number, already verified, or verified by another account (conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The number lacks + and the country code (validation_failed)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited per number or per user; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn send_code(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Me { user, .. }: Me,
) -> Result<(StatusCode, ApiJson<CodeSent>)> {
    rate_limit::hit(&state, Limit::PhoneVerify, &user.id.to_string()).await?;
    if let Some(ip) = meta.ip {
        rate_limit::hit(&state, Limit::PhoneVerify, &ip.to_string()).await?;
    }
    let number = user
        .phone_number
        .clone()
        .ok_or(Error::Conflict(NO_NUMBER))?;
    if user.is_phone_verified {
        return Err(Error::Conflict(VERIFIED));
    }
    if !number.starts_with('+') {
        // Without its country code a number is ambiguous, to SNS and to
        // the per-number cap alike.
        return Err(Error::field(
            "phone_number",
            "must start with + and the country code to receive a code",
        ));
    }
    let code = new_code()?;
    let id = uuid::Uuid::now_v7();
    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    logins::lock_for_login(&mut *tx, user.id).await?;
    phone::lock_number(&mut *tx, &number).await?;
    if phone::verified_elsewhere(&mut *tx, user.id, &number).await? {
        return Err(Error::Conflict(TAKEN));
    }
    let recent = phone::recent(&mut *tx, user.id, &number, CODE_TTL_MINUTES).await?;
    if recent.everyone >= i64::from(state.config.sms.max_per_hour) {
        tracing::error!("SMS_MAX_PER_HOUR reached: phone codes refused");
        return Err(Error::Busy {
            retry_after_secs: 300,
        });
    }
    let cap = i64::from(state.config.sms.codes_per_hour);
    if recent.to_number >= cap || recent.to_user >= cap {
        let retry = recent.oldest.map_or(60, |oldest| {
            (oldest + chrono::Duration::hours(1) - chrono::Utc::now())
                .num_seconds()
                .max(1)
        });
        return Err(Error::RateLimited {
            retry_after_secs: u64::try_from(retry).unwrap_or(60),
        });
    }
    let hash = code_hash(id, &code);
    phone::insert(&mut *tx, id, user.id, &number, &hash, CODE_TTL_MINUTES).await?;
    let mut event = AuditEvent::about_user(AuditAction::PhoneVerificationSent, Some(user.id));
    event.new_values = Some(json!({"phone_number": redacted(&number)}));
    audit::record(&mut *tx, &meta.audit(None), &event).await?;
    tx.commit().await?;
    let sms = Sms {
        to: number,
        text: format!(
            "{}: your verification code is {code}. It expires in {CODE_TTL_MINUTES} minutes. \
             Do not share it.",
            state.mfa.issuer
        ),
    };
    if let Err(err) = state.texter.send(&sms).await {
        // Unsent, the code is removed (it counts toward no cap) and the
        // code sent before it stays live.
        phone::remove(&state.db.write, id).await?;
        return Err(Error::Unavailable(err));
    }
    phone::supersede(&state.db.write, user.id, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(CodeSent {
            expires_in: i64::from(CODE_TTL_MINUTES) * 60,
        }),
    ))
}

#[utoipa::path(
    post,
    path = "/v1/users/me/phone/confirm",
    operation_id = "confirm_phone",
    tag = "users",
    summary = "Confirm my phone number with the code",
    description = "Sets is_phone_verified when the code is right and the number is still the one it was sent to. A wrong code: 422 (the code dies after 5 wrong tries); no live code (none sent, expired, used, dead, or the number changed since): 400 `invalid_token`.",
    request_body = PhoneConfirmation,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Verified: the caller", body = UserView),
        (status = 400, description = "No live code (invalid_token)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited per user; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn confirm(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    Me { auth, user }: Me,
    ApiJson(body): ApiJson<PhoneConfirmation>,
) -> Result<ApiJson<UserView>> {
    rate_limit::hit(&state, Limit::PhoneVerify, &user.id.to_string()).await?;
    let code = crate::mfa::totp::normalize(&body.code)
        .ok_or_else(|| Error::field("code", "must be the 6 digits of the SMS"))?;
    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    logins::lock_for_login(&mut *tx, user.id).await?;
    let live = phone::live_for_update(&mut *tx, user.id)
        .await?
        .ok_or(Error::InvalidToken)?;
    if user.phone_number.as_deref() != Some(live.phone_number.as_str()) {
        phone::spend(&mut *tx, live.id).await?;
        tx.commit().await?;
        return Err(Error::InvalidToken);
    }
    // Hashes are compared, not codes: how long the comparison takes says
    // nothing useful about the code.
    let right = code_hash(live.id, &code) == live.code_hash;
    if !right {
        let tries = phone::wrong_try(&mut *tx, live.id, CODE_TRIES).await?;
        tx.commit().await?;
        let left = (CODE_TRIES - tries).max(0);
        return Err(Error::field(
            "code",
            format!("wrong code; {left} tries left for this code"),
        ));
    }
    phone::spend(&mut *tx, live.id).await?;
    // Under the number's lock, as sends take it: one verified account per
    // number, even when two got codes before either confirmed.
    phone::lock_number(&mut *tx, &live.phone_number).await?;
    if phone::verified_elsewhere(&mut *tx, user.id, &live.phone_number).await? {
        tx.commit().await?;
        return Err(Error::Conflict(TAKEN));
    }
    if !phone::mark_verified(&mut *tx, user.id, &live.phone_number).await? {
        tx.commit().await?;
        return Err(Error::InvalidToken);
    }
    let mut event = AuditEvent::about_user(AuditAction::PhoneVerified, Some(user.id));
    event.new_values = Some(json!({"phone_number": redacted(&live.phone_number)}));
    audit::record(&mut *tx, &meta.audit(None), &event).await?;
    tx.commit().await?;
    Ok(ApiJson(UserView::from(&super::me(&state, &auth).await?)))
}
