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
    if config.mfa.encryption_keys.is_empty() {
        tracing::warn!(
            "MFA_ENCRYPTION_KEY is not set: sealing TOTP secrets with a key generated for this \
             run (factors enrolled now stop working on restart)"
        );
        config.mfa.encryption_keys = vec![crate::mfa::secret_box::generate_key()?];
    }
    // Plain HTTP: a browser drops a `Secure` or `__Host-` cookie from
    // http://127.0.0.1, so cookie mode's refresh cookie is plain `refresh`.
    config.refresh_cookie = crate::http::token_transport::RefreshCookie { secure: false };
    tracing::warn!(
        "plain HTTP: cookie mode's refresh cookie is `refresh` (HttpOnly, SameSite=Strict) \
         without Secure or the __Host- prefix; in AWS it is `__Host-refresh; Secure`"
    );
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

/// `local --migrate`: applies the migrations to `DATABASE_URL` and returns
/// (`cargo xtask watch` and `invoke` prepare a database with it).
pub async fn migrate() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let db = crate::db::Db::connect_lazy(&config)?;
    crate::db::MIGRATOR
        .run(&db.write)
        .await
        .context("applying migrations")?;
    Ok(())
}

/// `local --dev-key PATH`: writes a new RSA signing key to `PATH` (mode 0600)
/// unless the file exists, so the functions `cargo xtask watch` starts share
/// one key that lasts across restarts. The key is never printed.
pub fn write_dev_key(path: &std::path::Path) -> anyhow::Result<bool> {
    use secrecy::ExposeSecret;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let pem = crate::security::jwt::generate_private_key_pem()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(pem.expose_secret().as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}
