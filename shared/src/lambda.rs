//! Lambda entry points: initialise once per container (configuration,
//! logging, pools, keys, clients), then serve every invocation with the same
//! state. A failed initialisation is reported to the Runtime API's
//! `/init/error` with a message naming what is missing, and the process exits.

use axum::Router;
use http_body_util::Full;
use lambda_runtime_api_client::PooledClient;
use lambda_runtime_api_client::body::Body;

use crate::config::Config;
use crate::state::AppState;
use crate::telemetry;

/// Runs an HTTP function: `router` turns the state into the function's router.
pub async fn serve_http(router: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    let state = match init_state().await {
        Ok(state) => state,
        Err(err) => return Err(report_init_error(err).await),
    };
    lambda_http::run(router(state)).await
}

async fn init_state() -> anyhow::Result<AppState> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    AppState::from_config_in_aws(config).await
}

/// The cleanup function's pools, and the API role's password when
/// `APP_DB_SECRET_ARN` names it (the migration resource sets it).
async fn init_db() -> anyhow::Result<(crate::db::Db, Option<secrecy::SecretString>)> {
    let mut config = Config::from_env()?;
    // The job's statements are bounded batches, but its dry-run counts scan
    // whole tables: the API's 5-second statement limit (meant for requests
    // under API Gateway's 29 s) would cancel them on a large database.
    config.db_statement_timeout = config.db_statement_timeout.max(CLEANUP_STATEMENT_TIMEOUT);
    // The job signs nothing, limits nothing and mails nothing: what the
    // template's globals name for the HTTP functions (a JWT secret it may
    // not read, the cache) must not stop it from starting.
    config.jwt_secret_arn = None;
    config.mfa.secret_arn = None;
    config.sms.transport = crate::sms::SmsTransport::Outbox(std::env::temp_dir());
    config.elasticache_replication_group_id = None;
    config.cache_secret_arn = None;
    config.mail_transport = crate::config::MailTransport::Outbox(std::env::temp_dir());
    telemetry::init(config.log_format);
    if crate::aws::needed(&config) {
        let sdk = crate::aws::sdk_config().await;
        crate::aws::resolve(&mut config, &sdk).await?;
    }
    Ok((
        crate::db::Db::connect_lazy(&config)?,
        config.app_db_password.clone(),
    ))
}

/// The cleanup function's statement limit (Lambda allows it 15 minutes).
const CLEANUP_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs the cleanup function: the pool is built once; each invocation (the
/// EventBridge schedule, or `{"dry_run": true}` by hand) runs the job;
/// CloudFormation's migration events and an operator's `{"grant_admin":
/// "<e-mail>"}` are answered instead.
pub async fn serve_cleanup() -> Result<(), lambda_runtime::Error> {
    use crate::jobs::cleanup::{self, CleanupInput, CleanupReport};
    let (db, app_password) = match init_db().await {
        Ok(db) => db,
        Err(err) => return Err(report_init_error(err).await),
    };
    let pool = &db.write;
    let app_password = app_password.as_ref();
    // MIGRATION_DB_WAIT_SECONDS: how long a deploy's migration waits for
    // the database to answer (a first deploy's proxy needs minutes).
    let patience = match crate::config::parse(
        &|name: &str| std::env::var(name).ok(),
        "MIGRATION_DB_WAIT_SECONDS",
        crate::jobs::migrate::DEFAULT_PATIENCE.as_secs(),
    ) {
        Ok(seconds) => std::time::Duration::from_secs(seconds),
        Err(err) => return Err(report_init_error(err.into()).await),
    };
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            if let Some(request) =
                crate::jobs::migrate::CustomResourceEvent::from_payload(&event.payload)
            {
                crate::jobs::migrate::handle(pool, &request, app_password, patience).await?;
                return Ok::<_, lambda_runtime::Error>(
                    serde_json::json!({"migrations": request.request_type}),
                );
            }
            if let Some(grant) = crate::jobs::bootstrap::GrantAdmin::from_payload(&event.payload) {
                return Ok(crate::jobs::bootstrap::grant_admin(pool, &grant.grant_admin).await?);
            }
            let input: CleanupInput = serde_json::from_value(event.payload)?;
            let report: CleanupReport =
                cleanup::run(pool, input.dry_run, cleanup::DEFAULT_BATCH).await?;
            Ok(serde_json::to_value(report)?)
        },
    ))
    .await
}

/// Posts `err` to `/runtime/init/error` (when running under a Runtime API)
/// and returns it for `main` to exit with.
async fn report_init_error(err: anyhow::Error) -> lambda_runtime::Error {
    let message = format!("{err:#}");
    tracing::error!(error = %message, "initialisation failed");
    eprintln!("initialisation failed: {message}");
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        let body = serde_json::json!({
            "errorType": "Runtime.InitError",
            "errorMessage": message,
        });
        let request = lambda_runtime_api_client::build_request()
            .method("POST")
            .uri("/2018-06-01/runtime/init/error")
            .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
            .header("Content-Type", "application/json")
            .body(Body::new(Full::from(body.to_string())));
        match request {
            Ok(request) => {
                if let Err(e) = PooledClient::builder().build().call(request).await {
                    eprintln!("could not report the init error: {e}");
                }
            }
            Err(e) => eprintln!("could not build the init error report: {e}"),
        }
    }
    err.into()
}
