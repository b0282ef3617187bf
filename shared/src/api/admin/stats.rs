//! `GET /v1/admin/stats`: users by status, recent activity, database health.

use axum::extract::State;

use crate::db::stats::{self, Stats};
use crate::error::Result;
use crate::http::ApiJson;
use crate::security::{Authorized, perm};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/v1/admin/stats",
    tag = "admin",
    summary = "Statistics (stats:read)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Statistics", body = crate::db::stats::Stats),
    )
)]
pub(crate) async fn get_stats(
    State(state): State<AppState>,
    _caller: Authorized<perm::StatsRead>,
) -> Result<ApiJson<Stats>> {
    Ok(ApiJson(stats::collect(&state.db.read).await?))
}
