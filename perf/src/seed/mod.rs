//! Fills a migrated database with realistic data, generated set-based by
//! PostgreSQL itself (`INSERT … SELECT … FROM generate_series`, the steps of
//! `seed.sql`, run by [`load`]).
//!
//! What one run adds, for `--users N`:
//!
//! - `N` seeded users (minus those already there): varied names, usernames
//!   and e-mail addresses, mostly `active` with some `pending_verification`,
//!   `inactive`, `suspended` and ~2 % soft-deleted (recently: not yet due for
//!   anonymisation), created over the last three years, all with one
//!   precomputed Argon2id hash of [`SEED_PASSWORD`] so that any seeded live
//!   user can log in;
//! - about 2 refresh tokens per user (sessions of one or two rotated tokens,
//!   of the last 20 days; some logged out);
//! - about 10 audit rows per user, spread over the monthly partitions of the
//!   last three years (the partitions are created first);
//! - role assignments for ~2 % of the users (roles `support`, `moderator`,
//!   `auditor` are created if absent, `admin` is the migration's).
//!
//! With `cleanup_backlog`, it also tops up what the nightly cleanup would
//! find: `N` refresh tokens expired more than 7 days ago and `N / 50` extra
//! users due for anonymisation (half soft-deleted more than 90 days ago, half
//! past `data_retention_until`); both are counted with the cleanup's own
//! predicates first, so a second run adds only what is missing.
//!
//! Seeded users are recognised by their id (a UUIDv7 whose random bits carry
//! a marker and the user's sequence number), so a run with a larger `N` tops
//! up with new sequence numbers (unique names) and a run with the same `N`
//! adds nothing, also after the cleanup has anonymised some of them.
//!
//! Everything happens in one transaction with `session_replication_role =
//! replica` (no per-row audit or foreign-key triggers: the script keeps every
//! reference valid itself). A table that is empty before the run loads
//! without its indexes, and without the primary, unique and foreign keys
//! only seeded tables depend on; each is created again, from its own
//! definition, before the commit (the keys check every row then): an
//! interrupted run leaves nothing but the generator's plan, which the next
//! run drops.
//!
//! Two connections share the work, a core each: the transaction writes every
//! row; a generator beside it plans the users (the unlogged table
//! `perf_seed_users`, dropped after the commit) and computes the rows of the
//! two large tables, which it streams into the transaction as binary `COPY`.
//! On 2 cores, 1 M users (1.9 M refresh tokens, 10 M audit rows) take about
//! 160 s (BENCHMARKS.md).

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;

/// The password of every seeded user (passes the app's strength rules).
pub const SEED_PASSWORD: &str = "Seeded-Passw0rd-Lantern-42";

mod load;

/// The tables the seed writes.
const TABLES: [&str; 4] = ["users", "user_roles", "refresh_tokens", "audit_logs"];

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Seeded users wanted in total (not counting the backlog users).
    pub users: u64,
    /// Also top up an expired-token and anonymisation backlog for the cleanup.
    pub cleanup_backlog: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    /// Seeded users (not backlog) before the run.
    pub users_before: u64,
    /// Seeded users (not backlog) after the run.
    pub users_after: u64,
    /// Rows added per table (`users` includes the backlog users).
    pub rows: Vec<(&'static str, u64)>,
    /// Of those: backlog users due for anonymisation.
    pub backlog_users: u64,
    /// Of those: backlog (long expired) refresh tokens.
    pub backlog_tokens: u64,
    /// Indexes and keys dropped before and created again after the load.
    pub indexes_rebuilt: usize,
    /// Wall time per phase, in order.
    pub phases: Vec<(String, Duration)>,
    /// Wall time of the whole run.
    pub total: Duration,
}

impl SeedReport {
    /// Rows added to `table` by this run.
    pub fn added(&self, table: &str) -> u64 {
        self.rows
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, n)| n)
            .sum()
    }

    /// Rows added to all tables.
    pub fn added_total(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seeded users: {} before, {} after",
            self.users_before, self.users_after
        )?;
        writeln!(f, "rows added:")?;
        for table in TABLES {
            writeln!(f, "  {table:<16} {:>12}", self.added(table))?;
        }
        writeln!(
            f,
            "  (of which cleanup backlog: {} users, {} refresh tokens)",
            self.backlog_users, self.backlog_tokens
        )?;
        writeln!(
            f,
            "indexes and keys dropped and rebuilt: {}",
            self.indexes_rebuilt
        )?;
        writeln!(f, "phases:")?;
        for (phase, d) in &self.phases {
            writeln!(f, "  {phase:<22} {:>8.2} s", d.as_secs_f64())?;
        }
        write!(f, "total: {:.2} s", self.total.as_secs_f64())
    }
}

/// The precomputed Argon2id hash of [`SEED_PASSWORD`], with the production
/// parameters (the `Config` defaults).
async fn seed_hash() -> Result<String> {
    let config = shared::Config::from_lookup(|_| None).context("default configuration")?;
    let hasher = shared::security::PasswordHasher::new(config.argon2)?;
    let password = shared::domain::Password::parse(SEED_PASSWORD, &[])
        .map_err(|why| anyhow::anyhow!("SEED_PASSWORD {why}"))?;
    hasher
        .hash(&password)
        .await
        .map_err(|e| anyhow::anyhow!("hashing SEED_PASSWORD: {e}"))
}

/// Seeds (or tops up) the database; see the module documentation.
pub async fn run(pool: &PgPool, opts: &SeedOptions) -> Result<SeedReport> {
    let started = Instant::now();
    let mut last = started;
    let mut report = SeedReport::default();
    let mut phase = |report: &mut SeedReport, name: &str| {
        let now = Instant::now();
        report.phases.push((name.to_string(), now - last));
        last = now;
    };
    let hash = tokio::spawn(seed_hash());

    let mut conn = pool.acquire().await?;
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut *conn)
            .await?;
    if !superuser {
        bail!(
            "seeding needs a superuser connection (it sets session_replication_role to load \
             without per-row triggers)"
        );
    }
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(
        // Concurrent seeds wait for each other ("SEEDPERF").
        "SELECT pg_advisory_xact_lock(x'5345454450455246'::bigint);
         SET LOCAL session_replication_role = replica;
         SET LOCAL synchronous_commit = off;
         SET LOCAL work_mem = '256MB';
         SET LOCAL statement_timeout = 0;
         SET LOCAL jit = off; -- compiling these one-off statements costs more than it saves
         SELECT create_audit_partitions(
             ((now() AT TIME ZONE 'UTC') - interval '3 years 1 month')::date,
             ((now() AT TIME ZONE 'UTC') + interval '3 months')::date);
         INSERT INTO roles (name, description, permissions) VALUES
             ('support', 'Reads users and their audit trail', '[\"users:read\", \"audit:read\"]'),
             ('moderator', 'Reads and edits users', '[\"users:read\", \"users:write\"]'),
             ('auditor', 'Reads the audit log and statistics', '[\"audit:read\", \"stats:read\"]')
         ON CONFLICT (name) DO NOTHING;",
    )
    .execute(&mut *tx)
    .await?;
    // One index-build worker per core beside the leader's (the database is
    // the local one): on 2 cores, 1 worker built the audit indexes in 5.0 s
    // and 9.5 s where 2 workers took 7.5 s and 12.3 s (over-subscribed).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get() - 1);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL max_parallel_maintenance_workers = {workers}"
    )))
    .execute(&mut *tx)
    .await?;

    // What is there already: seeded users (the marker in the id), the
    // highest sequence number, and the backlog the cleanup would find.
    let (regular_before, max_seq, due, expired, admin): (i64, i64, i64, i64, Option<Uuid>) =
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE substr(id::text, 15, 9) = '75ed-a5ed'),
                coalesce(max(('x' || substr(id::text, 25, 12))::bit(48)::bigint)
                         FILTER (WHERE substr(id::text, 15, 9) IN ('75ed-a5ed', '75ed-b5ed')), -1),
                count(*) FILTER (WHERE (deleted_at < now() - interval '90 days'
                                        OR data_retention_until < CURRENT_DATE)
                                   AND anonymized_at IS NULL),
                (SELECT count(*) FROM refresh_tokens
                 WHERE expires_at < now() - interval '7 days'),
                (SELECT ur.user_id FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                 WHERE r.name = 'admin' ORDER BY ur.assigned_at LIMIT 1)
         FROM users",
        )
        .fetch_one(&mut *tx)
        .await?;
    report.users_before = regular_before as u64;
    let regular = opts.users.saturating_sub(report.users_before);
    report.users_after = report.users_before + regular;
    let (mut backlog_deleted, mut backlog_retention) = (0, 0);
    if opts.cleanup_backlog {
        let missing = (opts.users / 50).saturating_sub(due as u64);
        backlog_deleted = missing.div_ceil(2);
        backlog_retention = missing - backlog_deleted;
        report.backlog_tokens = opts.users.saturating_sub(expired as u64);
    }
    report.backlog_users = backlog_deleted + backlog_retention;
    let run = Run {
        first_seq: max_seq + 1,
        regular: regular as i64,
        backlog_deleted: backlog_deleted as i64,
        backlog_retention: backlog_retention as i64,
        backlog_tokens: report.backlog_tokens as i64,
        hash: hash.await??,
        admin,
    };
    run.create(&mut tx, "ON COMMIT DROP").await?;
    // The generator: a connection of its own (closed at the end), whose
    // temporary seed_run lives as long as it does.
    let mut generator = pool.acquire().await?.detach();
    sqlx::raw_sql(
        "SET work_mem = '256MB';
         SET statement_timeout = 0;
         SET jit = off;
         -- What the transaction locks (the tables it loads) the generator
         -- must not read: it would wait for a commit that waits for it.
         SET lock_timeout = '10s';
         DROP TABLE IF EXISTS perf_seed_users, perf_seed_admin; -- left by an interrupted run",
    )
    .execute(&mut generator)
    .await?;
    run.create(&mut generator, "").await?;
    phase(&mut report, "prepare");

    if regular + report.backlog_users + report.backlog_tokens > 0 {
        report.indexes_rebuilt =
            load::load(&mut tx, &mut generator, &mut report, &mut phase).await?;
    }
    tx.commit().await?;
    sqlx::raw_sql("DROP TABLE IF EXISTS perf_seed_users, perf_seed_admin")
        .execute(&mut generator)
        .await?;
    phase(&mut report, "commit");
    if report.added_total() > 0 {
        // A core each: the audit log's 37 tables, and the rest.
        let mut conn = pool.acquire().await?;
        tokio::try_join!(
            sqlx::raw_sql("ANALYZE audit_logs").execute(&mut generator),
            sqlx::raw_sql("ANALYZE users, user_roles, refresh_tokens").execute(&mut *conn),
        )?;
        phase(&mut report, "analyze");
    }
    generator.close().await?;
    report.total = started.elapsed();
    Ok(report)
}

/// The parameters of one run, which the steps read from `seed_run`.
struct Run {
    first_seq: i64,
    regular: i64,
    backlog_deleted: i64,
    backlog_retention: i64,
    backlog_tokens: i64,
    hash: String,
    /// The first admin there was before the run.
    admin: Option<Uuid>,
}

impl Run {
    /// Creates the one-row temporary table `seed_run` on `conn`.
    async fn create(&self, conn: &mut PgConnection, on_commit: &str) -> Result<()> {
        let sql = format!(
            "CREATE TEMP TABLE seed_run {on_commit} AS
             SELECT $1::bigint AS first_seq, $2::bigint AS regular,
                    $3::bigint AS backlog_deleted, $4::bigint AS backlog_retention,
                    $5::bigint AS backlog_tokens, $6::text AS hash, $7::uuid AS admin"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.first_seq)
            .bind(self.regular)
            .bind(self.backlog_deleted)
            .bind(self.backlog_retention)
            .bind(self.backlog_tokens)
            .bind(&self.hash)
            .bind(self.admin)
            .execute(conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_password_passes_the_apps_rules() {
        assert!(shared::domain::Password::parse(SEED_PASSWORD, &[]).is_ok());
    }
}
