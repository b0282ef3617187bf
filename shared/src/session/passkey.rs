//! Passwordless login with a passkey: a challenge with no username
//! ([`start_passkey_login`]), then the authenticator's assertion, which
//! names the account by its user handle. The assertion is verified against
//! that account's stored credential first, without locks (the user handle
//! is not signed: nothing is locked or audited about an account on its
//! word alone), then its counter again under the user's and the
//! credential's row locks ([`log_in_with_passkey`]).
//!
//! A passkey cannot be guessed, so a refused assertion is audited but not
//! counted toward the password lockout (which would let anyone lock an
//! account by sending garbage), and a lock set by wrong passwords does
//! not stop its owner's passkey: the answers are rate-limited per client.

use serde_json::json;
use uuid::Uuid;
use webauthn_rs::prelude::{DiscoverableAuthentication, PublicKeyCredential};

use super::{Issued, start};
use crate::db::audit::{self, AuditAction, AuditContext, AuditEvent};
use crate::db::{logins, passkeys as passkey_store, users};
use crate::domain::user::User;
use crate::error::{Error, Result};
use crate::http::RequestMeta;
use crate::metrics::{self, Event};
use crate::mfa::ceremony::{self, Ceremony};
use crate::mfa::{amr, passkeys};
use crate::state::AppState;

/// A passwordless challenge: its ceremony id and the options of
/// `navigator.credentials.get`.
pub async fn start_passkey_login(state: &AppState) -> Result<(Uuid, serde_json::Value)> {
    let (options, challenge) = passkeys::start_passwordless(&state.mfa.webauthn)?;
    let id = Uuid::new_v4();
    ceremony::put(state, Ceremony::Passwordless(id), None, &challenge).await?;
    Ok((id, options))
}

/// Logs in with the assertion `answer` to the challenge `ceremony_id`: a
/// new session whose `amr` is `["mfa", "swk"]`
/// (user verification is required). 401 `invalid_credentials` for an
/// unknown, expired or used challenge, an unknown credential, or one that
/// does not verify; 403 `account_disabled` for a verified passkey of an
/// account that may not log in.
pub async fn log_in_with_passkey(
    state: &AppState,
    meta: &RequestMeta,
    ceremony_id: Uuid,
    answer: &PublicKeyCredential,
    fingerprint: Option<&str>,
) -> Result<(Issued, User)> {
    let ctx = meta.audit(None);
    let challenge: Option<DiscoverableAuthentication> =
        ceremony::take(state, Ceremony::Passwordless(ceremony_id)).await?;
    let Some(challenge) = challenge else {
        return Err(Error::InvalidCredentials);
    };
    let rp = &state.mfa.webauthn;
    let Ok((user_id, credential_id)) = rp.identify_discoverable_authentication(answer) else {
        return Err(refused(state, &ctx, None).await);
    };
    // The credential must be the account's the user handle names, and the
    // signature must verify, before the account is touched.
    let stored = passkey_store::by_credential_id(&state.db.write, credential_id)
        .await?
        .filter(|c| c.user_id == user_id);
    let Some(stored) = stored else {
        return Err(refused(state, &ctx, None).await);
    };
    let passkey = passkeys::passkey_of(&stored.credential)?;
    let Ok(result) = rp.finish_discoverable_authentication_v2(answer, challenge, &passkey) else {
        return Err(refused(state, &ctx, None).await);
    };

    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &ctx).await?;
    let Some(current) = logins::lock_for_login(&mut *tx, user_id)
        .await?
        .filter(|u| !u.deleted)
    else {
        tx.rollback().await?;
        return Err(refused(state, &ctx, None).await);
    };
    // The counter again, under the credential's lock: of two answers
    // verified at once, one moves it and the other is refused.
    let Some(factor_amr) = state
        .mfa
        .record_assertion(&mut tx, Some(user_id), &result)
        .await?
    else {
        tx.rollback().await?;
        return Err(refused(state, &ctx, Some(user_id)).await);
    };
    if !current
        .status
        .may_log_in(state.config.require_verified_email)
    {
        let mut event = AuditEvent::about_user(AuditAction::LoginFailed, Some(user_id));
        event.new_values = Some(json!({"reason": "account_disabled", "method": "passkey"}));
        audit::record(&mut *tx, &ctx, &event).await?;
        tx.commit().await?;
        return Err(Error::AccountDisabled);
    }
    logins::record_successful_login(&mut *tx, user_id, None).await?;
    let amr = amr(&[factor_amr]);
    let issued = start(state, &mut tx, user_id, meta, fingerprint, amr.clone()).await?;
    let mut event = AuditEvent::about_user(AuditAction::LoginSucceeded, Some(user_id));
    event.new_values = Some(json!({
        "session_id": issued.session_id,
        "amr": amr,
        "method": "passkey",
    }));
    audit::record(&mut *tx, &ctx, &event).await?;
    tx.commit().await?;

    metrics::count(Event::LoginSuccess);
    let user = users::find_live(&state.db.write, user_id)
        .await?
        .ok_or(Error::InvalidCredentials)?;
    Ok((issued, user))
}

/// A refused assertion, audited (a warning when it named an account):
/// the error to answer with.
async fn refused(state: &AppState, ctx: &AuditContext, user_id: Option<Uuid>) -> Error {
    let mut event = AuditEvent::about_user(AuditAction::LoginFailed, user_id);
    event.severity = if user_id.is_some() { "warning" } else { "info" };
    event.new_values = Some(json!({"reason": "passkey_rejected"}));
    if let Err(err) = audit::record(&state.db.write, ctx, &event).await {
        return err.into();
    }
    metrics::count(Event::LoginFailure);
    Error::InvalidCredentials
}
