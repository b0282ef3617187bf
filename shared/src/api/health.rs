//! `GET /v1/health`: 200 with the state of the database and the cache, 503
//! when the database is unreachable.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::http::ApiJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/health", get(health))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub database: &'static str,
    pub cache: &'static str,
}

#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "auth",
    summary = "Health of the API and its dependencies",
    responses(
        (status = 200, description = "Database reachable", body = Health),
    )
)]
pub(crate) async fn health(State(state): State<AppState>) -> Result<ApiJson<Health>> {
    let (database, cache) = tokio::join!(state.db.ping(), async {
        match &state.cache {
            None => "disabled",
            Some(cache) if cache.ping().await => "ok",
            Some(_) => "unavailable",
        }
    });
    if !database {
        return Err(Error::unavailable(anyhow::anyhow!("database unreachable")));
    }
    Ok(ApiJson(Health {
        status: "ok",
        database: "ok",
        cache,
    }))
}
