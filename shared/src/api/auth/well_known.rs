//! `GET /.well-known/jwks.json` and `/.well-known/openid-configuration`.

use axum::extract::State;
use serde_json::{Value, json};

use crate::http::ApiJson;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    summary = "Public signing keys",
    responses(
        (status = 200, description = "JSON Web Key Set", body = Object),
    )
)]
pub(crate) async fn jwks(State(state): State<AppState>) -> ApiJson<Value> {
    ApiJson(state.keys.jwks().clone())
}

#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "auth",
    summary = "Issuer and JWKS location",
    responses(
        (status = 200, description = "OpenID discovery document", body = Object),
    )
)]
pub(crate) async fn openid_configuration(State(state): State<AppState>) -> ApiJson<Value> {
    let issuer = state.keys.issuer().trim_end_matches('/');
    ApiJson(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "subject_types_supported": ["public"],
        "response_types_supported": ["token"],
    }))
}
