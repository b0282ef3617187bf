//! AWS integration, resolved once per cold start: database credentials and
//! JWT keys from Secrets Manager, the ElastiCache endpoint, and the SES
//! client. The SDK uses one HTTP stack (hyper 1, rustls with ring, shared
//! with sqlx) and honours `AWS_ENDPOINT_URL` (tests point it at moto).

pub mod elasticache;
pub(crate) mod http;
pub mod secrets;

use anyhow::Context;
use aws_config::{BehaviorVersion, SdkConfig};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Config, MailTransport};

/// The SDK configuration loader with this crate's HTTP client.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    let http = http::client();
    // Bounded: an unreachable endpoint fails the cold start in seconds,
    // well inside Lambda's 10-second init phase.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .operation_timeout(std::time::Duration::from_secs(6))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
}

/// Loads the SDK configuration (region, credentials, endpoint) from the environment.
pub async fn sdk_config() -> SdkConfig {
    sdk_loader().load().await
}

/// Does this configuration need AWS at start-up?
pub fn needed(config: &Config) -> bool {
    config.db_secret_arn.is_some()
        || config.app_db_secret_arn.is_some()
        || config.jwt_secret_arn.is_some()
        || config.mfa.secret_arn.is_some()
        || (config.redis_url.is_none() && config.elasticache_replication_group_id.is_some())
        || config.cache_secret_arn.is_some()
        || config.mail_transport == MailTransport::Ses
        || config.sms.transport == crate::sms::SmsTransport::Sns
}

/// Fills in what configuration names by reference: the database URLs from
/// `DB_SECRET_ARN` + `DB_HOST`/`DB_READ_HOST`/`DB_PORT`/`DB_NAME` (TLS
/// required), the signing keys from `JWT_SECRET_ARN`, the key sealing TOTP
/// secrets from `MFA_SECRET_ARN`, and `REDIS_URL` from
/// `ELASTICACHE_REPLICATION_GROUP_ID` with the AUTH token of
/// `CACHE_SECRET_ARN`. Every error names the variable and secret.
pub async fn resolve(config: &mut Config, sdk: &SdkConfig) -> anyhow::Result<()> {
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    if let Some(arn) = config.db_secret_arn.clone() {
        let secret = secrets::database(&secrets, &arn)
            .await
            .with_context(|| format!("DB_SECRET_ARN: secret {arn}"))?;
        let host = config
            .db_host
            .clone()
            .or(secret.host.clone())
            .context("DB_HOST is required with DB_SECRET_ARN (the RDS Proxy endpoint)")?;
        let port = config.db_port.or(secret.port).unwrap_or(5432);
        let name = config
            .db_name
            .clone()
            .or(secret.dbname.clone())
            .unwrap_or_else(|| "postgres".into());
        let url = |host: &str| {
            SecretString::from(format!(
                "postgres://{}:{}@{host}:{port}/{}?sslmode={}",
                encode(&secret.username),
                encode(secret.password.expose_secret()),
                encode(&name),
                config.db_sslmode,
            ))
        };
        config.database_url = Some(url(&host));
        config.database_read_url = config.db_read_host.as_deref().map(url);
    }
    if let Some(arn) = config.app_db_secret_arn.clone() {
        let secret = secrets::database(&secrets, &arn)
            .await
            .with_context(|| format!("APP_DB_SECRET_ARN: secret {arn}"))?;
        anyhow::ensure!(
            secret.username == crate::db::APP_ROLE,
            "APP_DB_SECRET_ARN: secret {arn} is not for the role {}",
            crate::db::APP_ROLE
        );
        config.app_db_password = Some(secret.password);
    }
    if let Some(arn) = config.jwt_secret_arn.clone() {
        let pem = secrets::string(&secrets, &arn)
            .await
            .with_context(|| format!("JWT_SECRET_ARN: secret {arn}"))?;
        let keys = crate::config::split_pem_keys(pem.expose_secret());
        anyhow::ensure!(
            !keys.is_empty(),
            "JWT_SECRET_ARN: secret {arn} holds no PEM private key"
        );
        config.jwt_private_keys_pem = keys.into_iter().map(SecretString::from).collect();
    }
    if let Some(arn) = config.mfa.secret_arn.clone() {
        let raw = secrets::string(&secrets, &arn)
            .await
            .with_context(|| format!("MFA_SECRET_ARN: secret {arn}"))?;
        config.mfa.encryption_keys = crate::mfa::config::parse_keys(raw.expose_secret())
            .map_err(|why| anyhow::anyhow!("MFA_SECRET_ARN: secret {arn}: {why}"))?;
    }
    if config.redis_url.is_none()
        && let Some(id) = config.elasticache_replication_group_id.clone()
    {
        let client = aws_sdk_elasticache::Client::new(sdk);
        let url = elasticache::discover(&client, &id)
            .await
            .with_context(|| format!("ELASTICACHE_REPLICATION_GROUP_ID: {id}"))?;
        config.redis_url = Some(SecretString::from(url));
    }
    if let Some(arn) = config.cache_secret_arn.clone() {
        let token = secrets::string(&secrets, &arn)
            .await
            .with_context(|| format!("CACHE_SECRET_ARN: secret {arn}"))?;
        let url = config.redis_url.as_ref().context(
            "CACHE_SECRET_ARN is set but no cache is: set ELASTICACHE_REPLICATION_GROUP_ID or REDIS_URL",
        )?;
        let url = with_password(url.expose_secret(), token.expose_secret())
            .with_context(|| format!("CACHE_SECRET_ARN: secret {arn}"))?;
        if let Some(why) = crate::cache::Cache::new(&url)?.auth_refusal().await {
            anyhow::bail!("CACHE_SECRET_ARN: secret {arn}: the cache refused it ({why})");
        }
        config.redis_url = Some(url);
    }
    Ok(())
}

/// `url` with `password` as its AUTH token (the default user); a URL that
/// carries credentials already is refused rather than silently changed.
fn with_password(url: &str, password: &str) -> anyhow::Result<SecretString> {
    let (scheme, rest) = url
        .split_once("://")
        .context("the cache URL has no scheme")?;
    let authority = rest.split('/').next().unwrap_or_default();
    anyhow::ensure!(
        !authority.contains('@'),
        "the cache URL carries credentials already"
    );
    anyhow::ensure!(!password.is_empty(), "the secret is empty");
    Ok(SecretString::from(format!(
        "{scheme}://:{}@{rest}",
        encode(password)
    )))
}

/// Percent-encodes a URL component (user, password, database name).
fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    #[test]
    fn url_components_are_percent_encoded() {
        assert_eq!(super::encode("p@ss:w/rd%"), "p%40ss%3Aw%2Frd%25");
    }

    #[test]
    fn the_cache_token_goes_into_the_url_once() {
        let url = super::with_password("rediss://cache.example:6379", "t0k/en").unwrap();
        assert_eq!(url.expose_secret(), "rediss://:t0k%2Fen@cache.example:6379");
        assert!(super::with_password("rediss://u:p@cache.example:6379", "x").is_err());
        assert!(super::with_password("rediss://cache.example:6379", "").is_err());
    }
}
