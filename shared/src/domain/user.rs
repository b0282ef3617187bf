//! The user as stored, and its representations (self/`users:read` view and
//! the admin view). No representation carries a password hash.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The `user_status` enum of the schema.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, Serialize, Deserialize, utoipa::ToSchema,
)]
#[sqlx(type_name = "user_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    PendingVerification,
    Active,
    Inactive,
    Suspended,
    Deleted,
}

impl UserStatus {
    pub const ALL: [UserStatus; 5] = [
        Self::PendingVerification,
        Self::Active,
        Self::Inactive,
        Self::Suspended,
        Self::Deleted,
    ];

    /// The statuses that may log in (given the verified-e-mail policy).
    pub fn allowed_to_log_in(require_verified_email: bool) -> Vec<UserStatus> {
        Self::ALL
            .into_iter()
            .filter(|s| s.may_log_in(require_verified_email))
            .collect()
    }

    /// May a user in this status log in (given the verified-e-mail policy)?
    pub fn may_log_in(self, require_verified_email: bool) -> bool {
        match self {
            Self::Active => true,
            Self::PendingVerification => !require_verified_email,
            Self::Inactive | Self::Suspended | Self::Deleted => false,
        }
    }
}

/// A user row with its role names, as the data layer returns it. Its
/// `Debug` leaves out the password hash, so no log line or panic message can
/// carry it.
#[derive(Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub password_changed_at: Option<DateTime<Utc>>,
    pub failed_login_attempts: i32,
    pub locked_until: Option<DateTime<Utc>>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_number: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub profile_picture_url: Option<String>,
    pub bio: Option<String>,
    pub status: UserStatus,
    pub is_email_verified: bool,
    pub is_phone_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub gdpr_consent_at: Option<DateTime<Utc>>,
    pub data_retention_until: Option<NaiveDate>,
    pub roles: Vec<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("email", &self.email)
            .field("password_hash", &"[redacted]")
            .field("password_changed_at", &self.password_changed_at)
            .field("failed_login_attempts", &self.failed_login_attempts)
            .field("locked_until", &self.locked_until)
            .field("status", &self.status)
            .field("is_email_verified", &self.is_email_verified)
            .field("created_at", &self.created_at)
            .field("last_login_at", &self.last_login_at)
            .field("deleted_at", &self.deleted_at)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// The user as the user themself (or a `users:read` caller) sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_number: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub profile_picture_url: Option<String>,
    pub bio: Option<String>,
    pub status: UserStatus,
    pub is_email_verified: bool,
    pub is_phone_verified: bool,
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            email: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            phone_number: u.phone_number.clone(),
            date_of_birth: u.date_of_birth,
            profile_picture_url: u.profile_picture_url.clone(),
            bio: u.bio.clone(),
            status: u.status,
            is_email_verified: u.is_email_verified,
            is_phone_verified: u.is_phone_verified,
            roles: u.roles.clone(),
            created_at: u.created_at,
            updated_at: u.updated_at,
            last_login_at: u.last_login_at,
        }
    }
}

/// The admin view: the user view plus account-security and compliance fields.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AdminUserView {
    #[serde(flatten)]
    pub user: UserView,
    pub failed_login_attempts: i32,
    pub locked_until: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub password_changed_at: Option<DateTime<Utc>>,
    pub gdpr_consent_at: Option<DateTime<Utc>>,
    pub data_retention_until: Option<NaiveDate>,
}

impl From<&User> for AdminUserView {
    fn from(u: &User) -> Self {
        Self {
            user: UserView::from(u),
            failed_login_attempts: u.failed_login_attempts,
            locked_until: u.locked_until,
            deleted_at: u.deleted_at,
            password_changed_at: u.password_changed_at,
            gdpr_consent_at: u.gdpr_consent_at,
            data_retention_until: u.data_retention_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_carries_the_password_hash() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g";
        let now = Utc::now();
        let user = User {
            id: Uuid::nil(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            password_hash: hash.into(),
            password_changed_at: None,
            failed_login_attempts: 0,
            locked_until: None,
            first_name: None,
            last_name: None,
            phone_number: None,
            date_of_birth: None,
            profile_picture_url: None,
            bio: None,
            status: UserStatus::Active,
            is_email_verified: true,
            is_phone_verified: false,
            created_at: now,
            updated_at: now,
            last_login_at: None,
            deleted_at: None,
            gdpr_consent_at: None,
            data_retention_until: None,
            roles: vec!["user".into()],
        };
        let shown = format!("{user:?} {user:#?}");
        assert!(!shown.contains("argon2id"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("[redacted]"));
    }
}
