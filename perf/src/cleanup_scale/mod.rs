//! The nightly cleanup at scale: the backlog it finds, the time it takes and
//! the longest lock it holds.
//!
//! The job (`shared::jobs::cleanup::run`, the real one) runs on a pool of its
//! own with a distinct `application_name` and two connections: one holds the
//! job's advisory lock, so every batch statement runs on the other, one after
//! the other. Each batch is a single-statement transaction: its row locks are
//! held from the statement's start to its commit, so the longest lock is the
//! longest batch transaction. A sampler on another connection reads
//! `pg_stat_activity` every few milliseconds and measures each transaction
//! of the job's backends:
//!
//! - seen idle afterwards: exactly `state_change - xact_start` (the backend
//!   reports when its last statement ended);
//! - otherwise: at most `next xact_start - xact_start` (the next transaction
//!   on the same backend cannot start before this one committed);
//!
//! so the reported longest transaction is an upper bound, exact for most
//! batches; a transaction never sampled at all was shorter than the sampling
//! interval.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use shared::jobs::cleanup::{self, CleanupReport, DEFAULT_BATCH};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

mod tracker;

use tracker::{Activity, Tracker};

/// The `application_name` of the job's connections.
const APP: &str = "perf-cleanup-scale";
/// Time between two samples of `pg_stat_activity`.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// How long the run may take before it is cancelled (five times the goal).
pub const TIME_LIMIT: Duration = Duration::from_secs(300);

/// Goals: the whole run, and the longest lock.
pub const GOAL_TOTAL: Duration = Duration::from_secs(60);
pub const GOAL_LONGEST_LOCK: Duration = Duration::from_secs(1);

/// The longest transaction of the job.
#[derive(Debug, Clone, Default)]
pub struct Longest {
    /// Its duration (exact, or an upper bound: see `exact`).
    pub duration: Duration,
    pub exact: bool,
    /// The beginning of its statement.
    pub query: String,
}

/// The transactions of one statement of the job.
#[derive(Debug, Clone, Default)]
pub struct StatementTimes {
    /// The statement, whitespace collapsed, shortened.
    pub statement: String,
    pub transactions: usize,
    /// The longest (an upper bound unless every one was timed exactly).
    pub longest: Duration,
    /// The sum of their durations (bounds included).
    pub total: Duration,
}

#[derive(Debug, Clone)]
pub struct CleanupScale {
    /// What a dry run found before (the backlog).
    pub backlog: CleanupReport,
    /// What the run did (when it did not finish: the dry runs' difference).
    pub report: CleanupReport,
    /// The run finished within [`TIME_LIMIT`] (else it was cancelled: the
    /// batch in progress rolled back, those before it stay done).
    pub finished: bool,
    /// What a dry run finds after.
    pub remaining: CleanupReport,
    /// The batch size used.
    pub batch: i64,
    /// Wall time of the run.
    pub total: Duration,
    /// The longest transaction (= longest lock held) of the run.
    pub longest: Longest,
    /// Per statement of the job, in order of total time.
    pub statements: Vec<StatementTimes>,
    /// Transactions of the job the sampler saw, and how many exactly.
    pub transactions_seen: usize,
    pub transactions_exact: usize,
    /// Samples of `pg_stat_activity` taken.
    pub samples: usize,
}

impl CleanupScale {
    pub fn total_met(&self) -> bool {
        self.finished && self.total < GOAL_TOTAL
    }

    pub fn lock_met(&self) -> bool {
        self.longest.duration < GOAL_LONGEST_LOCK
    }

    /// The result as markdown.
    pub fn markdown(&self) -> String {
        let yes = |ok: bool| if ok { "yes" } else { "**no**" };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| category | backlog (dry run before) | cleaned{} | left (dry run after) |\n\
             |---|---|---|---|",
            if self.finished {
                ""
            } else {
                " (before − after: the run was cancelled)"
            }
        );
        let rows = [
            (
                "expired refresh tokens",
                self.backlog.deleted_refresh_tokens,
                self.report.deleted_refresh_tokens,
                self.remaining.deleted_refresh_tokens,
            ),
            (
                "expired password-reset tokens",
                self.backlog.deleted_password_reset_tokens,
                self.report.deleted_password_reset_tokens,
                self.remaining.deleted_password_reset_tokens,
            ),
            (
                "expired e-mail verification tokens",
                self.backlog.deleted_email_verification_tokens,
                self.report.deleted_email_verification_tokens,
                self.remaining.deleted_email_verification_tokens,
            ),
            (
                "old rate-limit windows",
                self.backlog.deleted_rate_limits,
                self.report.deleted_rate_limits,
                self.remaining.deleted_rate_limits,
            ),
            (
                "users anonymised (deleted > 90 days)",
                self.backlog.anonymized_users,
                self.report.anonymized_users,
                self.remaining.anonymized_users,
            ),
            (
                "users anonymised (past data_retention_until)",
                self.backlog.retention_expired_users,
                self.report.retention_expired_users,
                self.remaining.retention_expired_users,
            ),
            (
                "audit partitions created",
                self.backlog.partitions_created,
                self.report.partitions_created,
                self.remaining.partitions_created,
            ),
            (
                "audit partitions dropped",
                self.backlog.partitions_dropped,
                self.report.partitions_dropped,
                self.remaining.partitions_dropped,
            ),
        ];
        for (name, before, done, left) in rows {
            let _ = writeln!(out, "| {name} | {before} | {done} | {left} |");
        }
        let _ = writeln!(
            out,
            "\n| measure | value | goal | met |\n|---|---|---|---|\n\
             | total run time (batch {}){} | {:.2} s | < {} s | {} |\n\
             | longest lock (longest batch transaction{}) | {:.1} ms | < {} ms | {} |",
            self.batch,
            if self.finished {
                String::new()
            } else {
                format!(", cancelled after {} s", TIME_LIMIT.as_secs())
            },
            self.total.as_secs_f64(),
            GOAL_TOTAL.as_secs(),
            yes(self.total_met()),
            if self.longest.exact {
                ""
            } else {
                ", upper bound"
            },
            self.longest.duration.as_secs_f64() * 1e3,
            GOAL_LONGEST_LOCK.as_millis(),
            yes(self.lock_met()),
        );
        let _ = writeln!(
            out,
            "\nLongest transaction: `{}`. {} transactions of the job observed ({} timed \
             exactly, the others bounded by the next statement's start) in {} samples of \
             `pg_stat_activity` every {} ms.",
            self.longest
                .query
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            self.transactions_seen,
            self.transactions_exact,
            self.samples,
            SAMPLE_EVERY.as_millis()
        );
        let _ = writeln!(
            out,
            "\n| statement | transactions | longest (ms) | total (s) |\n|---|---|---|---|"
        );
        for st in &self.statements {
            let _ = writeln!(
                out,
                "| `{}` | {} | {:.1} | {:.2} |",
                st.statement,
                st.transactions,
                st.longest.as_secs_f64() * 1e3,
                st.total.as_secs_f64()
            );
        }
        out
    }
}

/// The cleanup job's advisory lock key as `pg_locks` shows it: high and
/// low 32 bits.
const JOB_LOCK: (i64, i64) = (cleanup::LOCK_KEY >> 32, cleanup::LOCK_KEY & 0xffff_ffff);

/// A backend other than ours holding the cleanup job's lock: a run (or a
/// dry run) in progress, in which case a run of ours would do nothing.
async fn lock_holder(pool: &PgPool) -> Result<Option<i32>> {
    Ok(sqlx::query_scalar(
        "SELECT pid FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND objsubid = 1
           AND classid = $1::bigint::oid AND objid = $2::bigint::oid
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
         LIMIT 1",
    )
    .bind(JOB_LOCK.0)
    .bind(JOB_LOCK.1)
    .fetch_optional(pool)
    .await?)
}

/// Runs the cleanup on the (seeded) database and measures it.
pub async fn run(pool: &PgPool) -> Result<CleanupScale> {
    let batch = DEFAULT_BATCH;
    if let Some(pid) = lock_holder(pool).await? {
        anyhow::bail!(
            "backend {pid} holds the cleanup job's advisory lock (a cleanup is running): \
             a run now would do nothing; try again when it is done"
        );
    }
    let backlog = cleanup::run(pool, true, batch)
        .await
        .context("the dry run before")?;

    let options = (*pool.connect_options()).clone().application_name(APP);
    let job_pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .context("connecting the job's pool")?;

    if let Some(pid) = lock_holder(pool).await? {
        anyhow::bail!("backend {pid} took the cleanup job's advisory lock before our run");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pool, stop) = (pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            let mut tracker = Tracker::default();
            let mut last = false;
            loop {
                let rows: Vec<Activity> = sqlx::query_as(
                    "SELECT pid, state, xact_start, query_start, state_change, query
                     FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
                )
                .bind(APP)
                .fetch_all(&mut *conn)
                .await?;
                tracker.observe(&rows);
                if last {
                    break;
                }
                if stop.load(Ordering::Acquire) {
                    // One more sample, after the job's last statement ended.
                    last = true;
                    continue;
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            anyhow::Ok(tracker)
        })
    };

    let started = Instant::now();
    let outcome = tokio::time::timeout(TIME_LIMIT, cleanup::run(&job_pool, false, batch)).await;
    let total = started.elapsed();
    let finished = match outcome {
        Ok(result) => Some(result.context("the cleanup run")),
        Err(_) => {
            // Out of time: cancel the job's statement in progress.
            sqlx::query(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                 WHERE application_name = $1 AND state <> 'idle'",
            )
            .bind(APP)
            .execute(pool)
            .await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    };
    stop.store(true, Ordering::Release);
    let mut tracker = sampler.await??;
    job_pool.close().await;
    let report = finished.transpose()?;
    // Transactions still open at the last sample ended before the job returned.
    let ended = Utc::now();
    tracker.finish_open(ended);

    let remaining = cleanup::run(pool, true, batch)
        .await
        .context("the dry run after")?;
    if let Some(done) = &report {
        let to_do = backlog.deleted_refresh_tokens
            + backlog.anonymized_users
            + backlog.retention_expired_users;
        let did =
            done.deleted_refresh_tokens + done.anonymized_users + done.retention_expired_users;
        if to_do > 0 && did == 0 {
            anyhow::bail!(
                "the cleanup run did nothing although a backlog was there: another run held \
                 its advisory lock"
            );
        }
    }
    let difference = |before: i64, after: i64| (before - after).max(0);
    let finished = report.is_some();
    let report = report.unwrap_or_else(|| CleanupReport {
        dry_run: false,
        deleted_refresh_tokens: difference(
            backlog.deleted_refresh_tokens,
            remaining.deleted_refresh_tokens,
        ),
        deleted_password_reset_tokens: difference(
            backlog.deleted_password_reset_tokens,
            remaining.deleted_password_reset_tokens,
        ),
        deleted_email_verification_tokens: difference(
            backlog.deleted_email_verification_tokens,
            remaining.deleted_email_verification_tokens,
        ),
        deleted_rate_limits: difference(backlog.deleted_rate_limits, remaining.deleted_rate_limits),
        anonymized_users: difference(backlog.anonymized_users, remaining.anonymized_users),
        retention_expired_users: difference(
            backlog.retention_expired_users,
            remaining.retention_expired_users,
        ),
        partitions_created: difference(backlog.partitions_created, remaining.partitions_created),
        partitions_dropped: difference(backlog.partitions_dropped, remaining.partitions_dropped),
        deleted_mfa_tokens: difference(backlog.deleted_mfa_tokens, remaining.deleted_mfa_tokens),
        deleted_pending_mfa_factors: difference(
            backlog.deleted_pending_mfa_factors,
            remaining.deleted_pending_mfa_factors,
        ),
        deleted_phone_codes: difference(backlog.deleted_phone_codes, remaining.deleted_phone_codes),
        deleted_webauthn_ceremonies: difference(
            backlog.deleted_webauthn_ceremonies,
            remaining.deleted_webauthn_ceremonies,
        ),
    });
    Ok(CleanupScale {
        backlog,
        report,
        finished,
        remaining,
        batch,
        total,
        longest: tracker.longest,
        statements: {
            let mut all: Vec<StatementTimes> = tracker.statements.into_values().collect();
            all.sort_by_key(|st| std::cmp::Reverse(st.total));
            all
        },
        transactions_seen: tracker.seen,
        transactions_exact: tracker.exact,
        samples: tracker.samples,
    })
}
