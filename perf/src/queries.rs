//! Query classes timed through the data layer itself (the functions the
//! handlers call, on a pool as the handlers use it), one call at a time,
//! with random keys sampled from the database, plus the indexes the plan of
//! the same SQL uses (`EXPLAIN (FORMAT JSON)` with the first samples' parameters).
//!
//! For the `QueryBuilder` lists the EXPLAIN runs the builder's own SQL
//! (`list_query` with an `EXPLAIN` prefix); for the others, the text of the
//! very `shared/queries/` file their `query_file!` macro compiles.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use shared::db::audit::{self, AuditAction, AuditFilter};
use shared::db::sessions::{self, FIND_BY_HASH_SQL};
use shared::db::users::{
    self, CALLER_SQL, FIND_BY_ID_SQL, FIND_FOR_LOGIN_SQL, ID_BY_EMAIL_SQL, UserCursor, UserFilter,
};
use shared::domain::UserStatus;
use shared::http::pagination;
use sqlx::PgPool;
use uuid::Uuid;

use crate::stats::{Summary, ms};

/// The page size of the lists (the API's default `limit`).
const LIMIT: i64 = pagination::DEFAULT_LIMIT;
/// The deep page of the keyset-pagination class.
const DEEP_PAGE: i64 = 500;
/// Samples whose plans are read for the index column.
const EXPLAINED: usize = 10;

/// One query class: its targets, latencies and the indexes its plan uses.
#[derive(Debug, Clone)]
pub struct ClassResult {
    pub class: String,
    /// The data-layer function called.
    pub function: &'static str,
    /// The original design's target (docs/schema.md, Performance).
    pub design_target: &'static str,
    /// Our goal for the p95.
    pub goal_p95: Duration,
    pub summary: Summary,
    /// Rows returned per call, on average.
    pub mean_rows: f64,
    /// Every `Index Name` of the plans of the first samples (audit
    /// partitions folded into one `audit_logs_*_…` entry with their count).
    pub indexes: Vec<String>,
    /// Relations the plan reads with a sequential scan.
    pub seq_scans: Vec<String>,
}

impl ClassResult {
    /// The p95 is within the goal (and there were samples).
    pub fn met(&self) -> bool {
        self.summary.count > 0 && self.summary.p95 <= self.goal_p95
    }
}

// ------------------------------------------------------------- the classes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    ById,
    ByEmail,
    Caller,
    LoginByEmail,
    LoginByUsername,
    ListFirstPage,
    ListDeepPage,
    SearchFullName,
    SearchOneTerm,
    AuditByUser,
    AuditByAction,
    AuditByTime,
    RefreshToken,
}

const CLASSES: [Class; 13] = [
    Class::ById,
    Class::ByEmail,
    Class::Caller,
    Class::LoginByEmail,
    Class::LoginByUsername,
    Class::ListFirstPage,
    Class::ListDeepPage,
    Class::SearchFullName,
    Class::SearchOneTerm,
    Class::AuditByUser,
    Class::AuditByAction,
    Class::AuditByTime,
    Class::RefreshToken,
];

impl Class {
    /// Label, data-layer function, design target, goal (p95).
    fn meta(self) -> (&'static str, &'static str, &'static str, Duration) {
        let us = Duration::from_micros;
        match self {
            Self::ById => ("user by id", "users::find_by_id", "< 5 ms", us(500)),
            Self::ByEmail => ("user by e-mail", "users::id_by_email", "< 5 ms", us(500)),
            Self::Caller => (
                "caller (auth, every request)",
                "users::caller",
                "< 5 ms",
                us(500),
            ),
            Self::LoginByEmail => (
                "login lookup by e-mail",
                "users::find_for_login",
                "< 10 ms",
                us(1_000),
            ),
            Self::LoginByUsername => (
                "login lookup by username",
                "users::find_for_login",
                "< 10 ms",
                us(1_000),
            ),
            Self::ListFirstPage => (
                "list by status, newest first, page 1",
                "users::list",
                "< 15 ms",
                us(2_000),
            ),
            Self::ListDeepPage => (
                "list by status, newest first, page 500 (keyset cursor)",
                "users::list",
                "< 15 ms",
                us(2_000),
            ),
            Self::SearchFullName => (
                "full-text search, full name (`q=first last`)",
                "users::list",
                "< 50 ms",
                us(10_000),
            ),
            Self::SearchOneTerm => (
                "full-text search, one common term (`q=last`)",
                "users::list",
                "< 50 ms",
                us(10_000),
            ),
            Self::AuditByUser => ("audit log by user", "audit::list", "< 20 ms", us(2_000)),
            Self::AuditByAction => ("audit log by action", "audit::list", "< 20 ms", us(2_000)),
            Self::AuditByTime => (
                "audit log by time range (1 day)",
                "audit::list",
                "< 20 ms",
                us(2_000),
            ),
            Self::RefreshToken => (
                "refresh-token validation",
                "sessions::find_by_hash",
                "< 5 ms",
                us(500),
            ),
        }
    }
}

/// A sampled user.
#[derive(Debug, Clone)]
struct SampleUser {
    id: Uuid,
    email: String,
    username: String,
    first_name: Option<String>,
    last_name: Option<String>,
}

/// id, email, username, first name, last name.
type UserRow = (Uuid, String, String, Option<String>, Option<String>);

/// Random keys, loaded once.
struct Keys {
    users: Vec<SampleUser>,
    /// Users with both names (search terms).
    named: Vec<SampleUser>,
    tokens: Vec<String>,
    statuses: Vec<UserStatus>,
    /// Per status: the cursor (as the API hands it out) after page
    /// `DEEP_PAGE - 1`, and that page number (lower on small databases).
    deep_cursors: Vec<(UserStatus, String, i64)>,
    actions: Vec<AuditAction>,
    windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

fn pick<T>(items: &[T], i: usize) -> Result<&T> {
    items
        .get(i % items.len().max(1))
        .context("no sample keys for this class (is the database seeded?)")
}

async fn load_keys(pool: &PgPool, wanted: usize) -> Result<Keys> {
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
fn list_args(class: Class, keys: &Keys, i: usize) -> Result<(UserFilter, Option<UserCursor>)> {
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

fn audit_filter(class: Class, keys: &Keys, i: usize) -> Result<AuditFilter> {
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

/// One call of the class's data-layer function; returns the rows it found.
async fn call(pool: &PgPool, class: Class, keys: &Keys, i: usize) -> Result<usize> {
    Ok(match class {
        Class::ById => usize::from(
            users::find_by_id(pool, pick(&keys.users, i)?.id)
                .await?
                .is_some(),
        ),
        Class::ByEmail => usize::from(
            users::id_by_email(pool, &pick(&keys.users, i)?.email)
                .await?
                .is_some(),
        ),
        Class::Caller => usize::from(
            users::caller(pool, pick(&keys.users, i)?.id, uuid::Uuid::nil())
                .await?
                .is_some(),
        ),
        Class::LoginByEmail => usize::from(
            users::find_for_login(pool, &pick(&keys.users, i)?.email)
                .await?
                .is_some(),
        ),
        Class::LoginByUsername => usize::from(
            users::find_for_login(pool, &pick(&keys.users, i)?.username)
                .await?
                .is_some(),
        ),
        Class::ListFirstPage
        | Class::ListDeepPage
        | Class::SearchFullName
        | Class::SearchOneTerm => {
            let (filter, after) = list_args(class, keys, i)?;
            users::list(pool, &filter, after.as_ref(), LIMIT)
                .await?
                .len()
        }
        Class::AuditByUser | Class::AuditByAction | Class::AuditByTime => {
            let filter = audit_filter(class, keys, i)?;
            audit::list(pool, &filter, None, LIMIT).await?.len()
        }
        Class::RefreshToken => usize::from(
            sessions::find_by_hash(pool, pick(&keys.tokens, i)?)
                .await?
                .is_some(),
        ),
    })
}

/// `EXPLAIN (FORMAT JSON)` of exactly what [`call`] runs for sample `i`.
async fn explain(pool: &PgPool, class: Class, keys: &Keys, i: usize) -> Result<Value> {
    const EXPLAIN: &str = "EXPLAIN (FORMAT JSON) ";
    let by_sql = |sql: &str| sqlx::AssertSqlSafe(format!("{EXPLAIN}{sql}"));
    let plan = match class {
        Class::ById => {
            sqlx::query_scalar(by_sql(FIND_BY_ID_SQL))
                .bind(pick(&keys.users, i)?.id)
                .fetch_one(pool)
                .await?
        }
        Class::ByEmail => {
            sqlx::query_scalar(by_sql(ID_BY_EMAIL_SQL))
                .bind(&pick(&keys.users, i)?.email)
                .fetch_one(pool)
                .await?
        }
        Class::Caller => {
            sqlx::query_scalar(by_sql(CALLER_SQL))
                .bind(pick(&keys.users, i)?.id)
                .bind(uuid::Uuid::nil())
                .fetch_one(pool)
                .await?
        }
        Class::LoginByEmail => {
            sqlx::query_scalar(by_sql(FIND_FOR_LOGIN_SQL))
                .bind(&pick(&keys.users, i)?.email)
                .fetch_one(pool)
                .await?
        }
        Class::LoginByUsername => {
            sqlx::query_scalar(by_sql(FIND_FOR_LOGIN_SQL))
                .bind(&pick(&keys.users, i)?.username)
                .fetch_one(pool)
                .await?
        }
        Class::ListFirstPage
        | Class::ListDeepPage
        | Class::SearchFullName
        | Class::SearchOneTerm => {
            let (filter, after) = list_args(class, keys, i)?;
            // `users::list` fetches `limit + 1` rows.
            let mut qb = users::list_query(EXPLAIN, &filter, after.as_ref(), LIMIT + 1);
            qb.build_query_scalar::<Value>().fetch_one(pool).await?
        }
        Class::AuditByUser | Class::AuditByAction | Class::AuditByTime => {
            let filter = audit_filter(class, keys, i)?;
            let mut qb = audit::list_query(EXPLAIN, &filter, None, LIMIT + 1);
            qb.build_query_scalar::<Value>().fetch_one(pool).await?
        }
        Class::RefreshToken => {
            sqlx::query_scalar(by_sql(FIND_BY_HASH_SQL))
                .bind(pick(&keys.tokens, i)?)
                .fetch_one(pool)
                .await?
        }
    };
    Ok(plan)
}

/// The index names and sequentially scanned relations of JSON plans, with
/// partitions folded (`audit_logs_*_…`, with how many distinct partitions).
fn plan_nodes(plan: &Value) -> (Vec<String>, Vec<String>) {
    type Names = BTreeMap<String, BTreeSet<String>>;
    fn walk(v: &Value, indexes: &mut Names, seq: &mut Names) {
        match v {
            Value::Object(map) => {
                if let Some(name) = map.get("Index Name").and_then(Value::as_str) {
                    indexes
                        .entry(fold_partition(name))
                        .or_default()
                        .insert(name.to_string());
                }
                if map.get("Node Type").and_then(Value::as_str) == Some("Seq Scan")
                    && let Some(rel) = map.get("Relation Name").and_then(Value::as_str)
                {
                    seq.entry(fold_partition(rel))
                        .or_default()
                        .insert(rel.to_string());
                }
                for child in map.values() {
                    walk(child, indexes, seq);
                }
            }
            Value::Array(items) => {
                for child in items {
                    walk(child, indexes, seq);
                }
            }
            _ => {}
        }
    }
    let (mut indexes, mut seq) = (Names::new(), Names::new());
    walk(plan, &mut indexes, &mut seq);
    let show = |m: Names| {
        m.into_iter()
            .map(|(name, all)| {
                if name.contains('*') {
                    format!("{name} (×{})", all.len())
                } else {
                    name
                }
            })
            .collect()
    };
    (show(indexes), show(seq))
}

/// `audit_logs_2026_01_user_id_created_at_id_idx` → `audit_logs_*_user_id_created_at_id_idx`.
fn fold_partition(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("audit_logs_") {
        let b = rest.as_bytes();
        let dated = b.len() >= 7
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'_'
            && b[5..7].iter().all(u8::is_ascii_digit);
        if dated {
            return match rest.get(8..) {
                Some(tail) if !tail.is_empty() => format!("audit_logs_*_{tail}"),
                _ => "audit_logs_*".to_string(),
            };
        }
    }
    name.to_string()
}

/// Times every class, `samples` calls each after a warm-up.
pub async fn run(pool: &PgPool, samples: usize) -> Result<Vec<ClassResult>> {
    let samples = samples.max(1);
    let warmup = (samples / 5).clamp(1, 200);
    let keys = load_keys(pool, (samples + warmup).min(20_000)).await?;
    let mut results = Vec::new();
    for class in CLASSES {
        let (label, function, design_target, goal_p95) = class.meta();
        let mut label = label.to_string();
        if class == Class::ListDeepPage
            && let Some(page) = keys.deep_cursors.iter().map(|(_, _, p)| *p).min()
            && page < DEEP_PAGE
        {
            label = label.replace("page 500", &format!("page {page} (the last)"));
        }
        for j in 0..warmup {
            call(pool, class, &keys, samples + j)
                .await
                .with_context(|| format!("{label} (warm-up)"))?;
        }
        let mut times = Vec::with_capacity(samples);
        let mut rows = 0usize;
        for i in 0..samples {
            let started = Instant::now();
            rows += call(pool, class, &keys, i)
                .await
                .with_context(|| label.clone())?;
            times.push(started.elapsed());
        }
        // The plans of the first samples (every status and action of the
        // rotation): the planner may serve different keys differently.
        let mut plans = Vec::new();
        for i in 0..samples.min(EXPLAINED) {
            plans.push(
                explain(pool, class, &keys, i)
                    .await
                    .with_context(|| format!("EXPLAIN of {label}"))?,
            );
        }
        let (indexes, seq_scans) = plan_nodes(&Value::Array(plans));
        results.push(ClassResult {
            class: label,
            function,
            design_target,
            goal_p95,
            summary: Summary::of(&mut times),
            mean_rows: rows as f64 / samples as f64,
            indexes,
            seq_scans,
        });
    }
    Ok(results)
}

/// The results as a markdown table.
pub fn markdown(results: &[ClassResult]) -> String {
    let mut out = String::from(
        "| class | design target | goal (p95) | p50 | p95 | p99 | met | index |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let mut index = r.indexes.join(", ");
        if !r.seq_scans.is_empty() {
            let _ = write!(index, "; seq scan: {}", r.seq_scans.join(", "));
        }
        let _ = writeln!(
            out,
            "| {} (`{}`) | {} | {} ms | {} | {} | {} | {} | {} |",
            r.class,
            r.function,
            r.design_target,
            ms(r.goal_p95),
            ms(r.summary.p50),
            ms(r.summary.p95),
            ms(r.summary.p99),
            if r.met() { "yes" } else { "**no**" },
            index,
        );
    }
    let samples = results.first().map_or(0, |r| r.summary.count);
    let _ = writeln!(
        out,
        "\nLatencies in ms, {samples} sequential calls per class through the data-layer \
         function on a pool (after a warm-up), random keys; `met` compares the p95 with the goal. \
         Indexes: every `Index Name` in `EXPLAIN (FORMAT JSON)` of the same SQL with the \
         parameters of the first {EXPLAINED} samples (×n: in n audit partitions)."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_yield_index_names_with_partitions_folded() {
        let plan: Value = serde_json::json!([{"Plan": {
            "Node Type": "Limit",
            "Plans": [{"Node Type": "Merge Append", "Plans": [
                {"Node Type": "Index Scan", "Index Name": "audit_logs_2026_01_user_id_created_at_id_idx"},
                {"Node Type": "Index Scan", "Index Name": "audit_logs_2026_02_user_id_created_at_id_idx"},
                {"Node Type": "Index Scan", "Index Name": "audit_logs_2026_02_user_id_created_at_id_idx"},
                {"Node Type": "Seq Scan", "Relation Name": "roles"},
                {"Node Type": "Index Scan", "Index Name": "users_pkey"}
            ]}]
        }}]);
        let (indexes, seq) = plan_nodes(&plan);
        assert_eq!(
            indexes,
            vec![
                "audit_logs_*_user_id_created_at_id_idx (×2)".to_string(),
                "users_pkey".to_string()
            ]
        );
        assert_eq!(seq, vec!["roles".to_string()]);
        assert_eq!(
            fold_partition("audit_logs_2025_11_pkey"),
            "audit_logs_*_pkey"
        );
        assert_eq!(
            fold_partition("idx_audit_logs_user_id"),
            "idx_audit_logs_user_id"
        );
    }
}
