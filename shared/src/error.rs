//! The one error type of the HTTP layer and its RFC 9457 problem+json mapping.
//! Handlers return `Result<T>`; the internal cause is logged here, once, and never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::request_id;

/// `Result` with the API error as its default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One broken field rule, as it appears in `errors[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every way a request can fail, each with the status and code of docs/api.md.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("token unknown, used or expired")]
    InvalidToken,
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("refresh token invalid")]
    RefreshTokenInvalid,
    #[error("refresh token reused")]
    RefreshTokenReused,
    #[error("forbidden")]
    Forbidden,
    #[error("a recent second factor is required")]
    MfaRequired,
    #[error("mfa token invalid")]
    MfaTokenInvalid,
    #[error("account disabled")]
    AccountDisabled,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("e-mail taken")]
    EmailTaken,
    #[error("username taken")]
    UsernameTaken,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("account locked")]
    AccountLocked { retry_after_secs: u64 },
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("busy: every password-hashing slot is taken")]
    Busy { retry_after_secs: u64 },
    #[error("dependency unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error: {0}")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    /// A single-field validation failure.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    pub fn unavailable(err: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable(err.into())
    }

    /// HTTP status, stable `code` and `title` of this error.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::MalformedJson(_) => (S::BAD_REQUEST, "malformed_json", "Malformed JSON"),
            Self::Validation(_) => (
                S::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            Self::InvalidToken => (S::BAD_REQUEST, "invalid_token", "Invalid token"),
            Self::Unauthorized => (S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::InvalidCredentials => (
                S::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
            ),
            Self::RefreshTokenInvalid => (
                S::UNAUTHORIZED,
                "refresh_token_invalid",
                "Refresh token invalid",
            ),
            Self::RefreshTokenReused => (
                S::UNAUTHORIZED,
                "refresh_token_reused",
                "Refresh token reused",
            ),
            Self::Forbidden => (S::FORBIDDEN, "forbidden", "Forbidden"),
            Self::MfaRequired => (S::FORBIDDEN, "mfa_required", "Second factor required"),
            Self::MfaTokenInvalid => (S::UNAUTHORIZED, "mfa_token_invalid", "MFA token invalid"),
            Self::AccountDisabled => (S::FORBIDDEN, "account_disabled", "Account disabled"),
            Self::NotFound => (S::NOT_FOUND, "not_found", "Not found"),
            Self::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            Self::EmailTaken => (S::CONFLICT, "email_taken", "E-mail already registered"),
            Self::UsernameTaken => (S::CONFLICT, "username_taken", "Username already taken"),
            Self::Conflict(_) => (S::CONFLICT, "conflict", "Conflict"),
            Self::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            Self::AccountLocked { .. } => (S::LOCKED, "account_locked", "Account locked"),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
            Self::Unavailable(_) | Self::Busy { .. } => {
                (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable")
            }
            Self::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// The `detail` sent to the client: never an internal message.
    fn detail(&self) -> String {
        match self {
            Self::MalformedJson(why) => why.clone(),
            Self::Validation(_) => "One or more fields are invalid.".into(),
            Self::InvalidToken => "The token is unknown, already used or expired.".into(),
            Self::Unauthorized => "A valid bearer access token is required.".into(),
            Self::InvalidCredentials => "The login or password is wrong.".into(),
            Self::RefreshTokenInvalid => "The refresh token is unknown, expired or revoked.".into(),
            Self::RefreshTokenReused => {
                "The refresh token was already used; the session has been revoked.".into()
            }
            Self::Forbidden => "You lack the permission for this action.".into(),
            Self::MfaRequired => {
                "This needs a second factor verified recently in this session.".into()
            }
            Self::MfaTokenInvalid => {
                "The mfa_token is unknown, used or expired; log in again.".into()
            }
            Self::AccountDisabled => "The account is not active.".into(),
            Self::NotFound => "No such resource.".into(),
            Self::MethodNotAllowed => "This path does not accept that method.".into(),
            Self::EmailTaken => "An account with this e-mail address exists.".into(),
            Self::UsernameTaken => "This username is taken.".into(),
            Self::Conflict(what) => (*what).into(),
            Self::PayloadTooLarge => "The body exceeds 16 KiB.".into(),
            Self::UnsupportedMediaType => "Send the body as application/json.".into(),
            Self::AccountLocked { .. } => {
                "Too many failed logins; try again after the lockout period.".into()
            }
            Self::RateLimited { .. } => "Too many requests; slow down.".into(),
            Self::Unavailable(_) => "A required dependency is unavailable; retry later.".into(),
            Self::Busy { .. } => "The service is busy; retry after the time given.".into(),
            Self::Internal(_) => "An internal error occurred.".into(),
        }
    }
}

/// An RFC 9457 problem body, as every error answer carries it.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable, machine-readable error code.
    pub code: String,
    pub detail: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        match &self {
            Self::Internal(cause) => tracing::error!(error = ?cause, code, "request failed"),
            Self::Unavailable(cause) => {
                tracing::warn!(error = %cause, code, "dependency unavailable")
            }
            _ => tracing::debug!(code, "request rejected"),
        }
        let problem = Problem {
            kind: "about:blank".into(),
            title: title.into(),
            status: status.as_u16(),
            code: code.into(),
            detail: self.detail(),
            request_id: request_id::current().unwrap_or_default(),
            errors: match &self {
                Self::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            Self::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Self::AccountLocked { retry_after_secs }
            | Self::RateLimited { retry_after_secs }
            | Self::Busy { retry_after_secs } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &err {
            E::RowNotFound => Self::NotFound,
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
                Self::Unavailable(err.into())
            }
            // A constraint that means something to the API is mapped where
            // the write is (`taken` in db::users, `name_taken` in db::roles).
            E::Database(db) => {
                match db.code().as_deref() {
                    // query_canceled (statement_timeout), connection and
                    // resource classes, admin shutdown, read-only replica.
                    Some("57014" | "57P01" | "57P02" | "57P03" | "25006" | "53300") => {
                        Self::Unavailable(err.into())
                    }
                    Some(code) if code.starts_with("08") || code.starts_with("53") => {
                        Self::Unavailable(err.into())
                    }
                    _ => Self::Internal(err.into()),
                }
            }
            _ => Self::Internal(err.into()),
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        Self::Unavailable(err.into())
    }
}
