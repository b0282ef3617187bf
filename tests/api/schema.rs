//! The schema (docs/schema.md) as migrated: constraints, uniqueness,
//! foreign keys, triggers, functions, partitions, and each fix of the
//! design's defects (named FIX n as in the migration).

use serde_json::Value;
use shared::db::MIGRATOR;
use sqlx::{AssertSqlSafe, PgPool, Row};
use uuid::Uuid;

type TestResult = anyhow::Result<()>;

async fn insert_user(pool: &PgPool, username: &str, email: &str) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, 'x') RETURNING id",
    )
    .bind(username)
    .bind(email)
    .fetch_one(pool)
    .await
}

fn constraint_of(err: &sqlx::Error) -> Option<String> {
    err.as_database_error()
        .and_then(|e| e.constraint())
        .map(str::to_owned)
}

async fn expect_violation(pool: &PgPool, sql: &str, constraint: &str) {
    let err = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .expect_err(&format!("`{sql}` should violate {constraint}"));
    assert_eq!(constraint_of(&err).as_deref(), Some(constraint), "{err}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn users_check_constraints_reject_bad_rows(pool: PgPool) -> TestResult {
    let id = insert_user(&pool, "alice", "alice@example.com").await?;
    let cases = [
        ("UPDATE users SET username = 'ab'", "username_length"),
        ("UPDATE users SET email = 'not-an-email'", "email_format"),
        ("UPDATE users SET email = 'a@b.c'", "email_format"),
        ("UPDATE users SET phone_number = '0123'", "phone_format"),
        (
            "UPDATE users SET phone_number = '+1234567890123456'",
            "phone_format",
        ),
        (
            "UPDATE users SET deleted_at = created_at - interval '1 day'",
            "valid_dates",
        ),
        ("UPDATE users SET bio = repeat('x', 501)", "users_bio_check"),
        (
            "UPDATE users SET failed_login_attempts = -1",
            "failed_attempts_non_negative",
        ),
    ];
    for (sql, constraint) in cases {
        expect_violation(&pool, sql, constraint).await;
    }
    // The limits themselves are accepted.
    sqlx::query(
        "UPDATE users SET bio = repeat('x', 500), phone_number = '+447911123456' WHERE id = $1",
    )
    .bind(id)
    .execute(&pool)
    .await?;
    Ok(())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn token_and_rate_limit_checks_reject_bad_rows(pool: PgPool) -> TestResult {
    let user = insert_user(&pool, "alice", "alice@example.com").await?;
    let refresh = format!(
        "INSERT INTO refresh_tokens (user_id, session_id, token_hash, expires_at, session_expires_at, created_at)
         VALUES ('{user}', gen_random_uuid(), 'h1', now() - interval '1 hour', now(), now())"
    );
    expect_violation(&pool, &refresh, "valid_expiry").await;
    let reset = format!(
        "INSERT INTO password_reset_tokens (user_id, token_hash, expires_at) VALUES ('{user}', 'h', now() - interval '1 s')"
    );
    expect_violation(&pool, &reset, "valid_reset_expiry").await;
    let used_late = format!(
        "INSERT INTO password_reset_tokens (user_id, token_hash, expires_at, used_at)
         VALUES ('{user}', 'h', now() + interval '1 hour', now() + interval '2 hours')"
    );
    expect_violation(&pool, &used_late, "used_before_expiry").await;
    let verify = format!(
        "INSERT INTO email_verification_tokens (user_id, email, token_hash, expires_at)
         VALUES ('{user}', 'a@example.com', 'h', now() - interval '1 s')"
    );
    expect_violation(&pool, &verify, "valid_verification_expiry").await;
    expect_violation(
        &pool,
        "INSERT INTO rate_limits (identifier, endpoint, window_start, window_end) VALUES ('ip', 'login', now(), now())",
        "valid_window",
    )
    .await;
    expect_violation(
        &pool,
        "INSERT INTO roles (name, permissions) VALUES ('x', '{\"a\": 1}')",
        "permissions_is_array",
    )
    .await;
    let token: Uuid = sqlx::query_scalar(
        "INSERT INTO refresh_tokens (user_id, session_id, token_hash, expires_at, session_expires_at)
         VALUES ($1, gen_random_uuid(), 'h2', now() + interval '1 day', now() + interval '2 days') RETURNING id",
    )
    .bind(user)
    .fetch_one(&pool)
    .await?;
    expect_violation(
        &pool,
        &format!("UPDATE refresh_tokens SET replaced_by = id WHERE id = '{token}'"),
        "no_self_replacement",
    )
    .await;
    Ok(())
}

// FIX 3: uniqueness is case-insensitive.
#[sqlx::test(migrator = "MIGRATOR")]
async fn email_and_username_are_unique_case_insensitively(pool: PgPool) -> TestResult {
    insert_user(&pool, "alice", "alice@example.com").await?;
    let err = insert_user(&pool, "alice2", "Alice@Example.COM")
        .await
        .unwrap_err();
    assert_eq!(constraint_of(&err).as_deref(), Some("users_email_key"));
    let err = insert_user(&pool, "ALICE", "other@example.com")
        .await
        .unwrap_err();
    assert_eq!(constraint_of(&err).as_deref(), Some("users_username_key"));
    Ok(())
}

// FIX 2: soft delete works (the original design's version broke its own CHECK) and
// frees the e-mail and username without rewriting them.
#[sqlx::test(migrator = "MIGRATOR")]
async fn soft_delete_frees_email_and_username_without_mangling(pool: PgPool) -> TestResult {
    let id = insert_user(&pool, "alice", "alice@example.com").await?;
    let deleted: bool = sqlx::query_scalar("SELECT soft_delete_user($1)")
        .bind(id)
        .fetch_one(&pool)
        .await?;
    assert!(deleted);
    let row = sqlx::query(
        "SELECT email, username, status::text AS status, deleted_at FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await?;
    assert_eq!(row.get::<String, _>("email"), "alice@example.com");
    assert_eq!(row.get::<String, _>("status"), "deleted");
    assert!(
        row.get::<Option<chrono::DateTime<chrono::Utc>>, _>("deleted_at")
            .is_some()
    );
    // A second soft delete is a no-op.
    let again: bool = sqlx::query_scalar("SELECT soft_delete_user($1)")
        .bind(id)
        .fetch_one(&pool)
        .await?;
    assert!(!again);
    // The address and name are free again, in any case.
    insert_user(&pool, "Alice", "ALICE@example.com").await?;
    Ok(())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn other_uniqueness_rules_hold(pool: PgPool) -> TestResult {
    let user = insert_user(&pool, "alice", "alice@example.com").await?;
    let insert = format!(
        "INSERT INTO refresh_tokens (user_id, session_id, token_hash, expires_at, session_expires_at)
         VALUES ('{user}', gen_random_uuid(), 'same', now() + interval '1 day', now() + interval '1 day')"
    );
    sqlx::query(AssertSqlSafe(insert.clone()))
        .execute(&pool)
        .await?;
    expect_violation(&pool, &insert, "refresh_tokens_token_hash_key").await;
    expect_violation(
        &pool,
        "INSERT INTO roles (name) VALUES ('admin')",
        "roles_name_key",
    )
    .await;
    let window = "INSERT INTO rate_limits (identifier, endpoint, window_start, window_end)
                  VALUES ('ip', 'login', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z')";
    sqlx::query(window).execute(&pool).await?;
    expect_violation(&pool, window, "unique_rate_limit").await;
    Ok(())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn deleting_a_user_cascades_and_keeps_the_audit_trail(pool: PgPool) -> TestResult {
    let admin = insert_user(&pool, "admin", "admin@example.com").await?;
    let user = insert_user(&pool, "alice", "alice@example.com").await?;
    sqlx::query(
        "INSERT INTO refresh_tokens (user_id, session_id, token_hash, expires_at, session_expires_at)
         VALUES ($1, gen_random_uuid(), 'h', now() + interval '1 day', now() + interval '1 day');
         ",
    )
    .bind(user)
    .execute(&pool)
    .await?;
    sqlx::query("INSERT INTO password_reset_tokens (user_id, token_hash, expires_at) VALUES ($1, 'r', now() + interval '1 hour')")
        .bind(user).execute(&pool).await?;
    sqlx::query("INSERT INTO email_verification_tokens (user_id, email, token_hash, expires_at) VALUES ($1, 'a@example.com', 'v', now() + interval '1 day')")
        .bind(user).execute(&pool).await?;
    sqlx::query("INSERT INTO user_roles (user_id, role_id, assigned_by) SELECT $1, id, $2 FROM roles WHERE name = 'admin'")
        .bind(user).bind(admin).execute(&pool).await?;
    sqlx::query("INSERT INTO user_roles (user_id, role_id, assigned_by) SELECT $1, id, $1 FROM roles WHERE name = 'admin'")
        .bind(admin).execute(&pool).await?;
    sqlx::query("INSERT INTO audit_logs (user_id, performed_by, action, entity_type) VALUES ($1, $2, 'logout', 'user')")
        .bind(user).bind(admin).execute(&pool).await?;

    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user)
        .execute(&pool)
        .await?;
    for table in [
        "refresh_tokens",
        "password_reset_tokens",
        "email_verification_tokens",
    ] {
        let left: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE user_id = $1"
        )))
        .bind(user)
        .fetch_one(&pool)
        .await?;
        assert_eq!(left, 0, "{table} kept rows of a deleted user");
    }
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM user_roles WHERE user_id = $1")
        .bind(user)
        .fetch_one(&pool)
        .await?;
    assert_eq!(roles, 0);
    // ON DELETE SET NULL: the audit rows stay, without the user id.
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE entity_id = $1 OR action = 'logout'",
    )
    .bind(user)
    .fetch_one(&pool)
    .await?;
    assert!(kept >= 2, "audit rows were lost");
    let pointing: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE user_id = $1")
        .bind(user)
        .fetch_one(&pool)
        .await?;
    assert_eq!(pointing, 0);

    // The assigning admin can be deleted too: assigned_by is set to NULL.
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(admin)
        .execute(&pool)
        .await?;
    let performed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE performed_by IS NOT NULL")
            .fetch_one(&pool)
            .await?;
    assert_eq!(performed, 0);
    Ok(())
}

// FIX 8: an expired successor can be deleted while its predecessor exists.
#[sqlx::test(migrator = "MIGRATOR")]
async fn deleting_a_successor_token_unlinks_its_predecessor(pool: PgPool) -> TestResult {
    let user = insert_user(&pool, "alice", "alice@example.com").await?;
    let session = Uuid::new_v4();
    let insert = "INSERT INTO refresh_tokens (user_id, session_id, token_hash, expires_at, session_expires_at)
                  VALUES ($1, $2, $3, now() + interval '1 day', now() + interval '1 day') RETURNING id";
    let old: Uuid = sqlx::query_scalar(insert)
        .bind(user)
        .bind(session)
        .bind("old")
        .fetch_one(&pool)
        .await?;
    let new: Uuid = sqlx::query_scalar(insert)
        .bind(user)
        .bind(session)
        .bind("new")
        .fetch_one(&pool)
        .await?;
    sqlx::query("UPDATE refresh_tokens SET revoked_at = now(), replaced_by = $2 WHERE id = $1")
        .bind(old)
        .bind(new)
        .execute(&pool)
        .await?;
    sqlx::query("DELETE FROM refresh_tokens WHERE id = $1")
        .bind(new)
        .execute(&pool)
        .await?;
    let replaced_by: Option<Uuid> =
        sqlx::query_scalar("SELECT replaced_by FROM refresh_tokens WHERE id = $1")
            .bind(old)
            .fetch_one(&pool)
            .await?;
    assert_eq!(replaced_by, None);
    Ok(())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn updated_at_and_password_changed_at_are_maintained(pool: PgPool) -> TestResult {
    let id = insert_user(&pool, "alice", "alice@example.com").await?;
    sqlx::query("UPDATE users SET updated_at = now() - interval '1 day', password_changed_at = now() - interval '1 day' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await?;
    // A profile change moves updated_at but not password_changed_at.
    sqlx::query("UPDATE users SET first_name = 'Alice' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await?;
    let row = sqlx::query("SELECT updated_at > now() - interval '1 minute' AS fresh, password_changed_at < now() - interval '1 hour' AS old FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await?;
    assert!(row.get::<bool, _>("fresh"));
    assert!(row.get::<bool, _>("old"));
    // Writing the same hash is no change; a new hash is.
    sqlx::query("UPDATE users SET password_hash = 'x' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await?;
    let unchanged: bool = sqlx::query_scalar(
        "SELECT password_changed_at < now() - interval '1 hour' FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await?;
    assert!(unchanged);
    sqlx::query("UPDATE users SET password_hash = 'y' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await?;
    let changed: bool = sqlx::query_scalar(
        "SELECT password_changed_at > now() - interval '1 minute' FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await?;
    assert!(changed);
    Ok(())
}

// FIX 7: the audit trigger names the changed fields, redacts personal ones
// and takes the request context from the transaction's settings.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_users_audit_trigger_records_changes_without_personal_data(pool: PgPool) -> TestResult {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('app.request_id', 'JKJaXmPLvHcESHA=', true), set_config('app.ip', '203.0.113.9', true)")
        .execute(&mut *tx)
        .await?;
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, first_name) VALUES ('alice', 'alice@example.com', 'secret-hash', 'Alice') RETURNING id",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("UPDATE users SET status = 'suspended', last_name = 'Liddell' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await?;
    // Bookkeeping alone (a login) writes no trigger row.
    sqlx::query("UPDATE users SET last_login_at = now(), failed_login_attempts = 0 WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await?;

    let rows = sqlx::query("SELECT action::text AS action, old_values, new_values, request_id, host(ip_address) AS ip, entity_id FROM audit_logs ORDER BY id")
        .fetch_all(&pool)
        .await?;
    assert_eq!(rows.len(), 2);
    let created = &rows[0];
    assert_eq!(created.get::<String, _>("action"), "user_registered");
    assert_eq!(
        created.get::<Option<String>, _>("request_id").as_deref(),
        Some("JKJaXmPLvHcESHA=")
    );
    assert_eq!(
        created.get::<Option<String>, _>("ip").as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(created.get::<Option<Uuid>, _>("entity_id"), Some(id));
    let new_values: Value = created.get("new_values");
    assert_eq!(new_values["status"], "active");
    assert_eq!(new_values["email"], "[redacted]");
    assert_eq!(new_values["first_name"], "[redacted]");
    let updated = &rows[1];
    assert_eq!(updated.get::<String, _>("action"), "status_changed");
    let old_values: Value = updated.get("old_values");
    let new_values: Value = updated.get("new_values");
    assert_eq!(old_values["status"], "active");
    assert_eq!(new_values["status"], "suspended");
    assert_eq!(new_values["last_name"], "[redacted]");
    assert!(
        new_values.get("email").is_none(),
        "unchanged fields are not recorded"
    );

    let everything: String =
        sqlx::query_scalar("SELECT COALESCE(string_agg(a::text, ' '), '') FROM audit_logs a")
            .fetch_one(&pool)
            .await?;
    for secret in ["alice@example.com", "Alice", "Liddell", "secret-hash"] {
        assert!(!everything.contains(secret), "audit trail holds {secret}");
    }
    Ok(())
}

// FIX 9: audit rows cannot be changed or deleted; FIX 10: request ids are text.
#[sqlx::test(migrator = "MIGRATOR")]
async fn audit_rows_are_immutable(pool: PgPool) -> TestResult {
    sqlx::query("INSERT INTO audit_logs (action, entity_type, request_id) VALUES ('logout', 'user', 'JKJaXmPLvHcESHA=')")
        .execute(&pool)
        .await?;
    for sql in [
        "UPDATE audit_logs SET severity = 'critical'",
        "UPDATE audit_logs SET request_id = 'forged'",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.expect_err(sql);
        assert!(err.to_string().contains("immutable"), "{sql}: {err}");
    }
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE request_id = 'JKJaXmPLvHcESHA='")
            .fetch_one(&pool)
            .await?;
    assert_eq!(count, 1);
    Ok(())
}

// FIX 5: audit_logs is range-partitioned by month, with partitions ahead.
#[sqlx::test(migrator = "MIGRATOR")]
async fn audit_logs_is_partitioned_by_month(pool: PgPool) -> TestResult {
    let kind: String =
        sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE relname = 'audit_logs'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(kind, "p");
    let ahead: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM generate_series(date_trunc('month', now()), date_trunc('month', now()) + interval '3 months', interval '1 month') m
         WHERE to_regclass('audit_logs_' || to_char(m, 'YYYY_MM')) IS NOT NULL",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(ahead, 4, "the current month and three ahead must exist");

    // Creating is idempotent; rows land in their month's partition.
    let created: i32 =
        sqlx::query_scalar("SELECT create_audit_partitions('2019-01-15', '2019-03-01')")
            .fetch_one(&pool)
            .await?;
    assert_eq!(created, 3);
    let again: i32 =
        sqlx::query_scalar("SELECT create_audit_partitions('2019-01-01', '2019-03-31')")
            .fetch_one(&pool)
            .await?;
    assert_eq!(again, 0);
    sqlx::query("INSERT INTO audit_logs (action, entity_type, created_at, log_date) VALUES ('logout', 'user', '2019-02-10', '2019-02-10')")
        .execute(&pool)
        .await?;
    let in_partition: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs_2019_02")
        .fetch_one(&pool)
        .await?;
    assert_eq!(in_partition, 1);

    // Retention drops whole months that end before the cutoff, nothing newer.
    let dropped: i32 = sqlx::query_scalar("SELECT drop_audit_partitions_before('2019-03-01')")
        .fetch_one(&pool)
        .await?;
    assert_eq!(dropped, 2);
    let left: Option<String> = sqlx::query_scalar("SELECT to_regclass('audit_logs_2019_03')::text")
        .fetch_one(&pool)
        .await?;
    assert_eq!(left.as_deref(), Some("audit_logs_2019_03"));
    Ok(())
}

// FIX 1: no index predicate uses a non-immutable function, and the original design's
// original statements are indeed rejected by PostgreSQL.
#[sqlx::test(migrator = "MIGRATOR")]
async fn index_predicates_are_immutable(pool: PgPool) -> TestResult {
    let volatile: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'
           AND (indexdef ILIKE '%now()%' OR indexdef ILIKE '%CURRENT_%')",
    )
    .fetch_all(&pool)
    .await?;
    assert!(volatile.is_empty(), "{volatile:?}");
    let original = "CREATE INDEX idx_refresh_tokens_hash ON refresh_tokens(token_hash)
                    WHERE revoked_at IS NULL AND expires_at > CURRENT_TIMESTAMP";
    let err = sqlx::query(original).execute(&pool).await.unwrap_err();
    assert!(err.to_string().contains("IMMUTABLE"), "{err}");

    for index in [
        "users_email_key",
        "users_username_key",
        "idx_users_status",
        "idx_users_status_created",
        "idx_users_created_at",
        "idx_users_last_login",
        "idx_users_deleted_at",
        "idx_users_fulltext",
        "refresh_tokens_token_hash_key",
        "idx_refresh_tokens_user",
        "idx_audit_logs_user_id",
        "idx_audit_logs_action",
        "idx_audit_logs_entity",
        "idx_rate_limits_window_end",
    ] {
        let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(index)
            .fetch_one(&pool)
            .await?;
        assert!(found.is_some(), "index {index} is missing");
    }
    Ok(())
}

// FIX 6: no index copies password hashes.
#[sqlx::test(migrator = "MIGRATOR")]
async fn no_index_holds_password_hashes(pool: PgPool) -> TestResult {
    let with_hash: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'users' AND indexdef LIKE '%password_hash%'",
    )
    .fetch_all(&pool)
    .await?;
    assert!(with_hash.is_empty(), "{with_hash:?}");
    Ok(())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn is_strong_password_follows_the_design_rule(pool: PgPool) -> TestResult {
    let long_ok = format!("Aa1!{}", "x".repeat(124));
    let too_long = format!("Aa1!{}", "x".repeat(125));
    let cases: &[(&str, bool)] = &[
        ("Abcdef1!", true),
        ("Abcde1!", false),
        ("abcdef1!", false),
        ("ABCDEF1!", false),
        ("Abcdefg!", false),
        ("Abcdefg1", false),
        ("Ab1 defgh", true),
        ("Pässwörd1", true),
        (&long_ok, true),
        (&too_long, false),
        ("", false),
    ];
    for (password, expected) in cases {
        let strong: bool = sqlx::query_scalar("SELECT is_strong_password($1)")
            .bind(password)
            .fetch_one(&pool)
            .await?;
        assert_eq!(strong, *expected, "is_strong_password({password:?})");
    }
    Ok(())
}

// FIX 4: cleanup_expired_data runs, and deletes expired tokens whether or
// not they were revoked.
#[sqlx::test(migrator = "MIGRATOR")]
async fn cleanup_expired_data_removes_what_retention_allows(pool: PgPool) -> TestResult {
    let user = insert_user(&pool, "alice", "alice@example.com").await?;
    let gone = insert_user(&pool, "bob", "bob@example.com").await?;
    let recent = insert_user(&pool, "carol", "carol@example.com").await?;
    let retained = insert_user(&pool, "dave", "dave@example.com").await?;
    // Tokens: expired 8 days ago (revoked and not), expired 1 day ago, live.
    sqlx::query(
        "INSERT INTO refresh_tokens (user_id, session_id, token_hash, created_at, expires_at, session_expires_at, revoked_at) VALUES
         ($1, gen_random_uuid(), 'a', now() - interval '30 days', now() - interval '8 days', now() - interval '8 days', NULL),
         ($1, gen_random_uuid(), 'b', now() - interval '30 days', now() - interval '8 days', now() - interval '8 days', now() - interval '20 days'),
         ($1, gen_random_uuid(), 'c', now() - interval '30 days', now() - interval '1 day', now() - interval '1 day', NULL),
         ($1, gen_random_uuid(), 'd', now(), now() + interval '1 day', now() + interval '1 day', NULL)",
    )
    .bind(user)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO password_reset_tokens (user_id, token_hash, created_at, expires_at) VALUES
         ($1, 'r1', now() - interval '9 days', now() - interval '8 days'), ($1, 'r2', now(), now() + interval '1 hour')",
    )
    .bind(user)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO email_verification_tokens (user_id, email, token_hash, created_at, expires_at) VALUES
         ($1, 'a@example.com', 'v1', now() - interval '9 days', now() - interval '8 days')",
    )
    .bind(user)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO rate_limits (identifier, endpoint, window_start, window_end) VALUES
         ('ip', 'login', now() - interval '3 hours', now() - interval '2 hours'),
         ('ip', 'login', now() - interval '30 seconds', now() + interval '30 seconds')",
    )
    .execute(&pool)
    .await?;
    // Soft-deleted 100 days ago (due), 10 days ago (not due), and a user past
    // data_retention_until.
    sqlx::query("UPDATE users SET created_at = now() - interval '200 days', deleted_at = now() - interval '100 days', status = 'deleted', first_name = 'Bob' WHERE id = $1")
        .bind(gone).execute(&pool).await?;
    sqlx::query("UPDATE users SET created_at = now() - interval '20 days', deleted_at = now() - interval '10 days', status = 'deleted' WHERE id = $1")
        .bind(recent).execute(&pool).await?;
    sqlx::query("UPDATE users SET data_retention_until = CURRENT_DATE - 1 WHERE id = $1")
        .bind(retained)
        .execute(&pool)
        .await?;

    let row = sqlx::query("SELECT * FROM cleanup_expired_data()")
        .fetch_one(&pool)
        .await?;
    assert_eq!(row.get::<i32, _>("deleted_tokens"), 4);
    assert_eq!(row.get::<i32, _>("deleted_rate_limits"), 1);
    assert_eq!(row.get::<i32, _>("anonymized_users"), 2);

    let left: Vec<String> =
        sqlx::query_scalar("SELECT token_hash FROM refresh_tokens ORDER BY token_hash")
            .fetch_all(&pool)
            .await?;
    assert_eq!(left, ["c", "d"]);
    let anonymised =
        sqlx::query("SELECT email, username, first_name, password_hash FROM users WHERE id = $1")
            .bind(gone)
            .fetch_one(&pool)
            .await?;
    assert_eq!(
        anonymised.get::<String, _>("email"),
        format!("anonymized.{gone}@deleted.local")
    );
    assert_eq!(
        anonymised.get::<String, _>("username"),
        format!("user_{gone}")
    );
    assert_eq!(anonymised.get::<Option<String>, _>("first_name"), None);
    let recent_email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(recent)
        .fetch_one(&pool)
        .await?;
    assert_eq!(recent_email, "carol@example.com");

    // No audit row keeps the anonymised users' old e-mail (FIX 7).
    let trail: String =
        sqlx::query_scalar("SELECT COALESCE(string_agg(a::text, ' '), '') FROM audit_logs a")
            .fetch_one(&pool)
            .await?;
    assert!(!trail.contains("bob@example.com"));
    assert!(!trail.contains("dave@example.com"));
    assert!(trail.contains("user_anonymized"));

    // A second run finds nothing to do.
    let row = sqlx::query("SELECT * FROM cleanup_expired_data()")
        .fetch_one(&pool)
        .await?;
    assert_eq!(
        (
            row.get::<i32, _>("deleted_tokens"),
            row.get::<i32, _>("deleted_rate_limits"),
            row.get::<i32, _>("anonymized_users")
        ),
        (0, 0, 0)
    );
    Ok(())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_admin_role_holds_every_permission(pool: PgPool) -> TestResult {
    let permissions: Value =
        sqlx::query_scalar("SELECT permissions FROM roles WHERE name = 'admin'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(permissions, serde_json::json!(["*"]));
    Ok(())
}

const RESIDUE: &str = "SELECT
    (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relname <> '_sqlx_migrations' AND c.relname NOT LIKE '_sqlx_migrations%')
  + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = 'public' AND t.typtype = 'e')
  + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'public')";

#[sqlx::test(migrations = false)]
async fn migrations_round_trip_without_residue(pool: PgPool) -> TestResult {
    let before: i64 = sqlx::query_scalar(RESIDUE).fetch_one(&pool).await?;
    MIGRATOR.run(&pool).await?;
    let applied: i64 = sqlx::query_scalar(RESIDUE).fetch_one(&pool).await?;
    assert!(applied > before);
    MIGRATOR.undo(&pool, 0).await?;
    let after_down: i64 = sqlx::query_scalar(RESIDUE).fetch_one(&pool).await?;
    assert_eq!(
        after_down, before,
        "the down migrations left objects behind"
    );
    MIGRATOR.run(&pool).await?;
    let again: i64 = sqlx::query_scalar(RESIDUE).fetch_one(&pool).await?;
    assert_eq!(again, applied);
    Ok(())
}

/// Every foreign key has an index whose leading columns are the key's: without
/// one, deleting or re-keying a referenced row scans the referencing table
/// once per row (FIX 11: `refresh_tokens.replaced_by` made the cleanup's
/// batched token delete quadratic).
#[sqlx::test(migrator = "MIGRATOR")]
async fn every_foreign_key_is_indexed(pool: PgPool) -> TestResult {
    let unindexed: Vec<String> = sqlx::query_scalar(
        "SELECT c.conrelid::regclass || '(' || c.conname || ')'
         FROM pg_constraint c
         WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
           AND NOT EXISTS (
               SELECT 1 FROM pg_index i
               WHERE i.indrelid = c.conrelid
                 AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] = c.conkey)
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
    Ok(())
}

/// The role the API functions connect as cannot alter the audit trail:
/// no DELETE, UPDATE or TRUNCATE privilege, and it owns nothing, so it
/// cannot disable the triggers that keep the rows immutable either.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_app_role_cannot_alter_the_audit_trail(pool: PgPool) -> TestResult {
    sqlx::query("INSERT INTO audit_logs (action, entity_type) VALUES ('logout', 'user')")
        .execute(&pool)
        .await?;
    let app = tests::app_pool(&pool);
    for sql in [
        "DELETE FROM audit_logs",
        "UPDATE audit_logs SET severity = 'critical'",
        "TRUNCATE audit_logs",
        // Deleting a user would null the audit trail's references to it.
        "DELETE FROM users",
        "ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_immutable",
        "ALTER TABLE audit_logs DISABLE TRIGGER ALL",
        "DROP TABLE audit_logs CASCADE",
        "SELECT drop_audit_partitions_before('2999-01-01')",
    ] {
        let err = sqlx::query(AssertSqlSafe(sql))
            .execute(&app)
            .await
            .expect_err(sql);
        let message = err.to_string();
        assert!(
            message.contains("permission denied") || message.contains("must be owner"),
            "{sql}: {message}"
        );
    }
    // What the API needs, it has.
    sqlx::query("INSERT INTO audit_logs (action, entity_type) VALUES ('logout', 'user')")
        .execute(&app)
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs")
        .fetch_one(&app)
        .await?;
    assert_eq!(rows, 2);
    Ok(())
}

/// The `anonymized_at` backfill marks the rows `anonymize_user` produced,
/// not a live user whose address merely has the anonymised form; that user
/// is anonymised when its retention ends.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_anonymized_at_backfill_takes_only_anonymised_rows(pool: PgPool) -> anyhow::Result<()> {
    MIGRATOR.undo(&pool, 20261203000001).await?;
    let lookalike: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, data_retention_until)
         VALUES ('tricky', 'anonymized.me@deleted.local', 'x', CURRENT_DATE - 1) RETURNING id",
    )
    .fetch_one(&pool)
    .await?;
    let gone: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, created_at, deleted_at, status)
         VALUES ('gone', 'gone@example.com', 'x', now() - interval '200 days',
                 now() - interval '100 days', 'deleted') RETURNING id",
    )
    .fetch_one(&pool)
    .await?;
    sqlx::query("SELECT anonymize_user($1)")
        .bind(gone)
        .execute(&pool)
        .await?;
    MIGRATOR.run(&pool).await?;
    let marked = |id: uuid::Uuid| {
        sqlx::query_scalar::<_, bool>("SELECT anonymized_at IS NOT NULL FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
    };
    assert!(marked(gone).await?, "an anonymised row is marked");
    assert!(!marked(lookalike).await?, "a look-alike address is not");
    let (_, _, anonymized): (i32, i32, i32) =
        sqlx::query_as("SELECT * FROM cleanup_expired_data()")
            .fetch_one(&pool)
            .await?;
    assert_eq!(
        anonymized, 1,
        "the look-alike is anonymised when its retention ends"
    );
    Ok(())
}
