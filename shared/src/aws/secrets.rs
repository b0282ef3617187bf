//! Secrets Manager: a secret's string, and the standard RDS credentials JSON.

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;

/// The RDS secret JSON (`username`, `password`, optionally `host`, `port`, `dbname`).
#[derive(Deserialize)]
pub struct DatabaseSecret {
    pub username: String,
    pub password: SecretString,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
}

/// The string value of secret `id`.
pub async fn string(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> anyhow::Result<SecretString> {
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot be read: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        })?;
    output
        .secret_string()
        .map(|s| SecretString::from(s.to_string()))
        .context("has no string value")
}

/// The RDS credentials in secret `id`.
pub async fn database(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> anyhow::Result<DatabaseSecret> {
    let raw = string(client, id).await?;
    serde_json::from_str(secrecy::ExposeSecret::expose_secret(&raw))
        .map_err(|e| anyhow::anyhow!("is not RDS credentials JSON ({})", e.classify_name()))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    /// Names the kind of error without echoing any of the secret.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "missing username or password",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}
