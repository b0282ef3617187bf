//! The OpenAPI 3.1 document, generated from the handlers' annotations;
//! committed as `openapi.json` and served locally at `/v1/openapi.json`.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::api::{admin, auth, health, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "User Management API",
        version = "1.0.0",
        description = "Registration, login, sessions, profiles, RBAC and audit, as AWS Lambda functions over PostgreSQL. Errors are RFC 9457 problem+json with a stable `code`."
    ),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::forgot_password,
        auth::reset_password, auth::verify_email, auth::resend_verification, auth::jwks,
        auth::openid_configuration, health::health,
        users::get_me, users::update_me, users::delete_me, users::change_password,
        users::change_email, users::list_sessions, users::revoke_session, users::export,
        users::list_users, users::get_user,
        admin::list_users, admin::get_user, admin::update_user, admin::delete_user,
        admin::unlock, admin::revoke_sessions, admin::send_password_reset, admin::restore,
        admin::assign_role, admin::remove_role, admin::list_roles, admin::create_role,
        admin::update_role, admin::delete_role, admin::audit_logs, admin::get_stats,
    ),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration, login, tokens, password reset, e-mail verification"),
        (name = "users", description = "The caller's account, and users with users:read"),
        (name = "admin", description = "Administration; each route names its permission"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

/// The document as pretty JSON (what `openapi.json` holds).
pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
