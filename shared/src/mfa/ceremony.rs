//! The server-side state of a WebAuthn ceremony between its start and its
//! finish: in Redis when configured (`SET … EX`, taken with `GETDEL`), in
//! the `webauthn_ceremonies` table otherwise or while Redis does not
//! answer. A state is taken once: its finish deletes it whatever the
//! outcome, so a challenge is never answered twice. Lambdas keep nothing
//! between requests, so nothing lives in memory.

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::db::ceremonies as store;
use crate::error::{Error, Result};
use crate::state::AppState;

/// How long a started ceremony waits for its finish.
pub const CEREMONY_TTL_SECONDS: i32 = 300;

/// What a ceremony belongs to; one of each at a time (a new start replaces
/// the one before).
#[derive(Debug, Clone, Copy)]
pub enum Ceremony<'a> {
    /// Registering a passkey, in this session.
    Register(Uuid),
    /// A passkey as the step-up of this session.
    StepUp(Uuid),
    /// A passkey as the second step of the login with this `mfa_token`
    /// hash.
    Login(&'a str),
    /// A passwordless login, by the id its start answered.
    Passwordless(Uuid),
}

impl Ceremony<'_> {
    fn key(&self) -> String {
        match self {
            Self::Register(session) => format!("register:{session}"),
            Self::StepUp(session) => format!("step_up:{session}"),
            Self::Login(hash) => format!("login:{hash}"),
            Self::Passwordless(id) => format!("passwordless:{id}"),
        }
    }
}

fn redis_key(key: &str) -> String {
    format!("webauthn:{key}")
}

/// Keeps `value` for `ceremony` for [`CEREMONY_TTL_SECONDS`] (`user_id`
/// lets anonymisation remove it).
pub async fn put<T: Serialize>(
    state: &AppState,
    ceremony: Ceremony<'_>,
    user_id: Option<Uuid>,
    value: &T,
) -> Result<()> {
    let key = ceremony.key();
    let json = serde_json::to_value(value).map_err(Error::internal)?;
    if let Some(cache) = &state.cache {
        let stored = match cache.conn().await {
            Ok(mut conn) => redis::cmd("SET")
                .arg(redis_key(&key))
                .arg(json.to_string())
                .arg("EX")
                .arg(CEREMONY_TTL_SECONDS)
                .query_async::<()>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        };
        if stored {
            return Ok(());
        }
        tracing::warn!("Redis did not keep a WebAuthn ceremony; kept in PostgreSQL");
    }
    store::put(&state.db.write, &key, user_id, &json, CEREMONY_TTL_SECONDS).await?;
    Ok(())
}

/// Takes (and deletes) the state of `ceremony`: `None` when none was
/// started, it expired or it was taken before. 503 when Redis is
/// configured but does not answer: the state may be there, so the answer
/// must not be judged (nor counted) without it.
pub async fn take<T: DeserializeOwned>(
    state: &AppState,
    ceremony: Ceremony<'_>,
) -> Result<Option<T>> {
    let key = ceremony.key();
    let mut redis_down = None;
    let mut found = None;
    if let Some(cache) = &state.cache {
        let taken = match cache.conn().await {
            Ok(mut conn) => {
                redis::cmd("GETDEL")
                    .arg(redis_key(&key))
                    .query_async::<Option<String>>(&mut conn)
                    .await
            }
            Err(err) => Err(err),
        };
        match taken {
            Ok(value) => found = value,
            // Not found in PostgreSQL either: it may be in Redis.
            Err(err) => redis_down = Some(err),
        }
    }
    // Always also from PostgreSQL: a state kept there while Redis was
    // down must not outlive a newer one taken from Redis.
    let kept = store::take(&state.db.write, &key).await?;
    let json = match (found, kept) {
        (Some(raw), _) => serde_json::from_str(&raw).map_err(Error::internal)?,
        (None, Some(value)) => value,
        (None, None) => match redis_down {
            Some(err) => return Err(Error::Unavailable(err.into())),
            None => return Ok(None),
        },
    };
    Ok(Some(serde_json::from_value(json).map_err(Error::internal)?))
}
