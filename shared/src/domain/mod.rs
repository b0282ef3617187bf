//! Domain types that can only hold valid values (parse, don't validate), and
//! the user representations of docs/api.md.

pub mod email;
pub mod password;
pub mod profile;
pub mod rules;
pub mod user;
pub mod username;

pub use email::Email;
pub use password::Password;
pub use user::{UserStatus, UserView};
pub use username::Username;
