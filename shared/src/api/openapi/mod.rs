//! The OpenAPI 3.1 document, generated from the handlers' annotations;
//! committed as `openapi.json` and served locally at `/v1/openapi.json`.

use serde_json::{Value, json};
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::api::{admin, auth, health, users};

mod cookie_mode;

pub use cookie_mode::OPERATIONS as COOKIE_MODE_OPERATIONS;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "User Management API",
        version = "1.0.0",
        description = "Registration, login, sessions, profiles, RBAC and audit, as AWS Lambda functions over PostgreSQL. Errors are RFC 9457 problem+json with a stable `code`."
    ),
    paths(
        auth::register::register, auth::session::login, auth::session::refresh,
        auth::session::logout, auth::password::forgot_password, auth::password::reset_password,
        auth::email::verify_email, auth::email::resend_verification, auth::well_known::jwks,
        auth::well_known::openid_configuration, health::health,
        users::profile::get_me, users::profile::update_me, users::account::delete_me,
        users::account::change_password, users::account::change_email,
        users::sessions::list_sessions, users::sessions::revoke_session, users::export::export,
        users::mfa::status, users::mfa::start_totp, users::mfa::confirm_totp, users::mfa::verify,
        users::mfa::change::regenerate_recovery_codes, users::mfa::change::disable_totp,
        auth::mfa::verify, auth::passkey::start, auth::passkey::finish,
        users::passkeys::start_registration, users::passkeys::finish_registration,
        users::passkeys::list, users::passkeys::rename, users::passkeys::delete,
        users::passkeys::start_step_up, admin::mfa::reset_mfa, users::phone::send_code, users::phone::confirm,
        users::directory::list_users, users::directory::get_user,
        admin::users::list_users, admin::users::get_user, admin::users::update_user,
        admin::users::delete_user, admin::users::unlock, admin::users::revoke_sessions,
        admin::users::send_password_reset, admin::users::restore, admin::roles::assign_role,
        admin::roles::remove_role, admin::roles::list_roles, admin::roles::create_role,
        admin::roles::update_role, admin::roles::delete_role, admin::audit::audit_logs,
        admin::stats::get_stats,
    ),
    components(schemas(crate::error::Problem, crate::error::FieldError, crate::db::users::UserSort)),
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

/// The privilege rule, stated on every admin route that changes something.
pub const PRIVILEGE_RULE: &str = "**No one hands out more than they hold.** The caller may create, \
change, assign or remove a role only if it holds every permission the role grants (`*` only \
if it holds `*`), and may act on another user only if it holds every permission that user \
holds; otherwise 403 `forbidden`, checked before the rules below. The built-in `admin` role \
cannot be renamed, lose `*`, or be deleted, and the last active `*` holder cannot be \
removed, suspended or deleted: 409 `conflict` with a `detail` that says why.";

/// The step-up routes, whose current-password check counts toward the lockout.
const STEP_UPS: [(&str, &str); 8] = [
    ("/v1/users/me/password", "post"),
    ("/v1/users/me/email", "post"),
    ("/v1/users/me", "delete"),
    ("/v1/users/me/mfa/totp", "delete"),
    ("/v1/users/me/mfa/recovery-codes", "post"),
    ("/v1/users/me/mfa/totp/confirm", "post"),
    ("/v1/users/me/passkeys/register/finish", "post"),
    ("/v1/users/me/passkeys/{id}", "delete"),
];

/// The routes that need a recent second factor from a user who has one.
const SECOND_FACTOR_STEP_UPS: [(&str, &str); 7] = [
    ("/v1/users/me/password", "post"),
    ("/v1/users/me/email", "post"),
    ("/v1/users/me", "delete"),
    ("/v1/users/me/mfa/totp", "delete"),
    ("/v1/users/me/mfa/recovery-codes", "post"),
    ("/v1/users/me/passkeys/register/finish", "post"),
    ("/v1/users/me/passkeys/{id}", "delete"),
];

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// The problem answers that follow from an operation's shape, stated once:
/// (status, when, description).
const BY_SHAPE: [(&str, Shape, &str); 9] = [
    ("400", Shape::Body, "Malformed JSON (malformed_json)"),
    (
        "401",
        Shape::Bearer,
        "Missing, invalid, expired or revoked bearer token (unauthorized)",
    ),
    (
        "403",
        Shape::Bearer,
        "Authenticated but not allowed (forbidden / account_disabled)",
    ),
    (
        "404",
        Shape::PathId,
        "No such resource (not_found), also for one the caller may not see",
    ),
    ("413", Shape::Body, "Body over 16 KiB (payload_too_large)"),
    (
        "415",
        Shape::Body,
        "Body is not application/json (unsupported_media_type)",
    ),
    (
        "422",
        Shape::Input,
        "Validation failed (validation_failed); errors[] names each field",
    ),
    (
        "500",
        Shape::Any,
        "Internal error (internal); never leaks details",
    ),
    (
        "503",
        Shape::Any,
        "A dependency is unavailable (unavailable)",
    ),
];

#[derive(Clone, Copy)]
enum Shape {
    Any,
    /// Has a request body.
    Body,
    /// Takes a bearer token.
    Bearer,
    /// Has a path parameter.
    PathId,
    /// Has a body or query parameters.
    Input,
}

fn has(op: &serde_json::Map<String, Value>, shape: Shape) -> bool {
    let params = |place: &str| {
        op.get("parameters")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(|p| p["in"] == place))
    };
    match shape {
        Shape::Any => true,
        Shape::Body => op.contains_key("requestBody"),
        Shape::Bearer => op.contains_key("security"),
        Shape::PathId => params("path"),
        Shape::Input => op.contains_key("requestBody") || params("query"),
    }
}

/// Rules stated once, by route, rather than on each handler: the problem
/// answers every operation of a shape can give, the privilege rule and its
/// 409 on admin changes, lockout and rate limits on step-ups. An answer a
/// handler declares itself (e.g. 400 `invalid_token`) is kept.
fn add_rules(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            let step_up = STEP_UPS.contains(&(path.as_str(), method.as_str()));
            let second_factor = SECOND_FACTOR_STEP_UPS.contains(&(path.as_str(), method.as_str()));
            let admin = path.starts_with("/v1/admin/");
            let admin_change = admin && method != "get";
            if admin_change {
                let description = match op.get("description").and_then(Value::as_str) {
                    Some(own) => format!("{own}\n\n{PRIVILEGE_RULE}"),
                    None => PRIVILEGE_RULE.to_string(),
                };
                op.insert("description".into(), json!(description));
            }
            let shaped: Vec<_> = BY_SHAPE
                .iter()
                .filter(|(_, shape, _)| has(op, *shape))
                .collect();
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            for (status, _, description) in shaped {
                responses
                    .entry(*status)
                    .or_insert_with(|| problem(description));
            }
            if admin {
                responses.insert(
                    "403".into(),
                    problem("Not allowed: the permission is missing (forbidden), or the account is disabled (account_disabled), or MFA_REQUIRED_FOR_PERMISSIONS names a permission the caller holds and the session has no second factor (mfa_required)"),
                );
            }
            if second_factor {
                responses.insert(
                    "403".into(),
                    problem("The account is disabled (account_disabled), or the user has a second factor and this session has not verified one within STEP_UP_MAX_AGE_SECONDS (mfa_required): POST /v1/users/me/mfa/verify first"),
                );
            }
            if admin_change {
                responses.insert(
                    "403".into(),
                    problem("Not allowed: the permission is missing, or the privilege rule refuses (forbidden), or the account is disabled (account_disabled), or the session lacks the second factor MFA_REQUIRED_FOR_PERMISSIONS asks for (mfa_required)"),
                );
                responses.entry("409").or_insert_with(|| {
                    problem("Conflict: the built-in admin role or the last active `*` holder would be lost (conflict)")
                });
            }
            if step_up {
                responses.insert(
                    "423".into(),
                    problem("Too many wrong passwords (here or at login); Retry-After in seconds"),
                );
                responses.insert(
                    "429".into(),
                    problem("Rate limited per user; Retry-After in seconds"),
                );
            }
            let mut sorted: Vec<_> = std::mem::take(responses).into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            responses.extend(sorted);
        }
    }
}

/// No string of a request body may hold NUL (`http::json` refuses the
/// body): stated on every body string whose own rule does not already say
/// more. Request bodies are the schemas that refuse unknown fields.
fn no_nul_in_bodies(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for schema in schemas.values_mut() {
        if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
            continue;
        }
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for property in properties.values_mut() {
            let string = match &property["type"] {
                Value::String(t) => t == "string",
                Value::Array(ts) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            if string && property.get("pattern").is_none() && property.get("format").is_none() {
                property["pattern"] = json!(crate::domain::rules::NO_NUL);
            }
        }
    }
}

/// A second factor is one answer: `code` or `recovery_code` as a string or
/// `webauthn` as an object, never two and never none (the field present says the method; a
/// `null` one is absent). Serde cannot say so to utoipa; JSON Schema can.
fn exactly_one_answer(doc: &mut Value) {
    for name in ["MfaVerifyRequest", "SecondFactorRequest"] {
        if let Some(schema) = doc
            .pointer_mut(&format!("/components/schemas/{name}"))
            .and_then(Value::as_object_mut)
        {
            schema.insert(
                "oneOf".into(),
                json!([
                    {"required": ["code"], "properties": {"code": {"type": "string"}}},
                    {"required": ["recovery_code"],
                     "properties": {"recovery_code": {"type": "string"}}},
                    {"required": ["webauthn"], "properties": {"webauthn": {"type": "object"}}}
                ]),
            );
        }
    }
}

/// The document as pretty JSON (what `openapi.json` holds).
pub fn json() -> String {
    serde_json::to_string_pretty(&document()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The generated document plus what utoipa cannot express: the
/// `x-request-id` header every response carries (required, so clients and
/// fuzzers can rely on it) and the links between operations (register →
/// login → refresh/logout) that stateful clients and schemathesis follow.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    add_rules(&mut doc);
    cookie_mode::describe(&mut doc);
    no_nul_in_bodies(&mut doc);
    exactly_one_answer(&mut doc);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in operation.values_mut() {
                let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                    continue;
                };
                for response in responses.values_mut().filter_map(Value::as_object_mut) {
                    let headers = response.entry("headers").or_insert_with(|| json!({}));
                    headers["x-request-id"] = json!({
                        "description": "The request's id (API Gateway's, or a new UUID); also in every log line",
                        "required": true,
                        "schema": {"type": "string"}
                    });
                }
            }
        }
    }
    let links = [
        (
            "/v1/auth/register",
            "post",
            "201",
            "Login",
            json!({"operationId": "login", "requestBody": {
                "login": "$response.body#/username", "password": "$request.body#/password"}}),
        ),
        (
            "/v1/auth/login",
            "post",
            "200",
            "Refresh",
            json!({"operationId": "refresh", "requestBody": {
                "refresh_token": "$response.body#/refresh_token"}}),
        ),
        (
            "/v1/auth/login",
            "post",
            "200",
            "Logout",
            json!({"operationId": "logout", "requestBody": {
                "refresh_token": "$response.body#/refresh_token"}}),
        ),
        (
            "/v1/auth/refresh",
            "post",
            "200",
            "RefreshAgain",
            json!({"operationId": "refresh", "requestBody": {
                "refresh_token": "$response.body#/refresh_token"}}),
        ),
    ];
    for (path, method, status, name, link) in links {
        if let Some(response) = doc
            .pointer_mut(&format!(
                "/paths/{}/{method}/responses/{status}",
                path.replace('/', "~1")
            ))
            .and_then(Value::as_object_mut)
        {
            let all = response.entry("links").or_insert_with(|| json!({}));
            all[name] = link;
        }
    }
    doc
}
