//! Index usage after a benchmark run: every index of the schema, how often
//! the planner used it and what it costs on disk.

use std::fmt::Write as _;

use sqlx::PgPool;

/// `pg_stat_user_indexes` for the schema's tables (audit partitions summed
/// under their parent's index), as a markdown table.
pub async fn usage(pool: &PgPool) -> anyhow::Result<String> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT coalesce(pi.relname, s.relname) AS table_name,
                coalesce(parent.relname, s.indexrelname) AS index_name,
                sum(s.idx_scan)::bigint,
                sum(pg_relation_size(s.indexrelid))::bigint
         FROM pg_stat_user_indexes s
         LEFT JOIN pg_inherits inh ON inh.inhrelid = s.indexrelid
         LEFT JOIN pg_class parent ON parent.oid = inh.inhparent
         LEFT JOIN pg_index pidx ON pidx.indexrelid = parent.oid
         LEFT JOIN pg_class pi ON pi.oid = pidx.indrelid
         WHERE s.schemaname = 'public' AND s.relname <> 'bench_ids'
           AND s.relname <> '_sqlx_migrations'
         GROUP BY 1, 2
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let mut out = String::from("| table | index | scans | size (MB) |\n|---|---|---|---|\n");
    for (table, index, scans, bytes) in rows {
        let _ = writeln!(
            out,
            "| {table} | {index} | {scans} | {:.1} |",
            bytes as f64 / 1e6
        );
    }
    Ok(out)
}
