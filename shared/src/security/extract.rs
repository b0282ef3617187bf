//! `AuthUser`: the one authorisation mechanism. Verifies the bearer access
//! token, refuses revoked sessions, and reads the caller's status and
//! permissions from the database on every request, so suspensions and role
//! changes apply at once.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::db::users;
use crate::domain::UserStatus;
use crate::error::Error;
use crate::security::revocation;
use crate::state::AppState;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub status: UserStatus,
    pub permissions: Vec<String>,
}

impl AuthUser {
    /// Does the caller hold `permission` (or `*`)?
    pub fn can(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == "*" || p == permission)
    }

    /// `Err(Forbidden)` unless the caller holds `permission`.
    pub fn require(&self, permission: &str) -> Result<(), Error> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = bearer(parts).ok_or(Error::Unauthorized)?;
        let claims = state.keys.verify(token).ok_or(Error::Unauthorized)?;
        if revocation::is_revoked(state.cache.as_ref(), &state.db, claims.sid).await? {
            return Err(Error::Unauthorized);
        }
        let caller = users::caller(&state.db.read, claims.sub)
            .await?
            .filter(|c| !c.deleted)
            .ok_or(Error::Unauthorized)?;
        if !caller
            .status
            .may_log_in(state.config.require_verified_email)
        {
            return Err(Error::AccountDisabled);
        }
        Ok(Self {
            user_id: claims.sub,
            session_id: claims.sid,
            status: caller.status,
            permissions: caller.permissions,
        })
    }
}
