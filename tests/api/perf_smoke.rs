//! The perf tooling on a small database, so it cannot rot: the seed (row
//! counts, shares, idempotence, top-up, backlog), the query classes through
//! the data layer, and the cleanup at scale.

use perf::{cleanup_scale, queries, seed};
use shared::db::MIGRATOR;
use sqlx::PgPool;

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

const REGULAR: &str = "SELECT count(*) FROM users WHERE substr(id::text, 15, 9) = '75ed-a5ed'";
const DUE: &str = "SELECT count(*) FROM users
     WHERE (deleted_at < now() - interval '90 days' OR data_retention_until < CURRENT_DATE)
       AND anonymized_at IS NULL";
const EXPIRED: &str =
    "SELECT count(*) FROM refresh_tokens WHERE expires_at < now() - interval '7 days'";

/// Every table the seed writes, counted.
async fn counts(pool: &PgPool) -> [i64; 4] {
    [
        count(pool, "SELECT count(*) FROM users").await,
        count(pool, "SELECT count(*) FROM user_roles").await,
        count(pool, "SELECT count(*) FROM refresh_tokens").await,
        count(pool, "SELECT count(*) FROM audit_logs").await,
    ]
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn seed_queries_and_cleanup_work_on_a_small_database(pool: PgPool) {
    // ------------------------------------------------------------ seed
    let opts = seed::SeedOptions {
        users: 300,
        cleanup_backlog: true,
    };
    let first = seed::run(&pool, &opts).await.unwrap();
    let shown = first.to_string();
    assert!(shown.contains("total:"), "{shown}");
    assert_eq!((first.users_before, first.users_after), (0, 300));
    assert_eq!(first.backlog_users, 6, "2 % of 300 due for anonymisation");
    assert_eq!(first.backlog_tokens, 300, "one expired token per user");
    assert!(
        first.indexes_rebuilt >= 10,
        "empty tables load without their secondary indexes: {shown}"
    );

    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM pg_indexes WHERE tablename IN ('users', 'audit_logs')
               AND indexname IN ('users_email_key', 'idx_users_fulltext', 'idx_audit_logs_user_id')"
        )
        .await,
        3,
        "the dropped indexes are back"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM pg_constraint WHERE convalidated AND conname IN
               ('refresh_tokens_pkey', 'refresh_tokens_token_hash_key', 'audit_logs_pkey',
                'refresh_tokens_replaced_by_fkey', 'user_roles_pkey', 'users_pkey')"
        )
        .await,
        6,
        "the dropped keys are back, checked"
    );
    // The script keeps the references valid itself (it loads without
    // foreign-key triggers), and each random draw consistent.
    for (what, sql) in [
        (
            "tokens of missing users",
            "SELECT count(*) FROM refresh_tokens t
             WHERE NOT EXISTS (SELECT FROM users u WHERE u.id = t.user_id)",
        ),
        (
            "tokens replaced by missing tokens",
            "SELECT count(*) FROM refresh_tokens t WHERE replaced_by IS NOT NULL
               AND NOT EXISTS (SELECT FROM refresh_tokens r WHERE r.id = t.replaced_by)",
        ),
        (
            "audit rows of missing users",
            "SELECT count(*) FROM audit_logs a
             WHERE NOT EXISTS (SELECT FROM users u WHERE u.id = a.user_id)",
        ),
        (
            "deleted_at without status deleted, or the reverse",
            "SELECT count(*) FROM users WHERE (deleted_at IS NULL) <> (status <> 'deleted')",
        ),
        (
            "client addresses as networks (the app stores the host)",
            "SELECT count(*) FROM refresh_tokens WHERE created_by_ip LIKE '%/%'",
        ),
        (
            "audit rows whose admin is not an admin",
            "SELECT count(*) FROM audit_logs a WHERE performed_by IS NOT NULL
               AND NOT EXISTS (SELECT FROM user_roles ur JOIN roles r ON r.id = ur.role_id
                               WHERE ur.user_id = a.performed_by AND r.name = 'admin')",
        ),
        (
            "the generator's tables, left behind",
            "SELECT count(*) FROM pg_class WHERE relname IN ('perf_seed_users', 'perf_seed_admin')",
        ),
    ] {
        assert_eq!(count(&pool, sql).await, 0, "{what}");
    }
    let [users, roles, tokens, audit] = counts(&pool).await;
    assert_eq!(users, 306, "{shown}");
    assert_eq!(count(&pool, REGULAR).await, 300);
    assert_eq!(first.added("users"), 306);
    assert_eq!(first.added("refresh_tokens") as i64, tokens);
    assert_eq!(first.added("audit_logs") as i64, audit);
    assert_eq!(first.added("user_roles") as i64, roles);
    assert!(roles >= 1, "at least the admin");
    // ~2 live-session tokens per user, plus the backlog.
    let session_tokens = tokens - 300;
    assert!(
        (450..=750).contains(&session_tokens),
        "{session_tokens} session tokens for 300 users"
    );
    assert_eq!(count(&pool, EXPIRED).await, 300);
    assert!(
        count(
            &pool,
            "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NOT NULL"
        )
        .await
            > 0
    );
    assert!(
        count(
            &pool,
            "SELECT count(*) FROM refresh_tokens WHERE replaced_by IS NOT NULL"
        )
        .await
            > 0
    );
    // ~10 audit rows per user, over many monthly partitions.
    assert!(
        (306 * 8..=306 * 12).contains(&audit),
        "{audit} audit rows for 306 users"
    );
    assert!(
        count(
            &pool,
            "SELECT count(DISTINCT date_trunc('month', log_date)) FROM audit_logs"
        )
        .await
            >= 24
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM ONLY audit_logs").await,
        0,
        "every audit row is in a partition"
    );
    // Statuses: mostly active, ~2 % soft-deleted (recently), the backlog due.
    let soft_deleted = count(
        &pool,
        "SELECT count(*) FROM users WHERE deleted_at IS NOT NULL
           AND substr(id::text, 15, 9) = '75ed-a5ed'",
    )
    .await;
    assert!((1..=18).contains(&soft_deleted), "{soft_deleted} of 300");
    let active = count(&pool, "SELECT count(*) FROM users WHERE status = 'active'").await;
    assert!(active > 240, "{active} of 306 active");
    assert!(
        count(
            &pool,
            "SELECT count(DISTINCT status) FROM users WHERE substr(id::text, 15, 9) = '75ed-a5ed'"
        )
        .await
            >= 4
    );
    assert_eq!(count(&pool, DUE).await, 6);
    // Names unique case-insensitively, created over three years.
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT lower(email)) FROM users").await,
        306
    );
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT lower(username)) FROM users").await,
        306
    );
    assert!(
        count(
            &pool,
            "SELECT extract(day FROM max(created_at) - min(created_at))::bigint FROM users"
        )
        .await
            > 700
    );
    // A seeded user can log in with SEED_PASSWORD.
    let (login, hash): (String, String) = sqlx::query_as(
        "SELECT username, password_hash FROM users
         WHERE status = 'active' AND deleted_at IS NULL LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let config = shared::Config::from_lookup(|_| None).unwrap();
    let hasher = shared::security::PasswordHasher::new(config.argon2).unwrap();
    let password = shared::domain::Password::candidate(seed::SEED_PASSWORD).unwrap();
    assert_eq!(
        hasher.verify(&password, Some(&hash)).await.unwrap(),
        shared::security::passwords::Verified::Yes,
        "{login} cannot log in with the seed password"
    );
    let user = shared::db::users::find_for_login(&pool, &login.to_uppercase())
        .await
        .unwrap();
    assert!(user.is_some(), "login lookup of {login}");

    // The same N again adds nothing.
    let before = counts(&pool).await;
    let again = seed::run(&pool, &opts).await.unwrap();
    assert_eq!(again.added_total(), 0, "{again}");
    assert_eq!(counts(&pool).await, before);

    // A larger N tops up with new names; the backlog grows with it.
    let more = seed::SeedOptions {
        users: 400,
        cleanup_backlog: true,
    };
    let topped = seed::run(&pool, &more).await.unwrap();
    assert_eq!((topped.users_before, topped.users_after), (300, 400));
    assert_eq!(topped.added("users"), 102, "{topped}");
    assert_eq!(topped.backlog_tokens, 100);
    assert_eq!(
        topped.indexes_rebuilt, 0,
        "tables with rows keep their indexes"
    );
    assert_eq!(count(&pool, REGULAR).await, 400);
    assert_eq!(count(&pool, "SELECT count(*) FROM users").await, 408);
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT lower(email)) FROM users").await,
        408
    );
    assert_eq!(count(&pool, EXPIRED).await, 400);
    assert_eq!(count(&pool, DUE).await, 8);

    // ---------------------------------------------------------- queries
    // On tables this small a sequential scan is often the cheaper plan; with
    // it disabled, each class shows the index that serves it at scale.
    let options = (*pool.connect_options())
        .clone()
        .options([("enable_seqscan", "off")]);
    let no_seqscan = PgPool::connect_with(options).await.unwrap();
    let results = queries::run(&no_seqscan, 20).await.unwrap();
    no_seqscan.close().await;
    assert_eq!(results.len(), 13);
    let table = queries::markdown(&results);
    for r in &results {
        assert_eq!(r.summary.count, 20, "{}", r.class);
        assert!(r.summary.p50 > std::time::Duration::ZERO, "{}", r.class);
        assert!(
            !r.indexes.is_empty(),
            "{} names no index:\n{table}",
            r.class
        );
        assert!(table.contains(&r.class), "{table}");
    }
    let class = |prefix: &str| {
        results
            .iter()
            .find(|r| r.class.starts_with(prefix))
            .unwrap_or_else(|| panic!("no class {prefix}"))
    };
    for lookup in [
        "user by id",
        "user by e-mail",
        "caller",
        "login lookup by e-mail",
        "login lookup by username",
        "refresh-token validation",
    ] {
        assert_eq!(class(lookup).mean_rows, 1.0, "{lookup} finds its sample");
    }
    for list in [
        "list by status, newest first, page 1",
        "list by status, newest first, page",
        "full-text search, full name",
        "full-text search, one common term",
        "audit log by user",
        "audit log by action",
    ] {
        assert!(class(list).mean_rows >= 1.0, "{list} finds rows");
    }
    assert!(
        class("user by id")
            .indexes
            .contains(&"users_pkey".to_string())
    );
    assert!(
        class("refresh-token validation")
            .indexes
            .contains(&"refresh_tokens_token_hash_key".to_string()),
        "{table}"
    );
    assert!(
        class("audit log by user")
            .indexes
            .iter()
            .any(|i| i.contains("user_id_created_at_id_idx")),
        "{table}"
    );

    // ---------------------------------------------------------- cleanup
    let scale = cleanup_scale::run(&pool).await.unwrap();
    let shown = scale.markdown();
    assert!(scale.finished, "{shown}");
    assert_eq!(scale.backlog.deleted_refresh_tokens, 400, "{shown}");
    assert_eq!(scale.report.deleted_refresh_tokens, 400, "{shown}");
    assert_eq!(
        scale.report.anonymized_users + scale.report.retention_expired_users,
        8,
        "{shown}"
    );
    assert_eq!(scale.remaining.deleted_refresh_tokens, 0, "{shown}");
    assert_eq!(
        scale.remaining.anonymized_users + scale.remaining.retention_expired_users,
        0
    );
    assert!(scale.transactions_seen > 0, "{shown}");
    assert!(
        scale.longest.duration > std::time::Duration::ZERO,
        "{shown}"
    );
    assert!(scale.longest.duration <= scale.total, "{shown}");
    assert!(shown.contains("longest lock"), "{shown}");
    assert_eq!(count(&pool, EXPIRED).await, 0);
    assert_eq!(count(&pool, DUE).await, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM users WHERE anonymized_at IS NOT NULL"
        )
        .await,
        8
    );

    // While another cleanup holds the job's lock, a measurement would time a
    // run that does nothing: it is refused.
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(shared::jobs::cleanup::LOCK_KEY)
        .execute(&mut *holder)
        .await
        .unwrap();
    let refused = cleanup_scale::run(&pool).await;
    assert!(
        refused.is_err(),
        "measured a run that could not take the lock"
    );
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut *holder)
        .await
        .unwrap();
    drop(holder);

    // Seeding again refills the backlog the cleanup consumed, nothing else.
    let refill = seed::run(&pool, &more).await.unwrap();
    assert_eq!((refill.backlog_users, refill.backlog_tokens), (8, 400));
    assert_eq!(refill.users_after, 400);
    assert_eq!(count(&pool, EXPIRED).await, 400);
    assert_eq!(count(&pool, DUE).await, 8);
}
