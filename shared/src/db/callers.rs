//! The caller of an authenticated request, read on every request: status,
//! role ids and whether the access token's session is still live, in one
//! statement per request or, under load, per batch of requests
//! ([`Lookups`], `db::coalesce`).

use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::db::coalesce::{BatchFuture, Coalescer};
use crate::domain::user::{User, UserStatus};

/// What authorisation needs about a caller (or about the target of an
/// admin's action), read on every request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub status: UserStatus,
    pub deleted: bool,
    /// The caller's roles, named by the role catalog at `roles_version`
    /// (`security::role_catalog`).
    pub role_ids: Vec<Uuid>,
    pub roles_version: i64,
    /// Is the session named by the access token still live (a live,
    /// unexpired refresh token within the session's absolute lifetime)?
    pub session_live: bool,
}

/// The SQL of [`caller`] (for `EXPLAIN` and benchmarks).
pub const CALLER_SQL: &str = include_str!("../../queries/users/caller.sql");

/// The caller's status, role ids and whether session `session_id` is
/// live, in one statement (one round trip per authenticated request).
/// PostgreSQL is the only place revocations live, so none can be forgotten.
pub async fn caller(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    session_id: Uuid,
) -> sqlx::Result<Option<Caller>> {
    sqlx::query_file_as!(Caller, "queries/users/caller.sql", id, session_id)
        .fetch_optional(conn)
        .await
}

/// A caller look-up: the access token's user id and session id.
pub type CallerKey = (Uuid, Uuid);

/// The SQL of [`callers`] (for `EXPLAIN` and benchmarks).
pub const CALLERS_SQL: &str = include_str!("../../queries/users/callers.sql");

/// [`caller`] for a batch of requests in one statement (`db::coalesce`):
/// one answer per key, in the keys' order; `None` for a user that does not
/// exist.
pub async fn callers(
    conn: impl PgExecutor<'_>,
    keys: &[CallerKey],
) -> sqlx::Result<Vec<Option<Caller>>> {
    let (ids, sessions): (Vec<Uuid>, Vec<Uuid>) = keys.iter().copied().unzip();
    let rows = sqlx::query_file!("queries/users/callers.sql", &ids, &sessions)
        .fetch_all(conn)
        .await?;
    Ok(by_position(
        keys,
        rows.into_iter().map(|r| {
            let caller = Caller {
                status: r.status,
                deleted: r.deleted,
                role_ids: r.role_ids,
                roles_version: r.roles_version,
                session_live: r.session_live,
            };
            (r.batch_pos, r.id, caller)
        }),
    ))
}

/// The caller's own row with what [`caller`] reads: the routes about the
/// caller themself authorise and answer with one statement.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CallerRow {
    /// With no role names: the caller fills them from the role catalog.
    #[sqlx(flatten)]
    pub user: User,
    pub role_ids: Vec<Uuid>,
    pub roles_version: i64,
    pub session_live: bool,
}

/// The SQL of [`caller_rows`] (`users.*`, as the `User` row reads its
/// columns by name; checked by the tests of every `/v1/users/me` route, as a
/// compile-time check cannot see through `#[sqlx(flatten)]`).
pub const CALLER_ROWS_SQL: &str = include_str!("../../queries/users/me.sql");

/// A row of a batched statement with its key's position (1-based).
#[derive(sqlx::FromRow)]
struct Numbered<T> {
    batch_pos: i64,
    #[sqlx(flatten)]
    row: T,
}

/// [`callers`] with each caller's own row, in one statement.
pub async fn caller_rows(
    conn: impl PgExecutor<'_>,
    keys: &[CallerKey],
) -> sqlx::Result<Vec<Option<CallerRow>>> {
    let (ids, sessions): (Vec<Uuid>, Vec<Uuid>) = keys.iter().copied().unzip();
    let rows: Vec<Numbered<CallerRow>> = sqlx::query_as(CALLER_ROWS_SQL)
        .bind(ids)
        .bind(sessions)
        .fetch_all(conn)
        .await?;
    Ok(by_position(
        keys,
        rows.into_iter()
            .map(|r| (r.batch_pos, r.row.user.id, r.row)),
    ))
}

/// One answer per key: each numbered row (position 1-based, user id) at
/// its position, `None` where no row came. A row whose user is not its
/// key's is dropped, never handed to another request (it cannot happen
/// with the statements as written; this keeps a future edit from making it).
fn by_position<T>(
    keys: &[CallerKey],
    rows: impl IntoIterator<Item = (i64, Uuid, T)>,
) -> Vec<Option<T>> {
    let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
    for (n, id, row) in rows {
        let at = usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
        match at.and_then(|i| Some((keys.get(i)?, out.get_mut(i)?))) {
            Some(((key, _), slot)) if *key == id => *slot = Some(row),
            _ => tracing::error!(position = n, "a batched caller row did not match its key"),
        }
    }
    out
}

/// The largest batch: 64 keys keep the statement's arrays small and its
/// plan a nested loop over primary-key look-ups.
const MAX_BATCH: usize = 64;

/// A batch's deadline beyond the pool's wait and the statement's limit.
const MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The coalesced caller look-ups of a process, on the primary (a revocation
/// must hold from the moment it commits, so never a replica).
#[derive(Debug, Clone)]
pub struct Lookups {
    callers: Coalescer<CallerKey, Caller>,
    rows: Coalescer<CallerKey, CallerRow>,
}

impl Lookups {
    /// At most `max_in_flight` batches of each kind at once; a batch is
    /// given up after the pool's acquire timeout plus `statement_timeout`
    /// and a margin (503).
    pub fn new(
        pool: &PgPool,
        max_in_flight: usize,
        statement_timeout: std::time::Duration,
    ) -> Self {
        let deadline = pool.options().get_acquire_timeout() + statement_timeout + MARGIN;
        let (p1, p2) = (pool.clone(), pool.clone());
        Self {
            callers: Coalescer::new(
                max_in_flight,
                MAX_BATCH,
                deadline,
                move |keys: Vec<CallerKey>| {
                    let pool = p1.clone();
                    Box::pin(async move { callers(&pool, &keys).await }) as BatchFuture<Caller>
                },
            ),
            rows: Coalescer::new(
                max_in_flight,
                MAX_BATCH,
                deadline,
                move |keys: Vec<CallerKey>| {
                    let pool = p2.clone();
                    Box::pin(async move { caller_rows(&pool, &keys).await })
                        as BatchFuture<CallerRow>
                },
            ),
        }
    }

    /// [`caller`], read by a statement that starts after this call.
    pub async fn caller(&self, id: Uuid, session_id: Uuid) -> Result<Option<Caller>, crate::Error> {
        self.callers.get((id, session_id)).await
    }

    /// [`caller_rows`] for one caller, read by a statement that starts after this call.
    pub async fn caller_row(
        &self,
        id: Uuid,
        session_id: Uuid,
    ) -> Result<Option<CallerRow>, crate::Error> {
        self.rows.get((id, session_id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reaches_only_the_key_it_belongs_to() {
        let (a, b, s) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let keys = [(a, s), (b, s), (a, s)];
        let rows = [
            (1, b, "b's row at a's position"),
            (2, b, "b"),
            (3, a, "a again"),
            (0, a, "position 0"),
            (4, a, "past the end"),
            (-1, a, "negative"),
        ];
        assert_eq!(
            by_position(&keys, rows),
            vec![None, Some("b"), Some("a again")]
        );
    }
}
