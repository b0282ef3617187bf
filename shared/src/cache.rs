//! Redis / ElastiCache: connected on first use, reconnecting by itself, and
//! optional: every caller has a PostgreSQL fallback when it is down.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

/// A lazily connected Redis handle; clones share the connection.
#[derive(Clone)]
pub struct Cache {
    client: redis::Client,
    conn: std::sync::Arc<OnceCell<ConnectionManager>>,
}

impl Cache {
    /// Parses the URL (`redis://`, or `rediss://` for TLS as ElastiCache
    /// in-transit encryption needs); does not connect.
    pub fn new(url: &SecretString) -> redis::RedisResult<Self> {
        // rustls needs a process-wide crypto provider: ring, as everywhere else.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            client: redis::Client::open(url.expose_secret())?,
            conn: Default::default(),
        })
    }

    /// The shared connection, connecting first if need be (the connection
    /// settings are only built when a connection is made, not per call).
    pub async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        self.conn
            .get_or_try_init(|| {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(500)))
                    .set_response_timeout(Some(Duration::from_millis(500)))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
    }

    /// Why Redis refused this URL's credentials (connecting, then a PING):
    /// `Some` only for an authentication refusal. `None` when it answered,
    /// or could not be reached at all: the cache is optional, every caller
    /// falls back, so an unreachable cache does not stop a start.
    pub async fn auth_refusal(&self) -> Option<String> {
        let answered = match self.conn().await {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map(drop),
            Err(err) => Err(err),
        };
        match answered {
            Err(err)
                if err.kind() == redis::ErrorKind::AuthenticationFailed
                    || matches!(err.code(), Some("NOAUTH" | "WRONGPASS")) =>
            {
                Some(err.code().unwrap_or("authentication failed").to_string())
            }
            _ => None,
        }
    }

    /// `true` when Redis answers PING.
    pub async fn ping(&self) -> bool {
        match self.conn().await {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}
