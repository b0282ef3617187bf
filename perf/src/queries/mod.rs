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
use shared::db::callers::{self, CALLERS_SQL};
use shared::db::sessions::{self, FIND_BY_HASH_SQL};
use shared::db::users::{
    self, FIND_BY_ID_SQL, FIND_FOR_LOGIN_SQL, ID_BY_EMAIL_SQL, UserCursor, UserFilter,
};
use shared::domain::UserStatus;
use shared::http::pagination;
use sqlx::PgPool;
use uuid::Uuid;

mod explain;
mod keys;

use explain::{explain, plan_nodes};
use keys::{Keys, audit_filter, list_args, load_keys, pick};

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
                "caller (auth, every request; a batch of one)",
                "callers::callers",
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
        Class::Caller => callers::callers(pool, &[(pick(&keys.users, i)?.id, uuid::Uuid::nil())])
            .await?
            .iter()
            .flatten()
            .count(),
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
