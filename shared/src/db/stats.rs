//! Figures for the admin dashboard: users, activity in the last 24 hours,
//! and the database's own health.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TableSize {
    pub name: String,
    pub bytes: i64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatabaseHealth {
    pub connections: i64,
    pub cache_hit_ratio: f64,
    pub largest_tables: Vec<TableSize>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stats {
    pub users_by_status: BTreeMap<String, i64>,
    pub signups_24h: i64,
    pub logins_24h: i64,
    pub failed_logins_24h: i64,
    pub locked_accounts: i64,
    pub database: DatabaseHealth,
}

pub async fn collect<'c, E>(conn: E) -> sqlx::Result<Stats>
where
    E: PgExecutor<'c> + Copy,
{
    let by_status = sqlx::query!(
        r#"SELECT status::text AS "status!", count(*) AS "n!" FROM users GROUP BY status"#
    )
    .fetch_all(conn)
    .await?;
    let activity = sqlx::query!(
        r#"SELECT
             (SELECT count(*) FROM users WHERE created_at > now() - interval '24 hours') AS "signups!",
             (SELECT count(*) FROM audit_logs WHERE action = 'login_succeeded'
                AND created_at > now() - interval '24 hours'
                AND log_date >= (now() AT TIME ZONE 'UTC')::date - 1) AS "logins!",
             (SELECT count(*) FROM audit_logs WHERE action = 'login_failed'
                AND created_at > now() - interval '24 hours'
                AND log_date >= (now() AT TIME ZONE 'UTC')::date - 1) AS "failed!",
             (SELECT count(*) FROM users WHERE locked_until > now() AND deleted_at IS NULL) AS "locked!",
             (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) AS "connections!",
             (SELECT COALESCE(sum(blks_hit)::float8 / NULLIF(sum(blks_hit) + sum(blks_read), 0), 1.0)
                FROM pg_stat_database WHERE datname = current_database()) AS "hit_ratio!""#
    )
    .fetch_one(conn)
    .await?;
    let tables = sqlx::query_as!(
        TableSize,
        r#"SELECT c.relname::text AS "name!",
                  CASE WHEN c.relkind = 'p' THEN
                       (SELECT COALESCE(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint
                        FROM pg_inherits i WHERE i.inhparent = c.oid)
                  ELSE pg_total_relation_size(c.oid) END AS "bytes!"
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           ORDER BY 2 DESC LIMIT 5"#
    )
    .fetch_all(conn)
    .await?;
    let mut users_by_status: BTreeMap<String, i64> = [
        "pending_verification",
        "active",
        "inactive",
        "suspended",
        "deleted",
    ]
    .into_iter()
    .map(|s| (s.to_string(), 0))
    .collect();
    for row in by_status {
        users_by_status.insert(row.status, row.n);
    }
    Ok(Stats {
        users_by_status,
        signups_24h: activity.signups,
        logins_24h: activity.logins,
        failed_logins_24h: activity.failed,
        locked_accounts: activity.locked,
        database: DatabaseHealth {
            connections: activity.connections,
            cache_hit_ratio: activity.hit_ratio,
            largest_tables: tables,
        },
    })
}
