//! The role catalog (roles kept in memory by version, shared/src/security/
//! role_catalog.rs): a role's changed permissions, name or existence apply
//! from the first request after the change commits, though every request
//! before it was served from the copy; and the version moves only when the
//! change commits.

use axum::http::Method;
use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{TestApp, assert_problem};

async fn version(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT version FROM role_catalog")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_roles_changed_permissions_apply_from_the_next_request(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, root) = app.user_with("root", &["*"]).await;
    let (alice, token) = app.user_with("alice", &["audit:read"]).await;
    let role: uuid::Uuid = sqlx::query_scalar("SELECT role_id FROM user_roles WHERE user_id = $1")
        .bind(alice.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // Served twice from the same copy.
    for _ in 0..2 {
        assert_eq!(app.get_as("/v1/admin/audit-logs", &token).await.status, 200);
    }

    let path = format!("/v1/admin/roles/{role}");
    let emptied = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"permissions": []})),
            Some(&root),
        )
        .await;
    assert_eq!(emptied.status, 200, "{}", emptied.body);
    assert_problem(
        &app.get_as("/v1/admin/audit-logs", &token).await,
        403,
        "forbidden",
    );

    // A change made outside the API (an operator's SQL) applies as well.
    sqlx::query(
        "UPDATE roles SET permissions = '[\"audit:read\"]', name = 'auditors' WHERE id = $1",
    )
    .bind(role)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(app.get_as("/v1/admin/audit-logs", &token).await.status, 200);
    let me = app.get_as("/v1/users/me", &token).await;
    assert_eq!(me.body["roles"], json!(["auditors"]), "{}", me.body);

    let deleted = app.call(Method::DELETE, &path, None, Some(&root)).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_problem(
        &app.get_as("/v1/admin/audit-logs", &token).await,
        403,
        "forbidden",
    );
    let me = app.get_as("/v1/users/me", &token).await;
    assert_eq!(me.body["roles"], json!([]), "{}", me.body);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_version_moves_when_a_role_change_commits(pool: PgPool) {
    let before = version(&pool).await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO roles (name, permissions) VALUES ('x', '[]')")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(version(&pool).await, before, "not before the commit");
    tx.commit().await.unwrap();
    let after_insert = version(&pool).await;
    assert!(after_insert > before);

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE roles SET permissions = '[\"users:read\"]' WHERE name = 'x'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        version(&pool).await,
        after_insert,
        "a rolled-back change is no change"
    );

    sqlx::query("DELETE FROM roles WHERE name = 'x'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(version(&pool).await > after_insert);
}

/// A version that went backwards (a restored database, a re-run migration)
/// is not taken for an old one: the copy is reloaded whenever the versions
/// differ, so a permission removed after the rewind is removed.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_rewound_version_still_reloads(pool: PgPool) {
    let app = TestApp::new(pool);
    let (alice, token) = app.user_with("alice", &["audit:read"]).await;
    for _ in 0..3 {
        // Several bumps, so the copy's version is well ahead of 1.
        sqlx::query("UPDATE roles SET description = 'x' WHERE name = 'admin'")
            .execute(&app.pool)
            .await
            .unwrap();
    }
    assert_eq!(app.get_as("/v1/admin/audit-logs", &token).await.status, 200);
    sqlx::query("UPDATE role_catalog SET version = 1")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE roles SET permissions = '[]'
         WHERE id IN (SELECT role_id FROM user_roles WHERE user_id = $1)",
    )
    .bind(alice.id)
    .execute(&app.pool)
    .await
    .unwrap();
    assert!(version(&app.pool).await < 4);
    assert_problem(
        &app.get_as("/v1/admin/audit-logs", &token).await,
        403,
        "forbidden",
    );
}
