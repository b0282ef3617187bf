//! `AuthUser`: the one authorisation mechanism. Verifies the bearer access
//! token, then reads the caller's status, role ids and whether the session
//! is still live in one statement on every request, and the roles'
//! permissions from the role catalog at the version that statement saw, so
//! suspensions, role changes and revocations apply at once
//! (docs/security.md). `Me` is
//! the same with the caller's own row in that statement, for the routes
//! about the caller themself.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use uuid::Uuid;

use crate::domain::UserStatus;
use crate::domain::user::User;
use crate::error::Error;
use crate::http::Subject;
use crate::security::jwt::Claims;
use crate::state::AppState;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub status: UserStatus,
    pub permissions: Vec<String>,
    /// The access token's `amr`: how the session was authenticated.
    pub amr: Vec<String>,
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

    /// `MFA_REQUIRED_FOR_PERMISSIONS`: 403 `mfa_required` when the caller
    /// holds a listed permission and this session has no second factor.
    /// Every route that grants access by a permission applies it.
    pub fn meets_mfa_policy(&self, state: &AppState) -> Result<(), Error> {
        let listed = &state.config.mfa.required_for_permissions;
        if listed.iter().any(|p| self.can(p)) && !crate::mfa::has_second_factor(&self.amr) {
            return Err(Error::MfaRequired);
        }
        Ok(())
    }

    /// The privilege rule: `Err(Forbidden)` unless the caller holds every
    /// permission in `granted` (a role's, or another user's); `*` is held
    /// only by a `*` holder.
    pub fn outranks(&self, granted: &[String]) -> Result<(), Error> {
        if holds_all(&self.permissions, granted) {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}

/// Does `held` cover every permission of `granted`?
pub fn holds_all(held: &[String], granted: &[String]) -> bool {
    held.iter().any(|p| p == "*") || granted.iter().all(|g| g != "*" && held.contains(g))
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// The verified claims of the request's bearer token (401 without one),
/// noted for the access log.
fn claims(parts: &Parts, state: &AppState) -> Result<Claims, Error> {
    let token = bearer(parts).ok_or(Error::Unauthorized)?;
    let claims = state.keys.verify(token).ok_or(Error::Unauthorized)?;
    if let Some(subject) = parts.extensions.get::<Subject>() {
        subject.set(claims.sub);
    }
    Ok(claims)
}

/// The checks of every authenticated request, in the contract's order: a
/// deleted user 401; a suspended or inactive one 403 `account_disabled`,
/// although the suspension revoked the session; then a dead session 401.
fn admit(
    state: &AppState,
    deleted: bool,
    status: UserStatus,
    session_live: bool,
) -> Result<(), Error> {
    if deleted {
        return Err(Error::Unauthorized);
    }
    if !status.may_log_in(state.config.require_verified_email) {
        return Err(Error::AccountDisabled);
    }
    if !session_live {
        return Err(Error::Unauthorized);
    }
    Ok(())
}

/// How often the caller's statement is read when the roles change between
/// it and the role catalog's reload (each change commits between the two).
const READS: usize = 3;

/// The roles changed under every read: 503, retried by the client.
fn roles_moving() -> Error {
    Error::Unavailable(anyhow::anyhow!(
        "the roles changed during each of {READS} reads of the caller"
    ))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let claims = claims(parts, state)?;
        for _ in 0..READS {
            let caller = state
                .callers
                .caller(claims.sub, claims.sid)
                .await?
                .ok_or(Error::Unauthorized)?;
            admit(state, caller.deleted, caller.status, caller.session_live)?;
            let Some(roles) = state
                .roles
                .at(&state.db.write, caller.roles_version)
                .await?
            else {
                continue;
            };
            return Ok(Self {
                user_id: claims.sub,
                session_id: claims.sid,
                status: caller.status,
                permissions: roles.permissions(&caller.role_ids),
                amr: claims.amr.clone(),
            });
        }
        Err(roles_moving())
    }
}

/// The caller with their own row, read in the same statement: what the
/// routes about the caller themself (`/v1/users/me…`) take instead of
/// [`AuthUser`] and a second query.
#[derive(Debug, Clone)]
pub struct Me {
    pub auth: AuthUser,
    pub user: User,
}

impl FromRequestParts<AppState> for Me {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let claims = claims(parts, state)?;
        for _ in 0..READS {
            let row = state
                .callers
                .caller_row(claims.sub, claims.sid)
                .await?
                .ok_or(Error::Unauthorized)?;
            admit(
                state,
                row.user.deleted_at.is_some(),
                row.user.status,
                row.session_live,
            )?;
            let Some(roles) = state.roles.at(&state.db.write, row.roles_version).await? else {
                continue;
            };
            let mut user = row.user;
            user.roles = roles.names(&row.role_ids);
            return Ok(Self {
                auth: AuthUser {
                    user_id: claims.sub,
                    session_id: claims.sid,
                    status: user.status,
                    permissions: roles.permissions(&row.role_ids),
                    amr: claims.amr.clone(),
                },
                user,
            });
        }
        Err(roles_moving())
    }
}

/// A permission a route requires (a marker type per permission string).
pub trait Permission: Send + Sync + 'static {
    const NAME: &'static str;
}

/// The permissions of docs/security.md.
pub mod perm {
    use super::Permission;

    macro_rules! permissions {
        ($($ty:ident => $name:literal),* $(,)?) => {
            $(
                #[doc = concat!("`", $name, "`")]
                #[derive(Debug, Clone, Copy)]
                pub struct $ty;
                impl Permission for $ty {
                    const NAME: &'static str = $name;
                }
            )*
            /// Every permission a role may grant: `*` (all of them) and each one.
            pub const ALL: &[&str] = &["*", $($name),*];
        };
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

/// The caller behind the permission check.
impl<P: Permission> std::ops::Deref for Authorized<P> {
    type Target = AuthUser;

    fn deref(&self) -> &AuthUser {
        &self.caller
    }
}

impl<P: Permission> std::ops::DerefMut for Authorized<P> {
    fn deref_mut(&mut self) -> &mut AuthUser {
        &mut self.caller
    }
}

impl<P: Permission> FromRequestParts<AppState> for Authorized<P> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        caller.require(P::NAME)?;
        caller.meets_mfa_policy(state)?;
        Ok(Self {
            caller,
            _permission: std::marker::PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::holds_all;

    fn v(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_a_star_holder_covers_star() {
        assert!(holds_all(&v(&["*"]), &v(&["*", "users:read"])));
        assert!(!holds_all(&v(&["roles:manage"]), &v(&["*"])));
        assert!(!holds_all(
            &v(&["users:read", "users:write", "users:delete", "roles:manage"]),
            &v(&["*"])
        ));
    }

    #[test]
    fn every_granted_permission_must_be_held() {
        assert!(holds_all(
            &v(&["users:read", "users:write"]),
            &v(&["users:read"])
        ));
        assert!(holds_all(&v(&["users:read"]), &v(&[])));
        assert!(!holds_all(
            &v(&["users:read"]),
            &v(&["users:read", "users:write"])
        ));
    }
}
