//! The PostgreSQL data layer: pools, the embedded migrations, and one module
//! per aggregate whose functions take `impl PgExecutor` (a pool or a transaction).

pub mod audit;
pub mod callers;
pub mod ceremonies;
pub mod coalesce;
pub mod logins;
pub mod mfa;
pub mod one_time_tokens;
pub mod passkeys;
pub mod phone;
pub mod rate_limits;
pub mod roles;
pub mod sessions;
pub mod stats;
pub mod users;

use std::str::FromStr;

use secrecy::ExposeSecret;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::config::{Config, ConfigError};

/// A pooled connection idle at least this long is pinged before use.
const PING_WHEN_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// The database role of the auth, users and admin functions (created by the
/// migrations; it cannot alter the audit trail).
pub const APP_ROLE: &str = "user_management_app";

/// The migrations of `migrations/`, embedded in every binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The write pool (primary) and the read pool (replica or the proxy's
/// read-only endpoint; the primary when none is configured).
#[derive(Debug, Clone)]
pub struct Db {
    pub write: PgPool,
    pub read: PgPool,
}

impl Db {
    /// Builds both pools without connecting: a database that is down at cold
    /// start makes requests answer 503, not the function fail to start.
    pub fn connect_lazy(config: &Config) -> Result<Self, ConfigError> {
        let url = config.database_url.as_ref().ok_or(ConfigError::Missing {
            name: "DATABASE_URL",
            why: "set it, or DB_SECRET_ARN with DB_HOST in AWS",
        })?;
        let write = Self::pool(config, url.expose_secret(), "DATABASE_URL")?;
        let read = match &config.database_read_url {
            Some(read_url) => Self::pool(config, read_url.expose_secret(), "DATABASE_READ_URL")?,
            None => write.clone(),
        };
        Ok(Self { write, read })
    }

    /// One pool for both roles (tests, tools).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            read: pool.clone(),
            write: pool,
        }
    }

    fn pool(config: &Config, url: &str, name: &'static str) -> Result<PgPool, ConfigError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| ConfigError::Invalid {
                name,
                why: e.to_string(),
            })?
            .application_name("user-management-api")
            .options([(
                "statement_timeout",
                config.db_statement_timeout.as_millis().to_string(),
            )]);
        Ok(PgPoolOptions::new()
            // sqlx pings every connection it hands out by default: a second
            // round trip per query. A connection used in the last few seconds
            // is alive; one idle longer may have been closed by RDS Proxy, a
            // firewall or a restart, so it is pinged first (a failed ping
            // closes it and the pool takes or opens another).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < PING_WHEN_IDLE_FOR {
                        return Ok(true);
                    }
                    Ok(sqlx::Connection::ping(conn).await.is_ok())
                })
            })
            .max_connections(config.db_max_connections)
            .min_connections(0)
            .acquire_timeout(config.db_connect_timeout)
            .idle_timeout(std::time::Duration::from_secs(600))
            .connect_lazy_with(options))
    }

    /// `true` when the primary answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query_scalar!("SELECT 1 AS \"one!\"")
            .fetch_one(&self.write)
            .await
            .is_ok()
    }
}
