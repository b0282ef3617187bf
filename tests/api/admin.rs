//! The admin group: the authorisation matrix, user administration, roles,
//! audit queries and statistics.

use axum::http::Method;
use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{STRONG_PASSWORD, TestApp, assert_problem};
use uuid::Uuid;

struct Route {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    permission: &'static str,
    success: u16,
    /// Status for an authenticated caller without the permission.
    denied: u16,
}

fn routes() -> Vec<Route> {
    let r = |method: Method, path, body: Option<Value>, permission, success| Route {
        method,
        path,
        body,
        permission,
        success,
        denied: 403,
    };
    vec![
        r(Method::GET, "/v1/admin/users", None, "users:read", 200),
        r(Method::GET, "/v1/admin/users/{id}", None, "users:read", 200),
        r(
            Method::PATCH,
            "/v1/admin/users/{id}",
            Some(json!({"first_name": "Changed"})),
            "users:write",
            200,
        ),
        r(
            Method::POST,
            "/v1/admin/users/{id}/unlock",
            None,
            "users:write",
            204,
        ),
        r(
            Method::POST,
            "/v1/admin/users/{id}/revoke-sessions",
            None,
            "users:write",
            204,
        ),
        r(
            Method::POST,
            "/v1/admin/users/{id}/password-reset",
            None,
            "users:write",
            202,
        ),
        r(
            Method::DELETE,
            "/v1/admin/users/{id}",
            None,
            "users:delete",
            204,
        ),
        r(
            Method::POST,
            "/v1/admin/users/{deleted}/restore",
            None,
            "users:delete",
            200,
        ),
        r(Method::GET, "/v1/admin/roles", None, "roles:manage", 200),
        r(
            Method::POST,
            "/v1/admin/roles",
            Some(json!({"name": "{fresh}", "permissions": ["roles:manage"]})),
            "roles:manage",
            201,
        ),
        r(
            Method::PATCH,
            "/v1/admin/roles/{role}",
            Some(json!({"description": "changed"})),
            "roles:manage",
            200,
        ),
        r(
            Method::DELETE,
            "/v1/admin/roles/{role}",
            None,
            "roles:manage",
            204,
        ),
        r(
            Method::PUT,
            "/v1/admin/users/{id}/roles/{role_name}",
            None,
            "roles:manage",
            204,
        ),
        r(
            Method::DELETE,
            "/v1/admin/users/{id}/roles/{role_name}",
            None,
            "roles:manage",
            204,
        ),
        r(Method::GET, "/v1/admin/audit-logs", None, "audit:read", 200),
        r(Method::GET, "/v1/admin/stats", None, "stats:read", 200),
        r(Method::GET, "/v1/users", None, "users:read", 200),
        Route {
            denied: 404,
            ..r(Method::GET, "/v1/users/{id}", None, "users:read", 200)
        },
    ]
}

/// A fresh target for one call: a user, a deleted user and a role.
async fn fixture(app: &TestApp, n: usize) -> (Uuid, Uuid, Uuid, String) {
    let user: Uuid = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash) VALUES ($1, $1 || '@example.com', 'x') RETURNING id",
    )
    .bind(format!("target{n}"))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let deleted: Uuid = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, deleted_at, status)
         VALUES ($1, $1 || '@example.com', 'x', now(), 'deleted') RETURNING id",
    )
    .bind(format!("gone{n}"))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let role_name = format!("role{n}");
    let role: Uuid =
        sqlx::query_scalar("INSERT INTO roles (name, permissions) VALUES ($1, '[]') RETURNING id")
            .bind(&role_name)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    sqlx::query("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)")
        .bind(user)
        .bind(role)
        .execute(&app.pool)
        .await
        .unwrap();
    (user, deleted, role, role_name)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_authorisation_matrix_holds(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "1000")]);
    let (_, plain) = app.user_with("plain", &[]).await;
    let (admin_user, admin) = app.user_with("admin", &["*"]).await;
    let (suspended_user, suspended) = app.user_with("suspended", &["*"]).await;
    sqlx::query("UPDATE users SET status = 'suspended' WHERE id = $1")
        .bind(suspended_user.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let mut holders = std::collections::HashMap::new();
    for (i, permission) in [
        "users:read",
        "users:write",
        "users:delete",
        "roles:manage",
        "audit:read",
        "stats:read",
    ]
    .iter()
    .enumerate()
    {
        holders.insert(
            *permission,
            app.user_with(&format!("holder{i}"), &[permission]).await.1,
        );
    }
    let mut n = 0;
    for route in routes() {
        let other = if route.permission == "stats:read" {
            "audit:read"
        } else {
            "stats:read"
        };
        let callers: [(&str, Option<&str>, u16); 6] = [
            ("anonymous", None, 401),
            ("plain user", Some(&plain), route.denied),
            (
                "exact permission",
                Some(&holders[route.permission]),
                route.success,
            ),
            ("other permission", Some(&holders[other]), route.denied),
            ("admin", Some(&admin), route.success),
            ("suspended admin", Some(&suspended), 403),
        ];
        for (who, token, expected) in callers {
            n += 1;
            let (user, deleted, role, role_name) = fixture(&app, n).await;
            let path = route
                .path
                .replace("{id}", &user.to_string())
                .replace("{deleted}", &deleted.to_string())
                .replace("{role_name}", &role_name)
                .replace("{role}", &role.to_string());
            let body = route.body.as_ref().map(|b| {
                serde_json::from_str(&b.to_string().replace("{fresh}", &format!("fresh{n}")))
                    .unwrap()
            });
            let response = app.call(route.method.clone(), &path, body, token).await;
            assert_eq!(
                response.status.as_u16(),
                expected,
                "{} {} as {who}: {}",
                route.method,
                route.path,
                response.body
            );
            if who == "suspended admin" {
                assert_eq!(response.code(), Some("account_disabled"));
            }
        }
    }
    let _ = admin_user;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn admin_user_list_filters_and_sorts(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, admin) = app.user_with("admin", &["users:read"]).await;
    sqlx::query(
        "INSERT INTO users (username, email, password_hash, status, created_at, last_login_at, first_name) VALUES
         ('old', 'old@example.com', 'x', 'active', '2024-01-01', '2026-01-01', 'Oldie'),
         ('sus', 'sus@example.com', 'x', 'suspended', '2025-06-01', NULL, 'Sue'),
         ('new', 'new@example.com', 'x', 'active', '2026-06-01', '2025-01-01', 'Newton')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO users (username, email, password_hash, status, created_at, deleted_at) VALUES ('gone', 'gone@example.com', 'x', 'deleted', '2025-01-01', now())")
        .execute(&app.pool)
        .await
        .unwrap();
    let names = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_string())
            .collect()
    };
    let get = |q: &str| {
        let path = format!("/v1/admin/users?{q}");
        let (app, admin) = (&app, &admin);
        async move { app.get_as(&path, admin).await }
    };
    assert_eq!(names(&get("status=suspended").await.body), ["sus"]);
    assert_eq!(names(&get("email=OLD@example.com").await.body), ["old"]);
    assert_eq!(names(&get("q=newton").await.body), ["new"]);
    assert_eq!(
        names(
            &get("created_from=2025-01-01T00:00:00Z&created_to=2026-01-01T00:00:00Z")
                .await
                .body
        ),
        ["sus"]
    );
    assert!(!names(&get("").await.body).contains(&"gone".to_string()));
    let with_deleted = get("include_deleted=true&created_to=2025-12-31T00:00:00Z").await;
    assert_eq!(names(&with_deleted.body), ["sus", "gone", "old"]);
    let deleted_row = &with_deleted.body["items"][1];
    assert!(deleted_row["deleted_at"].is_string());
    assert!(
        deleted_row.get("failed_login_attempts").is_some(),
        "admin view"
    );
    let by_login = get("sort=last_login_at&limit=2").await;
    assert_eq!(names(&by_login.body)[0], "admin");
    let mut all = names(&by_login.body);
    let next = get(&format!(
        "sort=last_login_at&limit=2&cursor={}",
        by_login.body["next_cursor"].as_str().unwrap()
    ))
    .await;
    all.extend(names(&next.body));
    assert!(next.body["next_cursor"].is_null());
    assert_eq!(
        all,
        ["admin", "old", "new", "sus"],
        "last login, newest first, never-logged-in last"
    );
    assert_problem(&get("sort=name").await, 422, "validation_failed");
    assert_problem(
        &get("created_from=yesterday").await,
        422,
        "validation_failed",
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn suspension_applies_at_once_and_is_audited_with_the_admin(pool: PgPool) {
    let app = TestApp::new(pool);
    let (admin_user, admin) = app.user_with("admin", &["users:write"]).await;
    let (alice, token) = app.user_with("alice", &[]).await;
    let response = app
        .call(
            Method::PATCH,
            &format!("/v1/admin/users/{}", alice.id),
            Some(json!({"status": "suspended"})),
            Some(&admin),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["status"], "suspended");
    let verified = app
        .call(
            Method::PATCH,
            &format!("/v1/admin/users/{}", alice.id),
            Some(json!({"is_email_verified": true})),
            Some(&admin),
        )
        .await;
    assert_eq!(verified.body["is_email_verified"], true);
    assert_problem(
        &app.get_as("/v1/users/me", &token).await,
        403,
        "account_disabled",
    );
    let performed_by: Option<Uuid> = sqlx::query_scalar(
        "SELECT performed_by FROM audit_logs WHERE action = 'status_changed' AND user_id = $1",
    )
    .bind(alice.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(performed_by, Some(admin_user.id));
    let deleting = app
        .call(
            Method::PATCH,
            &format!("/v1/admin/users/{}", alice.id),
            Some(json!({"status": "deleted"})),
            Some(&admin),
        )
        .await;
    assert_problem(&deleting, 422, "validation_failed");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unlock_revoke_and_reset_act_on_the_user(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, admin) = app.user_with("admin", &["users:write"]).await;
    let (alice, token) = app.user_with("alice", &[]).await;
    sqlx::query("UPDATE users SET failed_login_attempts = 5, locked_until = now() + interval '1 hour' WHERE id = $1")
        .bind(alice.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let unlock = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/unlock", alice.id),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(unlock.status, 204);
    assert_eq!(app.login_as(&alice).await.status, 200);
    let revoke = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/revoke-sessions", alice.id),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(revoke.status, 204);
    assert_eq!(app.get_as("/v1/users/me", &token).await.status, 401);
    let reset = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/password-reset", alice.id),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(reset.status, 202);
    assert!(
        app.token_from_mail(&alice.email, "reset-password")
            .is_some()
    );
    let missing = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{}/unlock", Uuid::new_v4()),
            None,
            Some(&admin),
        )
        .await;
    assert_problem(&missing, 404, "not_found");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn delete_and_restore_follow_the_rules(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, admin) = app
        .user_with("admin", &["users:delete", "users:read"])
        .await;
    let (alice, _) = app.user_with("alice", &[]).await;
    let path = format!("/v1/admin/users/{}", alice.id);
    assert_eq!(
        app.call(Method::DELETE, &path, None, Some(&admin))
            .await
            .status,
        204
    );
    let view = app.get_as(&path, &admin).await;
    assert_eq!(view.body["status"], "deleted");
    assert!(view.body["deleted_at"].is_string());
    assert_problem(&app.login_as(&alice).await, 401, "invalid_credentials");
    let restored = app
        .call(Method::POST, &format!("{path}/restore"), None, Some(&admin))
        .await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(restored.body["status"], "active");
    assert_eq!(app.login_as(&alice).await.status, 200);
    assert_problem(
        &app.call(Method::POST, &format!("{path}/restore"), None, Some(&admin))
            .await,
        409,
        "conflict",
    );

    // Taken meanwhile: 409 naming what.
    app.call(Method::DELETE, &path, None, Some(&admin)).await;
    app.post(
        "/v1/auth/register",
        json!({"username": "alice", "email": "someone@example.com", "password": STRONG_PASSWORD}),
    )
    .await;
    assert_problem(
        &app.call(Method::POST, &format!("{path}/restore"), None, Some(&admin))
            .await,
        409,
        "username_taken",
    );

    // After anonymisation a restore is impossible.
    sqlx::query("SELECT anonymize_user($1)")
        .bind(alice.id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_problem(
        &app.call(Method::POST, &format!("{path}/restore"), None, Some(&admin))
            .await,
        409,
        "conflict",
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn roles_are_managed_and_applied_at_once(pool: PgPool) {
    let app = TestApp::new(pool);
    // The manager holds what the roles it hands out grant (docs/security.md).
    let (_, admin) = app
        .user_with("admin", &["roles:manage", "audit:read", "stats:read"])
        .await;
    let (_, root) = app.user_with("root", &["*"]).await;
    let (alice, token) = app.user_with("alice", &[]).await;
    let created = app
        .call(Method::POST, "/v1/admin/roles",
              Some(json!({"name": "auditor", "description": "Reads the audit log", "permissions": ["audit:read"]})), Some(&admin))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["permissions"], json!(["audit:read"]));
    let id = created.body["id"].as_str().unwrap().to_string();
    let duplicate = app
        .call(
            Method::POST,
            "/v1/admin/roles",
            Some(json!({"name": "auditor", "permissions": []})),
            Some(&admin),
        )
        .await;
    assert_problem(&duplicate, 409, "conflict");
    let bad = app
        .call(
            Method::POST,
            "/v1/admin/roles",
            Some(json!({"name": "x", "permissions": ["everything"]})),
            Some(&admin),
        )
        .await;
    assert_problem(&bad, 422, "validation_failed");

    assert_problem(
        &app.get_as("/v1/admin/audit-logs", &token).await,
        403,
        "forbidden",
    );
    let assign = format!("/v1/admin/users/{}/roles/auditor", alice.id);
    for _ in 0..2 {
        assert_eq!(
            app.call(Method::PUT, &assign, None, Some(&admin))
                .await
                .status,
            204,
            "idempotent"
        );
    }
    assert_eq!(
        app.get_as("/v1/admin/audit-logs", &token).await.status,
        200,
        "applies at once"
    );
    for _ in 0..2 {
        assert_eq!(
            app.call(Method::DELETE, &assign, None, Some(&admin))
                .await
                .status,
            204,
            "idempotent"
        );
    }
    assert_problem(
        &app.get_as("/v1/admin/audit-logs", &token).await,
        403,
        "forbidden",
    );
    let assigned: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs WHERE action IN ('role_assigned', 'role_removed') AND user_id = $1")
        .bind(alice.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(assigned, 2, "no-op repeats are not audited");
    assert_problem(
        &app.call(
            Method::PUT,
            &format!("/v1/admin/users/{}/roles/nope", alice.id),
            None,
            Some(&admin),
        )
        .await,
        404,
        "not_found",
    );

    let patched = app
        .call(
            Method::PATCH,
            &format!("/v1/admin/roles/{id}"),
            Some(json!({"permissions": ["audit:read", "stats:read"]})),
            Some(&admin),
        )
        .await;
    assert_eq!(
        patched.body["permissions"],
        json!(["audit:read", "stats:read"])
    );
    assert_eq!(patched.body["description"], "Reads the audit log");
    let list = app.get_as("/v1/admin/roles", &admin).await;
    assert!(
        list.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "admin")
    );
    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/v1/admin/roles/{id}"),
            None,
            Some(&admin)
        )
        .await
        .status,
        204
    );
    let admin_role: String = sqlx::query_scalar("SELECT id::text FROM roles WHERE name = 'admin'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_problem(
        &app.call(
            Method::DELETE,
            &format!("/v1/admin/roles/{admin_role}"),
            None,
            Some(&admin),
        )
        .await,
        403,
        "forbidden",
    );
    assert_problem(
        &app.call(
            Method::DELETE,
            &format!("/v1/admin/roles/{admin_role}"),
            None,
            Some(&root),
        )
        .await,
        409,
        "conflict",
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn audit_logs_are_filtered_and_paged(pool: PgPool) {
    let app = TestApp::new(pool);
    let (admin_user, admin) = app.user_with("admin", &["audit:read", "users:write"]).await;
    let (alice, _) = app.user_with("alice", &[]).await;
    app.call(
        Method::POST,
        &format!("/v1/admin/users/{}/unlock", alice.id),
        None,
        Some(&admin),
    )
    .await;
    let get = |q: String| {
        let path = format!("/v1/admin/audit-logs?{q}");
        let (app, admin) = (&app, &admin);
        async move { app.get_as(&path, admin).await }
    };
    let by_action = get("action=account_unlocked".into()).await;
    assert_eq!(by_action.status, 200, "{}", by_action.body);
    let items = by_action.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["user_id"], alice.id.to_string());
    assert_eq!(items[0]["performed_by"], admin_user.id.to_string());
    assert!(items[0]["request_id"].is_string());
    let by_user = get(format!("user_id={}", alice.id)).await;
    let actions: Vec<&str> = by_user.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["account_unlocked", "login_succeeded", "user_registered"]
    );
    let by_actor = get(format!("performed_by={}", admin_user.id)).await;
    assert_eq!(by_actor.body["items"].as_array().unwrap().len(), 1);
    let future = get("from=2999-01-01T00:00:00Z".into()).await;
    assert_eq!(future.body["items"].as_array().unwrap().len(), 0);
    let entity = get(format!("entity_type=user&entity_id={}", alice.id)).await;
    assert!(!entity.body["items"].as_array().unwrap().is_empty());
    let page = get("limit=2".into()).await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);
    let rest = get(format!(
        "limit=100&cursor={}",
        page.body["next_cursor"].as_str().unwrap()
    ))
    .await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_logs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        2 + rest.body["items"].as_array().unwrap().len() as i64,
        total
    );
    assert_problem(&get("action=hacked".into()).await, 422, "validation_failed");
    assert_problem(
        &get("user_id=1%27%20OR%201%3D1".into()).await,
        422,
        "validation_failed",
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn stats_report_users_activity_and_database_health(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, admin) = app.user_with("admin", &["stats:read"]).await;
    let (alice, _) = app.user_with("alice", &[]).await;
    app.post(
        "/v1/auth/login",
        json!({"login": "alice", "password": "Wrong-pass-1!"}),
    )
    .await;
    sqlx::query("UPDATE users SET locked_until = now() + interval '1 hour' WHERE id = $1")
        .bind(alice.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let stats = app.get_as("/v1/admin/stats", &admin).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let body = &stats.body;
    assert_eq!(body["users_by_status"]["active"], 2);
    assert_eq!(body["users_by_status"]["suspended"], 0);
    assert_eq!(body["signups_24h"], 2);
    assert_eq!(body["logins_24h"], 2);
    assert_eq!(body["failed_logins_24h"], 1);
    assert_eq!(body["locked_accounts"], 1);
    assert!(body["database"]["connections"].as_i64().unwrap() >= 1);
    let ratio = body["database"]["cache_hit_ratio"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ratio));
    let tables: Vec<&str> = body["database"]["largest_tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        tables.contains(&"users") || tables.contains(&"audit_logs"),
        "{tables:?}"
    );
}
