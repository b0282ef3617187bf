//! Security: password hashing, access tokens (JWT), opaque one-time and
//! refresh tokens, rate limits and the bearer-token extractor.

pub mod extract;
pub mod jwt;
pub mod jwt_crypto;
pub mod lockout;
pub mod opaque;
pub mod passwords;
pub mod rate_limit;
pub mod role_catalog;

pub use extract::{AuthUser, Authorized, Me, Permission, holds_all, perm};
pub use jwt::JwtKeys;
pub use passwords::PasswordHasher;
