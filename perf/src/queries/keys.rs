//! The random keys the timed queries use, sampled from the database, and
//! the arguments each class builds from them.

use super::*;

/// A sampled user.
#[derive(Debug, Clone)]
pub(super) struct SampleUser {
    pub(super) id: Uuid,
    pub(super) email: String,
    pub(super) username: String,
    pub(super) first_name: Option<String>,
    pub(super) last_name: Option<String>,
}

/// id, email, username, first name, last name.
type UserRow = (Uuid, String, String, Option<String>, Option<String>);

/// Random keys, loaded once.
pub(super) struct Keys {
    pub(super) users: Vec<SampleUser>,
    /// Users with both names (search terms).
    pub(super) named: Vec<SampleUser>,
    pub(super) tokens: Vec<String>,
    pub(super) statuses: Vec<UserStatus>,
    /// Per status: the cursor (as the API hands it out) after page
    /// `DEEP_PAGE - 1`, and that page number (lower on small databases).
    pub(super) deep_cursors: Vec<(UserStatus, String, i64)>,
    pub(super) actions: Vec<AuditAction>,
    pub(super) windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

pub(super) fn pick<T>(items: &[T], i: usize) -> Result<&T> {
    items
        .get(i % items.len().max(1))
        .context("no sample keys for this class (is the database seeded?)")
}

pub(super) async fn load_keys(pool: &PgPool, wanted: usize) -> Result<Keys> {
    let rows: Vec<UserRow> = sqlx::query_as(
        "SELECT id, email, username, first_name, last_name FROM users
         WHERE deleted_at IS NULL ORDER BY random() LIMIT $1",
    )
    .bind(wanted as i64)
    .fetch_all(pool)
    .await?;
    let users: Vec<SampleUser> = rows
        .into_iter()
        .map(|(id, email, username, first_name, last_name)| SampleUser {
            id,
            email,
            username,
            first_name,
            last_name,
        })
        .collect();
    let named = users
        .iter()
        .filter(|u| u.first_name.is_some() && u.last_name.is_some())
        .cloned()
        .collect();
    let tokens: Vec<String> =
        sqlx::query_scalar("SELECT token_hash FROM refresh_tokens ORDER BY random() LIMIT $1")
            .bind(wanted as i64)
            .fetch_all(pool)
            .await?;

    // The statuses a list can filter on (the deleted are never listed).
    let mut statuses = Vec::new();
    let mut deep_cursors = Vec::new();
    for status in [
        UserStatus::Active,
        UserStatus::Suspended,
        UserStatus::Inactive,
        UserStatus::PendingVerification,
    ] {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM users WHERE deleted_at IS NULL AND status = $1",
        )
        .bind(status)
        .fetch_one(pool)
        .await?;
        if count == 0 {
            continue;
        }
        statuses.push(status);
        // The last row of page DEEP_PAGE - 1 in the list's order: the cursor
        // the API returns with that page.
        let page = ((count - 1) / LIMIT + 1).min(DEEP_PAGE);
        if page < 2 {
            continue;
        }
        let (at, id): (DateTime<Utc>, Uuid) = sqlx::query_as(
            "SELECT created_at, id FROM users WHERE deleted_at IS NULL AND status = $1
             ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
        )
        .bind(status)
        .bind((page - 1) * LIMIT - 1)
        .fetch_one(pool)
        .await?;
        let cursor = pagination::encode(&UserCursor { at: Some(at), id });
        deep_cursors.push((status, cursor, page));
    }

    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(pool).await?;
    let mut rng = StdRng::seed_from_u64(0xa0d1);
    let windows = (0..wanted.min(5_000))
        .map(|_| {
            let from = now - chrono::Duration::minutes(rng.gen_range(60 * 24..365 * 24 * 60));
            (from, from + chrono::Duration::days(1))
        })
        .collect();
    Ok(Keys {
        users,
        named,
        tokens,
        statuses,
        deep_cursors,
        actions: vec![
            AuditAction::LoginSucceeded,
            AuditAction::TokenRefreshed,
            AuditAction::LoginFailed,
            AuditAction::Logout,
            AuditAction::ProfileUpdated,
            AuditAction::PasswordChanged,
            AuditAction::UserRegistered,
            AuditAction::StatusChanged,
            AuditAction::AccountLocked,
            AuditAction::RefreshTokenReused,
        ],
        windows,
    })
}

/// The filter and cursor of a list class for sample `i`.
pub(super) fn list_args(
    class: Class,
    keys: &Keys,
    i: usize,
) -> Result<(UserFilter, Option<UserCursor>)> {
    Ok(match class {
        Class::ListFirstPage => (
            UserFilter {
                status: Some(*pick(&keys.statuses, i)?),
                ..UserFilter::default()
            },
            None,
        ),
        Class::ListDeepPage => {
            let (status, cursor, _) = pick(&keys.deep_cursors, i)?;
            // Decoded as the handler decodes `?cursor=`.
            let after: Option<UserCursor> = pagination::decode(Some(cursor))
                .map_err(|e| anyhow::anyhow!("decoding a cursor: {e}"))?;
            (
                UserFilter {
                    status: Some(*status),
                    ..UserFilter::default()
                },
                after,
            )
        }
        Class::SearchFullName | Class::SearchOneTerm => {
            let u = pick(&keys.named, i)?;
            let last = u.last_name.clone().unwrap_or_default();
            let q = if class == Class::SearchFullName {
                format!("{} {last}", u.first_name.clone().unwrap_or_default())
            } else {
                last
            };
            (
                UserFilter {
                    q: Some(q.trim().to_string()),
                    ..UserFilter::default()
                },
                None,
            )
        }
        _ => anyhow::bail!("{class:?} is not a list"),
    })
}

pub(super) fn audit_filter(class: Class, keys: &Keys, i: usize) -> Result<AuditFilter> {
    Ok(match class {
        Class::AuditByUser => AuditFilter {
            user_id: Some(pick(&keys.users, i)?.id),
            ..AuditFilter::default()
        },
        Class::AuditByAction => AuditFilter {
            action: Some(*pick(&keys.actions, i)?),
            ..AuditFilter::default()
        },
        Class::AuditByTime => {
            let (from, to) = *pick(&keys.windows, i)?;
            AuditFilter {
                from: Some(from),
                to: Some(to),
                ..AuditFilter::default()
            }
        }
        _ => anyhow::bail!("{class:?} is not an audit query"),
    })
}
