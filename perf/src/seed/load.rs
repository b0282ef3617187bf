//! The load: the steps of `seed.sql` on the transaction and the generator,
//! without the indexes and keys of the tables that were empty, which are
//! created again after it.

use anyhow::{Context as _, Result};
use futures_util::TryStreamExt as _;
use sqlx::PgConnection;

use super::{SeedReport, TABLES};

/// The generation script: `-- step: name [place]` sections, one statement
/// each.
const SCRIPT: &str = include_str!("seed.sql");

/// Where a step of [`SCRIPT`] runs (the bracket after its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In the transaction.
    Transaction,
    /// On the generator connection, committed.
    Generator,
    /// The SELECT on the generator, its rows copied into the transaction.
    Streamed,
}

/// The `-- step: name [place]` sections of [`SCRIPT`], in order.
fn steps() -> Vec<(&'static str, Place, &'static str)> {
    SCRIPT
        .split("\n-- step: ")
        .skip(1)
        .filter_map(|section| section.split_once('\n'))
        .map(|(header, sql)| match header.trim().split_once(" [") {
            Some((name, "generator]")) => (name, Place::Generator, sql),
            Some((name, "streamed]")) => (name, Place::Streamed, sql),
            _ => (header.trim(), Place::Transaction, sql),
        })
        .collect()
}

/// What the tables that are empty before the run (`$1`; `$2`: all seeded
/// tables) load without, as pairs of statements (drop, create again) in
/// creation order: their indexes that back no constraint, then their primary
/// and unique keys that only seeded tables reference (`users.id` stays:
/// other tables point at it), then the foreign keys on those. A partitioned index is shown `ON ONLY` its parent; created
/// again, it must cascade to the partitions as the migration's did.
const REBUILT: &str = "
    WITH empty (rel) AS (SELECT unnest($1::text[])::regclass),
    seeded (rel) AS (SELECT unnest($2::text[])::regclass),
    keys AS (
        SELECT k.* FROM pg_constraint k
        WHERE k.conrelid IN (SELECT rel FROM empty) AND k.contype IN ('p', 'u')
          AND k.conparentid = 0
          AND NOT EXISTS (SELECT FROM pg_constraint f
                          WHERE f.contype = 'f' AND f.conindid = k.conindid
                            AND f.conrelid NOT IN (SELECT rel FROM seeded)))
    SELECT format('DROP INDEX %s', i.indexrelid::regclass),
           replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON '), 1 AS tier
    FROM pg_index i
    WHERE i.indrelid IN (SELECT rel FROM empty)
      AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
    UNION ALL
    SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname),
           format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
                  pg_get_constraintdef(c.oid)),
           CASE c.contype WHEN 'f' THEN 3 ELSE 2 END
    FROM pg_constraint c
    WHERE c.oid IN (SELECT oid FROM keys)
       OR (c.contype = 'f' AND c.conparentid = 0 AND c.conindid IN (SELECT conindid FROM keys))
    ORDER BY tier";

/// Runs the steps of [`SCRIPT`] (recording rows and times in `report`)
/// without the indexes and keys ([`REBUILT`]) of the tables that were empty,
/// then creates those again; returns how many it rebuilt.
pub(super) async fn load(
    tx: &mut PgConnection,
    generator: &mut PgConnection,
    report: &mut SeedReport,
    phase: &mut impl FnMut(&mut SeedReport, &str),
) -> Result<usize> {
    let mut empty = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT NOT EXISTS (SELECT FROM {table})");
        if sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *tx)
            .await?
        {
            empty.push(table);
        }
    }
    let rebuilt: Vec<(String, String, i32)> = sqlx::query_as(REBUILT)
        .bind(&empty)
        .bind(&TABLES[..])
        .fetch_all(&mut *tx)
        .await?;
    // Foreign keys first, the keys they need after them.
    for (drop, _, _) in rebuilt.iter().rev() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop.as_str()))
            .execute(&mut *tx)
            .await
            .with_context(|| drop.clone())?;
    }
    phase(report, "drop indexes and keys");

    for (step, place, sql) in steps() {
        let rows = match place {
            Place::Transaction => sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map(|d| d.rows_affected()),
            Place::Generator => sqlx::raw_sql(sql)
                .execute(&mut *generator)
                .await
                .map(|d| d.rows_affected()),
            Place::Streamed => stream(generator, tx, sql).await,
        }
        .with_context(|| format!("seed step {step}"))?;
        let table = step.strip_prefix("backlog ").unwrap_or(step);
        if let Some(table) = TABLES.into_iter().find(|t| *t == table) {
            report.rows.push((table, rows));
        }
        phase(report, step);
    }

    // One phase per tier: indexes, keys, foreign keys (which check every row).
    for (tier, name) in [
        (1, "create indexes"),
        (2, "add keys"),
        (3, "add foreign keys"),
    ] {
        let mut any = false;
        for (_, create, _) in rebuilt.iter().filter(|(_, _, t)| *t == tier) {
            // A GIN build is faster with a small accumulator, a B-tree sort
            // with a large one (1 M users, full-text index: 11.0 s with 8 MB,
            // 23.2 s with 1 GB; the token-hash B-tree: 3.0 s with 1 GB,
            // 5.8 s with 16 MB).
            let memory = if create.contains(" USING gin ") {
                "16MB"
            } else {
                "1GB"
            };
            let sql = format!("SET LOCAL maintenance_work_mem = '{memory}'; {create}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .with_context(|| create.clone())?;
            any = true;
        }
        if any {
            phase(report, name);
        }
    }
    Ok(rebuilt.len())
}

/// Bytes per message of a streamed copy.
const BATCH: usize = 1 << 20;

/// Runs the SELECT of `insert` (`INSERT INTO table (columns)` and, on a
/// line of its own, `SELECT …`) on the generator and copies its rows into
/// `table` in the transaction, in PostgreSQL's binary format: each value is
/// cast to its column's type first (the binary format carries no types).
async fn stream(
    generator: &mut PgConnection,
    tx: &mut PgConnection,
    insert: &str,
) -> sqlx::Result<u64> {
    let malformed = || sqlx::Error::Protocol(format!("not INSERT INTO t (…)\\nSELECT …: {insert}"));
    let (_, rest) = insert.split_once("INSERT INTO ").ok_or_else(malformed)?;
    let (target, select) = rest.split_once("\nSELECT ").ok_or_else(malformed)?;
    let (table, columns) = target.split_once('(').ok_or_else(malformed)?;
    let columns: Vec<&str> = columns
        .trim()
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .collect();
    let casts: String = sqlx::query_scalar(
        "SELECT string_agg(format('g.%I::%s', a.attname, format_type(a.atttypid, a.atttypmod)),
                           ', ' ORDER BY c.n)
         FROM unnest($2::text[]) WITH ORDINALITY AS c(name, n)
         JOIN pg_attribute a ON a.attrelid = $1::regclass AND a.attname = c.name",
    )
    .bind(table.trim())
    .bind(&columns)
    .fetch_one(&mut *tx)
    .await?;
    let select = select.trim_end().trim_end_matches(';');
    let mut rows = generator
        .copy_out_raw(&format!(
            "COPY (SELECT {casts} FROM (SELECT {select}) AS g ({})) TO STDOUT (FORMAT binary)",
            columns.join(", ")
        ))
        .await?;
    let mut sink = tx
        .copy_in_raw(&format!("COPY {target} FROM STDIN (FORMAT binary)"))
        .await?;
    // The generator sends a message per row: forward them in batches.
    let mut batch = Vec::with_capacity(BATCH + 4096);
    while let Some(row) = rows.try_next().await? {
        batch.extend_from_slice(&row);
        if batch.len() >= BATCH {
            sink.send(batch.as_slice()).await?;
            batch.clear();
        }
    }
    sink.send(batch).await?;
    sink.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_has_a_step_per_table() {
        let places: Vec<_> = steps()
            .into_iter()
            .map(|(name, place, _)| (name, place))
            .collect();
        assert_eq!(
            places,
            [
                ("plan users", Place::Generator),
                ("acting admin", Place::Generator),
                ("users", Place::Transaction),
                ("user_roles", Place::Transaction),
                ("refresh_tokens", Place::Streamed),
                ("audit_logs", Place::Streamed),
                ("backlog refresh_tokens", Place::Transaction)
            ]
        );
        for (name, _, sql) in steps() {
            assert!(!sql.trim().is_empty(), "step {name} is empty");
        }
    }
}
