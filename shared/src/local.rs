//! The local development server: every router on one port, same paths as
//! API Gateway.

use std::net::SocketAddr;

use anyhow::Context;

use crate::api;
use crate::config::Config;
use crate::state::AppState;
use crate::telemetry;

/// Reads configuration, applies migrations and serves until Ctrl-C.
pub async fn run() -> anyhow::Result<()> {
    let mut config = Config::from_env()?;
    telemetry::init(config.log_format);
    if config.jwt_private_keys_pem.is_empty() {
        tracing::warn!(
            "JWT_PRIVATE_KEY_PEM is not set: signing with a key generated for this run \
             (tokens stop working on restart)"
        );
        config.jwt_private_keys_pem = vec![crate::security::jwt::generate_private_key_pem()?];
    }
    let bind = config.bind_addr;
    let state = AppState::from_config(config)?;
    crate::db::MIGRATOR
        .run(&state.db.write)
        .await
        .context("applying migrations")?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        api::app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
