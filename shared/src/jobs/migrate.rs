//! Schema migrations on deploy: the cleanup function also serves as the
//! CloudFormation custom resource `Custom::Migrations`. On Create and Update
//! it applies the embedded migrations (sqlx takes an advisory lock), then
//! answers CloudFormation at the pre-signed `ResponseURL`; the HTTP functions
//! depend on that resource, so a deploy never serves a schema it does not know.
//! With the API role's password (from `APP_DB_SECRET_ARN`) it also lets that
//! role log in with it, so a rotated secret takes effect on the next deploy.

use anyhow::Context;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

/// The fields of a CloudFormation custom-resource request that matter here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceEvent {
    pub request_type: String,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
}

impl CustomResourceEvent {
    /// Is `payload` a custom-resource request?
    pub fn from_payload(payload: &serde_json::Value) -> Option<Self> {
        payload.get("ResponseURL")?;
        serde_json::from_value(payload.clone()).ok()
    }
}

/// Applies the migrations (Create, Update), gives the API role its password
/// when one is given, and reports the outcome to CloudFormation.
pub async fn handle(
    pool: &PgPool,
    event: &CustomResourceEvent,
    app_password: Option<&SecretString>,
    patience: std::time::Duration,
) -> anyhow::Result<()> {
    let outcome = match event.request_type.as_str() {
        "Create" | "Update" => match migrate(pool, patience).await {
            Err(e) => Err(e),
            Ok(()) => match app_password {
                Some(password) => set_app_password(pool, password)
                    .await
                    .map_err(|e| format!("setting the API role's password failed: {e}")),
                None => Ok(()),
            },
        },
        // Deleting the stack keeps the data: nothing to undo.
        _ => Ok(()),
    };
    if let Err(reason) = &outcome {
        tracing::error!(%reason, "migration custom resource failed");
    } else {
        tracing::info!(request_type = %event.request_type, "migrations applied");
    }
    let body = json!({
        "Status": if outcome.is_ok() { "SUCCESS" } else { "FAILED" },
        "Reason": outcome.as_ref().err().cloned().unwrap_or_else(|| "see the function's log".into()),
        "PhysicalResourceId": event.physical_resource_id.clone().unwrap_or_else(|| "schema-migrations".into()),
        "StackId": event.stack_id,
        "RequestId": event.request_id,
        "LogicalResourceId": event.logical_resource_id,
        "Data": {"Version": crate::db::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)},
    })
    .to_string();
    respond(&event.response_url, body).await
}

/// How long a first deploy waits for the database by default: the proxy
/// registers its target some minutes after the cluster is available.
pub const DEFAULT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Waits up to `patience` for a connection (each attempt bounded by the
/// pool's connect timeout), then applies the migrations.
async fn migrate(pool: &PgPool, patience: std::time::Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match pool.acquire().await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "the database is not reachable yet; retrying in 10 s");
                tokio::time::sleep(std::time::Duration::from_secs(10).min(patience)).await;
            }
            Err(e) => {
                return Err(format!(
                    "the database did not become reachable within {} s: {e}",
                    patience.as_secs()
                ));
            }
        }
    }
    crate::db::MIGRATOR
        .run(pool)
        .await
        .map_err(|e| format!("applying migrations failed: {e}"))
}

/// `ALTER ROLE` takes no bind parameters, and a password must never stand
/// in a statement's text (sqlx and the server may log it): it travels as a
/// bind parameter into a transaction-local setting, and PL/pgSQL quotes it.
async fn set_app_password(pool: &PgPool, password: &SecretString) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('um.app_password', $1, true)")
        .bind(password.expose_secret())
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "DO $$ BEGIN
             EXECUTE format('ALTER ROLE user_management_app WITH LOGIN PASSWORD %L',
                            current_setting('um.app_password'));
         END $$",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// PUTs the response document to the pre-signed URL (empty content type, as S3 expects).
async fn respond(url: &str, body: String) -> anyhow::Result<()> {
    let client: Client<_, Full<axum::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build(crate::aws::http::https(None));
    let request = axum::http::Request::put(url)
        .header("content-type", "")
        .header("content-length", body.len())
        .body(Full::from(body))
        .context("building the CloudFormation response")?;
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
            .context("CloudFormation response timed out")??;
    anyhow::ensure!(
        response.status().is_success(),
        "CloudFormation response rejected: {}",
        response.status()
    );
    Ok(())
}
