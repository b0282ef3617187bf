//! Security: password hashing, access tokens (JWT), opaque one-time and
//! refresh tokens, revocation, rate limits and the bearer-token extractor.

pub mod extract;
pub mod jwt;
pub mod opaque;
pub mod passwords;
pub mod rate_limit;
pub mod revocation;

pub use extract::{AuthUser, Authorized, Permission, perm};
pub use jwt::JwtKeys;
pub use passwords::PasswordHasher;
