//! The plans of the timed queries: `EXPLAIN (FORMAT JSON)` of exactly what
//! each class runs, and the index names read from them.

use super::*;

/// `EXPLAIN (FORMAT JSON)` of exactly what [`call`] runs for sample `i`.
pub(super) async fn explain(pool: &PgPool, class: Class, keys: &Keys, i: usize) -> Result<Value> {
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
            sqlx::query_scalar(by_sql(CALLERS_SQL))
                .bind(vec![pick(&keys.users, i)?.id])
                .bind(vec![uuid::Uuid::nil()])
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
pub(super) fn plan_nodes(plan: &Value) -> (Vec<String>, Vec<String>) {
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
pub(super) fn fold_partition(name: &str) -> String {
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
