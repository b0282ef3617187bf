//! Lambda entry points: initialise once per container, then serve every
//! invocation with the same state.

use axum::Router;

use crate::config::Config;
use crate::state::AppState;
use crate::telemetry;

/// Runs an HTTP function: configuration, logging and pools are built before
/// the first invocation; `router` turns them into the function's router.
pub async fn serve_http(router: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    let state = AppState::from_config(config)?;
    lambda_http::run(router(state)).await
}

/// Runs the cleanup function: the pool is built once; each invocation (the
/// EventBridge schedule, or `{"dry_run": true}` by hand) runs the job.
pub async fn serve_cleanup() -> Result<(), lambda_runtime::Error> {
    use crate::jobs::cleanup::{self, CleanupInput, CleanupReport};
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    let db = crate::db::Db::connect_lazy(&config)?;
    let pool = &db.write;
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<CleanupInput>| async move {
            let report: CleanupReport =
                cleanup::run(pool, event.payload.dry_run, cleanup::DEFAULT_BATCH).await?;
            Ok::<_, lambda_runtime::Error>(report)
        },
    ))
    .await
}
