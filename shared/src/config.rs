//! Typed configuration, read once per cold start from the environment with
//! the variable names of docs/api.md and defaults; an error names the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

use crate::security::rate_limit::Limit;

/// A configuration variable that is missing or does not parse.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration variable {name} is required: {why}")]
    Missing {
        name: &'static str,
        why: &'static str,
    },
    #[error("configuration variable {name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
}

/// Where outgoing mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTransport {
    /// One JSON file per message in a directory (local use and tests).
    Outbox(PathBuf),
    /// Amazon SES v2.
    Ses,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Argon2id cost parameters (OWASP: m = 19 MiB, t = 2, p = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes computed at once in one process (`ARGON2_MAX_CONCURRENT`,
    /// default: the cores); a burst queues instead of exhausting memory.
    pub max_concurrent: usize,
    /// How long a request waits for a hashing slot before it is answered
    /// 503 with `Retry-After` (`ARGON2_QUEUE_TIMEOUT_MS`, default 10 s).
    pub queue_timeout: Duration,
}

/// The whole configuration of a function or of the local server.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Option<SecretString>,
    pub database_read_url: Option<SecretString>,
    /// In AWS: credentials secret (RDS JSON) and the proxy endpoints.
    pub db_secret_arn: Option<String>,
    pub db_host: Option<String>,
    pub db_read_host: Option<String>,
    pub db_port: Option<u16>,
    pub db_name: Option<String>,
    /// `sslmode` of URLs built from `DB_SECRET_ARN` (default `require`).
    pub db_sslmode: String,
    pub jwt_secret_arn: Option<String>,
    /// In AWS, for the cleanup function: the secret of the API's database
    /// role (`user_management_app`), whose password each deploy sets.
    pub app_db_secret_arn: Option<String>,
    /// That role's password, once read from `APP_DB_SECRET_ARN`.
    pub app_db_password: Option<SecretString>,
    pub elasticache_replication_group_id: Option<String>,
    /// `CACHE_SECRET_ARN`: the cache's AUTH token (a Secrets Manager
    /// secret string), added to the cache URL at start.
    pub cache_secret_arn: Option<String>,
    pub db_max_connections: u32,
    pub db_connect_timeout: Duration,
    pub db_statement_timeout: Duration,
    pub redis_url: Option<SecretString>,
    pub jwt_private_keys_pem: Vec<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl_days: u32,
    pub session_max_days: u32,
    pub refresh_reuse_grace: Duration,
    pub lockout_threshold: u32,
    pub lockout_minutes: u32,
    pub rate_limit_per_minute: u32,
    /// Per-endpoint overrides: (variable, limit), `RATE_LIMIT_<ENDPOINT>_PER_MINUTE`.
    pub rate_limit_overrides: Vec<(&'static str, u32)>,
    pub reset_mails_per_hour: u32,
    /// Verification mails (registration, resend, e-mail change) per address per hour.
    pub verification_mails_per_hour: u32,
    pub require_verified_email: bool,
    pub mail_transport: MailTransport,
    pub mail_from: String,
    pub app_base_url: String,
    pub bind_addr: SocketAddr,
    pub log_format: LogFormat,
    pub argon2: Argon2Params,
    /// Second factors: `MFA_ENCRYPTION_KEY`, `STEP_UP_MAX_AGE_SECONDS`, ….
    pub mfa: crate::mfa::config::MfaConfig,
    /// Phone verification: `SMS_TRANSPORT`, `SMS_OUTBOX_DIR`, `PHONE_CODES_PER_HOUR`.
    pub sms: crate::sms::SmsConfig,
    /// Browser clients: `CORS_ALLOWED_ORIGINS`, and the refresh cookie's shape.
    pub cors: Option<crate::http::cors::Cors>,
    pub refresh_cookie: crate::http::token_transport::RefreshCookie,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let in_lambda = get("AWS_LAMBDA_FUNCTION_NAME").is_some();

        let database_url = get("DATABASE_URL").map(SecretString::from);
        let database_read_url = get("DATABASE_READ_URL").map(SecretString::from);

        let mut jwt_private_keys_pem = Vec::new();
        if let Some(pem) = get("JWT_PRIVATE_KEY_PEM") {
            // Several keys may be given, concatenated; the last one signs.
            jwt_private_keys_pem = split_pem_keys(&pem)
                .into_iter()
                .map(SecretString::from)
                .collect();
            if jwt_private_keys_pem.is_empty() {
                return Err(ConfigError::Invalid {
                    name: "JWT_PRIVATE_KEY_PEM",
                    why: "no PEM private key found".into(),
                });
            }
        }

        let refresh_token_ttl_days = parse(&get, "REFRESH_TOKEN_TTL_DAYS", 14u32)?;
        if !(7..=30).contains(&refresh_token_ttl_days) {
            return Err(ConfigError::Invalid {
                name: "REFRESH_TOKEN_TTL_DAYS",
                why: "must be between 7 and 30".into(),
            });
        }

        let mail_transport = match get("MAIL_TRANSPORT").as_deref() {
            None | Some("outbox") => MailTransport::Outbox(
                get("MAIL_OUTBOX_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("target/mail-outbox")),
            ),
            Some("ses") => MailTransport::Ses,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "MAIL_TRANSPORT",
                    why: format!("expected `ses` or `outbox`, got `{other}`"),
                });
            }
        };

        let log_format = match get("LOG_FORMAT").as_deref() {
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            None if in_lambda => LogFormat::Json,
            None => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "LOG_FORMAT",
                    why: format!("expected `json` or `text`, got `{other}`"),
                });
            }
        };

        let db_port = match get("DB_PORT") {
            None => None,
            Some(raw) => Some(raw.trim().parse().map_err(|e: std::num::ParseIntError| {
                ConfigError::Invalid {
                    name: "DB_PORT",
                    why: e.to_string(),
                }
            })?),
        };
        let db_sslmode = get("DB_SSLMODE").unwrap_or_else(|| "require".into());
        if !["require", "verify-ca", "verify-full", "prefer", "disable"]
            .contains(&db_sslmode.as_str())
        {
            return Err(ConfigError::Invalid {
                name: "DB_SSLMODE",
                why: format!("unknown sslmode `{db_sslmode}`"),
            });
        }

        Ok(Self {
            database_url,
            database_read_url,
            db_secret_arn: get("DB_SECRET_ARN"),
            db_host: get("DB_HOST"),
            db_read_host: get("DB_READ_HOST"),
            db_port,
            db_name: get("DB_NAME"),
            db_sslmode,
            jwt_secret_arn: get("JWT_SECRET_ARN"),
            app_db_secret_arn: get("APP_DB_SECRET_ARN"),
            app_db_password: None,
            elasticache_replication_group_id: get("ELASTICACHE_REPLICATION_GROUP_ID"),
            cache_secret_arn: get("CACHE_SECRET_ARN"),
            db_max_connections: parse(&get, "DB_MAX_CONNECTIONS", if in_lambda { 2 } else { 20 })?,
            db_connect_timeout: Duration::from_secs(parse(&get, "DB_CONNECT_TIMEOUT_SECONDS", 3)?),
            db_statement_timeout: Duration::from_millis(parse(
                &get,
                "DB_STATEMENT_TIMEOUT_MS",
                5_000,
            )?),
            redis_url: get("REDIS_URL").map(SecretString::from),
            jwt_private_keys_pem,
            jwt_issuer: get("JWT_ISSUER").unwrap_or_else(|| "http://127.0.0.1:3000".into()),
            jwt_audience: get("JWT_AUDIENCE").unwrap_or_else(|| "user-management-api".into()),
            access_token_ttl: Duration::from_secs(parse(&get, "ACCESS_TOKEN_TTL_SECONDS", 900)?),
            refresh_token_ttl_days,
            session_max_days: parse(&get, "SESSION_MAX_DAYS", 30)?,
            refresh_reuse_grace: Duration::from_secs(parse(
                &get,
                "REFRESH_REUSE_GRACE_SECONDS",
                10,
            )?),
            lockout_threshold: parse(&get, "LOCKOUT_THRESHOLD", 5)?,
            lockout_minutes: parse(&get, "LOCKOUT_MINUTES", 15)?,
            rate_limit_per_minute: parse(&get, "RATE_LIMIT_PER_MINUTE", 30)?,
            rate_limit_overrides: {
                let mut overrides = Vec::new();
                for limit in Limit::ALL {
                    let name = limit.names().1;
                    if get(name).is_some() && !overrides.iter().any(|(n, _)| *n == name) {
                        overrides.push((name, parse(&get, name, 0u32)?));
                    }
                }
                overrides
            },
            reset_mails_per_hour: parse(&get, "RESET_MAILS_PER_HOUR", 3)?,
            verification_mails_per_hour: parse(&get, "VERIFICATION_MAILS_PER_HOUR", 3)?,
            require_verified_email: parse(&get, "REQUIRE_VERIFIED_EMAIL", false)?,
            mail_transport,
            mail_from: get("MAIL_FROM").unwrap_or_else(|| "no-reply@example.com".into()),
            app_base_url: get("APP_BASE_URL").unwrap_or_else(|| "http://127.0.0.1:3000".into()),
            bind_addr: parse(&get, "BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?,
            log_format,
            argon2: Argon2Params {
                memory_kib: parse(&get, "ARGON2_MEMORY_KIB", 19_456)?,
                iterations: parse(&get, "ARGON2_ITERATIONS", 2)?,
                parallelism: parse(&get, "ARGON2_PARALLELISM", 1)?,
                max_concurrent: parse(
                    &get,
                    "ARGON2_MAX_CONCURRENT",
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                )?,
                queue_timeout: Duration::from_millis(parse(
                    &get,
                    "ARGON2_QUEUE_TIMEOUT_MS",
                    10_000,
                )?),
            },
            mfa: crate::mfa::config::MfaConfig::from_lookup(&get)?,
            sms: crate::sms::SmsConfig::from_lookup(&get)?,
            cors: crate::http::cors::Cors::from_lookup(&get)?,
            refresh_cookie: Default::default(),
        })
    }
}

impl Config {
    /// Requests per minute allowed for `limit` (its variable, else
    /// `RATE_LIMIT_PER_MINUTE`).
    pub fn rate_limit_for(&self, limit: Limit) -> u32 {
        let variable = limit.names().1;
        self.rate_limit_overrides
            .iter()
            .find(|(name, _)| *name == variable)
            .map_or(self.rate_limit_per_minute, |(_, limit)| *limit)
    }
}

/// `name`'s value parsed, or `default` when unset; an error names it.
pub(crate) fn parse<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid {
                name,
                why: e.to_string(),
            }),
    }
}

/// Splits a string holding one or more PEM private keys into single keys.
pub(crate) fn split_pem_keys(pem: &str) -> Vec<String> {
    let pem = pem.replace("\\n", "\n");
    let mut keys = Vec::new();
    let mut current = String::new();
    for line in pem.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN") {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END") {
            keys.push(std::mem::take(&mut current));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() -> Result<(), ConfigError> {
        let c = config(&[])?;
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.refresh_token_ttl_days, 14);
        assert_eq!(c.session_max_days, 30);
        assert_eq!(c.refresh_reuse_grace, Duration::from_secs(10));
        assert_eq!((c.lockout_threshold, c.lockout_minutes), (5, 15));
        assert_eq!(c.rate_limit_per_minute, 30);
        assert_eq!(c.reset_mails_per_hour, 3);
        assert!(!c.require_verified_email);
        assert_eq!(c.jwt_issuer, "http://127.0.0.1:3000");
        assert_eq!(c.jwt_audience, "user-management-api");
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(
            c.mail_transport,
            MailTransport::Outbox(PathBuf::from("target/mail-outbox"))
        );
        assert_eq!(c.log_format, LogFormat::Text);
        Ok(())
    }

    #[test]
    fn lambda_defaults_to_json_logs_and_a_small_pool() -> Result<(), ConfigError> {
        let c = config(&[("AWS_LAMBDA_FUNCTION_NAME", "auth")])?;
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.db_max_connections, 2);
        Ok(())
    }

    #[test]
    fn an_invalid_value_names_its_variable() {
        let err = config(&[("LOCKOUT_THRESHOLD", "five")])
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("LOCKOUT_THRESHOLD")));
        let err = config(&[("REFRESH_TOKEN_TTL_DAYS", "3")])
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("REFRESH_TOKEN_TTL_DAYS")));
    }

    #[test]
    fn rate_limits_can_be_set_per_endpoint() -> Result<(), ConfigError> {
        let c = config(&[
            ("RATE_LIMIT_PER_MINUTE", "30"),
            ("RATE_LIMIT_LOGIN_PER_MINUTE", "5"),
        ])?;
        assert_eq!(c.rate_limit_for(Limit::Login), 5);
        assert_eq!(c.rate_limit_for(Limit::LoginAccount), 5);
        assert_eq!(c.rate_limit_for(Limit::Register), 30);
        Ok(())
    }

    #[test]
    fn several_pem_keys_are_split() {
        let two = "-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n\
                   -----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n";
        let keys = split_pem_keys(two);
        assert_eq!(keys.len(), 2);
        assert!(keys[1].contains("BBB"));
    }
}
