//! The HTTP API: one module per path prefix, each with its `router()`.

pub mod admin;
pub mod auth;
pub mod health;
pub mod openapi;
pub mod users;

use axum::Router;
use axum::middleware;

use crate::http;
use crate::state::AppState;

/// Adds what every router needs: the request context layer, CORS when
/// `CORS_ALLOWED_ORIGINS` is set, and the problem+json fallbacks.
pub fn finish(router: Router<AppState>, state: AppState) -> Router {
    let router = router
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed);
    // Inside the context layer, so preflights get a request id and the
    // security headers too.
    let router = match state.config.cors.clone() {
        Some(cors) => router.layer(middleware::from_fn_with_state(cors, http::cors::middleware)),
        None => router,
    };
    router
        .layer(middleware::from_fn(http::context))
        .with_state(state)
}

/// The auth function's router: `/v1/auth/*`, `/.well-known/*`, `/v1/health`.
pub fn auth_router(state: AppState) -> Router {
    finish(auth::router().merge(health::router()), state)
}

/// The users function's router: `/v1/users*`.
pub fn users_router(state: AppState) -> Router {
    finish(users::router(), state)
}

/// The admin function's router: `/v1/admin/*`.
pub fn admin_router(state: AppState) -> Router {
    finish(admin::router(), state)
}

/// The router of the HTTP function `name`: the tag of the operations it
/// serves in the OpenAPI document (`auth`, `users`, `admin`).
pub fn function_router(name: &str, state: AppState) -> Option<Router> {
    match name {
        "auth" => Some(auth_router(state)),
        "users" => Some(users_router(state)),
        "admin" => Some(admin_router(state)),
        _ => None,
    }
}

/// Every route of every function on one router (the local server).
pub fn app(state: AppState) -> Router {
    let all = auth::router()
        .merge(health::router())
        .merge(users::router())
        .merge(admin::router())
        .route("/v1/openapi.json", axum::routing::get(openapi_document));
    finish(all, state)
}

async fn openapi_document() -> impl axum::response::IntoResponse {
    // Built once per process: the document does not change while it runs.
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(openapi::json);
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}
