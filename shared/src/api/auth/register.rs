//! `POST /v1/auth/register`: a new account and its verification mail.

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use serde::Deserialize;

use super::{client, verification_allowed};
use crate::db::audit;
use crate::db::one_time_tokens;
use crate::db::users;
use crate::domain::{Email, Password, UserStatus, UserView, Username, profile};
use crate::error::{Error, FieldError, Result};
use crate::http::{ApiJson, RequestMeta};
use crate::mail::templates::{self, VERIFICATION_TTL_HOURS};
use crate::metrics::{self, Event};
use crate::security::opaque;
use crate::security::rate_limit::{self, Limit};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(schema_with = crate::domain::rules::username)]
    pub username: String,
    #[schema(schema_with = crate::domain::rules::email)]
    pub email: String,
    #[schema(schema_with = crate::domain::rules::new_password)]
    pub password: String,
    #[schema(schema_with = crate::domain::rules::name)]
    pub first_name: Option<String>,
    #[schema(schema_with = crate::domain::rules::name)]
    pub last_name: Option<String>,
    pub gdpr_consent: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/v1/auth/register",
    tag = "auth",
    summary = "Register an account",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The new user; Location names it", body = crate::domain::UserView),
        (status = 409, description = "Conflict (email_taken / username_taken / conflict)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; Retry-After in seconds", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    Extension(meta): Extension<RequestMeta>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response> {
    rate_limit::hit(&state, Limit::Register, &client(&meta)).await?;

    let (username, email, password) = checked(&body)?;
    rate_limit::hit(&state, Limit::RegisterEmail, email.as_str()).await?;

    let password_hash = state.hasher.hash(&password).await?;
    let (id, mail) = create(&state, &meta, &body, &username, &email, &password_hash).await?;
    metrics::count(Event::Registration);
    if let Some(token) = mail {
        let mail = templates::verification(&state.config, email.as_str(), &token);
        state.mailer.deliver(mail).await;
    }
    // Deleted in the instant since its commit: nothing to show.
    let user = users::find_live(&state.db.write, id)
        .await?
        .ok_or(Error::NotFound)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/users/{id}"))],
        ApiJson(UserView::from(&user)),
    )
        .into_response())
}

/// Every field rule of a registration at once: 422 names each broken one.
fn checked(body: &RegisterRequest) -> Result<(Username, Email, Password)> {
    let mut errors = Vec::new();
    let username = Username::parse(&body.username)
        .map_err(|m| errors.push(FieldError::new("username", m)))
        .ok();
    let email = Email::parse(&body.email)
        .map_err(|m| errors.push(FieldError::new("email", m)))
        .ok();
    let local_part = email.as_ref().map(Email::local_part).unwrap_or_default();
    let password = Password::parse(&body.password, &[&body.username, local_part, &body.email])
        .map_err(|m| errors.push(FieldError::new("password", m)))
        .ok();
    for (field, value) in [
        ("first_name", &body.first_name),
        ("last_name", &body.last_name),
    ] {
        if let Some(Err(m)) = value.as_deref().map(profile::name) {
            errors.push(FieldError::new(field, m));
        }
    }
    match (username, email, password, errors.is_empty()) {
        (Some(username), Some(email), Some(password), true) => Ok((username, email, password)),
        _ => Err(Error::Validation(errors)),
    }
}

/// Creates the account, audited, and (under the per-address cap) its
/// verification token, in one transaction. Returns the id and the token to
/// mail, if one may go.
async fn create(
    state: &AppState,
    meta: &RequestMeta,
    body: &RegisterRequest,
    username: &Username,
    email: &Email,
    password_hash: &str,
) -> Result<(uuid::Uuid, Option<String>)> {
    let status = if state.config.require_verified_email {
        UserStatus::PendingVerification
    } else {
        UserStatus::Active
    };
    let token = opaque::generate();
    let mut tx = state.db.write.begin().await?;
    audit::set_context(&mut *tx, &meta.audit(None)).await?;
    let id = users::insert(
        &mut *tx,
        &users::NewUser {
            username: username.as_str(),
            email: email.as_str(),
            password_hash,
            first_name: body.first_name.as_deref(),
            last_name: body.last_name.as_deref(),
            status,
            gdpr_consent: body.gdpr_consent.unwrap_or(false),
        },
    )
    .await?;
    let mail = verification_allowed(state, &mut tx, email.as_str()).await?;
    if mail {
        one_time_tokens::create_email_verification(
            &mut *tx,
            id,
            email.as_str(),
            &opaque::hash(&token),
            Utc::now() + Duration::hours(VERIFICATION_TTL_HOURS),
            false,
        )
        .await?;
    }
    tx.commit().await?;
    Ok((id, mail.then_some(token)))
}
