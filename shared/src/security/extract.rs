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

/// A permission a route requires (a marker type per permission string).
pub trait Permission: Send + Sync + 'static {
    const NAME: &'static str;
}

/// The permissions of the contract.
pub mod perm {
    use super::Permission;

    macro_rules! permissions {
        ($($ty:ident => $name:literal),* $(,)?) => {$(
            #[doc = concat!("`", $name, "`")]
            #[derive(Debug, Clone, Copy)]
            pub struct $ty;
            impl Permission for $ty {
                const NAME: &'static str = $name;
            }
        )*};
    }

    permissions! {
        UsersRead => "users:read",
        UsersWrite => "users:write",
        UsersDelete => "users:delete",
        RolesManage => "roles:manage",
        AuditRead => "audit:read",
        StatsRead => "stats:read",
    }
}

/// An authenticated caller holding permission `P`; 403 `forbidden` otherwise.
#[derive(Debug, Clone)]
pub struct Authorized<P: Permission> {
    pub caller: AuthUser,
    _permission: std::marker::PhantomData<P>,
}

impl<P: Permission> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        caller.require(P::NAME)?;
        Ok(Self {
            caller,
            _permission: std::marker::PhantomData,
        })
    }
}
