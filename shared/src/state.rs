//! `AppState`: everything a handler needs, built once per cold start.

use std::sync::Arc;

use crate::cache::Cache;
use crate::config::Config;
use crate::db::Db;

/// Shared by every request of a container; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub cache: Option<Cache>,
}

impl AppState {
    /// Builds the state from configuration: lazy pools, the Redis client.
    pub fn from_config(config: Config) -> anyhow::Result<Self> {
        let db = Db::connect_lazy(&config)?;
        Self::with_db(config, db)
    }

    /// Builds the state around existing pools (tests, tools).
    pub fn with_db(config: Config, db: Db) -> anyhow::Result<Self> {
        let cache = config.redis_url.as_ref().map(Cache::new).transpose()?;
        Ok(Self {
            config: Arc::new(config),
            db,
            cache,
        })
    }
}
