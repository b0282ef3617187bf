//! `AppState`: everything a handler needs, built once per cold start.

use std::sync::Arc;

use crate::cache::Cache;
use crate::config::Config;
use crate::db::Db;
use crate::db::callers::Lookups;
use crate::mail::Mailer;
use crate::mfa::Mfa;
use crate::mfa::secret_box::SecretBox;
use crate::security::role_catalog::RoleCatalog;
use crate::security::{JwtKeys, PasswordHasher};
use crate::sms::Texter;

/// Shared by every request of a container; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    /// The caller look-up of every authenticated request, coalesced under load.
    pub callers: Lookups,
    pub cache: Option<Cache>,
    pub keys: Arc<JwtKeys>,
    /// The roles' names and permissions, kept current by version.
    pub roles: RoleCatalog,
    pub hasher: PasswordHasher,
    pub mailer: Mailer,
    /// Second factors: the key that seals TOTP secrets.
    pub mfa: Arc<Mfa>,
    /// Text messages (phone verification codes).
    pub texter: Texter,
}

impl AppState {
    /// Builds the state from configuration: lazy pools, the Redis client,
    /// signing keys, the password hasher and the mailer.
    pub fn from_config(config: Config) -> anyhow::Result<Self> {
        let db = Db::connect_lazy(&config)?;
        Self::with_db(config, db)
    }

    /// Builds the state as a Lambda function does: settings named by
    /// reference (secrets, ElastiCache) are resolved through AWS first.
    pub async fn from_config_in_aws(mut config: Config) -> anyhow::Result<Self> {
        let sdk = if crate::aws::needed(&config) {
            let sdk = crate::aws::sdk_config().await;
            crate::aws::resolve(&mut config, &sdk).await?;
            Some(sdk)
        } else {
            None
        };
        let db = Db::connect_lazy(&config)?;
        Self::build(config, db, sdk.as_ref())
    }

    /// Builds the state around existing pools (tests, tools).
    pub fn with_db(config: Config, db: Db) -> anyhow::Result<Self> {
        Self::build(config, db, None)
    }

    fn build(config: Config, db: Db, sdk: Option<&aws_config::SdkConfig>) -> anyhow::Result<Self> {
        let cache = config.redis_url.as_ref().map(Cache::new).transpose()?;
        let keys = JwtKeys::new(
            &config.jwt_private_keys_pem,
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl,
        )?;
        let hasher = PasswordHasher::new(config.argon2)?;
        let mfa = Mfa {
            vault: SecretBox::new(&config.mfa.encryption_keys)?,
            issuer: config.mfa.issuer.clone(),
            webauthn: crate::mfa::passkeys::relying_party(&config.mfa)?,
        };
        let mailer = Mailer::new(&config.mail_transport, &config.mail_from, sdk)?;
        let texter = Texter::new(&config.sms.transport, sdk)?;
        let callers = Lookups::new(
            &db.write,
            caller_batches(&config),
            config.db_statement_timeout,
        );
        Ok(Self {
            callers,
            config: Arc::new(config),
            roles: RoleCatalog::default(),
            db,
            cache,
            keys: Arc::new(keys),
            hasher,
            mailer,
            mfa: Arc::new(mfa),
            texter,
        })
    }
}

/// How many caller batches of each kind (the caller alone, the caller with
/// their row) may run at once. Fewer in flight means larger batches: on 2
/// cores with 32 clients, `GET /v1/users/me` answered 27.5, 26.0 and 23.8
/// thousand requests/s with 1, 2 and 4 (BENCHMARKS.md). Two, so one slow
/// batch does not hold up every authenticated request, and the two kinds
/// together never hold more than half the pool (a Lambda container's pool of
/// 2 runs one of each; it serves one request at a time anyway).
fn caller_batches(config: &Config) -> usize {
    const IN_FLIGHT: usize = 2;
    IN_FLIGHT.min(config.db_max_connections as usize / 4).max(1)
}
