//! The privilege rule (no one hands out more than they hold) and its
//! invariants (the built-in admin role, the last active `*` holder), as a
//! table of (caller's permissions × target × action → answer).

use axum::http::Method;
use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{TestApp, TestUser, assert_problem};
use uuid::Uuid;

/// Who a row acts on.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The caller itself.
    Caller,
    /// A user holding `*` (not the caller).
    Superuser,
    /// A user holding `users:read` and `users:write`.
    Writer,
    /// A user without roles.
    Plain,
    /// A soft-deleted user that held `*` before its delete.
    DeletedSuperuser,
    /// The built-in `admin` role.
    AdminRole,
}

struct Row {
    caller: &'static [&'static str],
    method: Method,
    /// `{user}` is the target user's id, `{role}` the admin role's.
    path: &'static str,
    body: Option<Value>,
    target: Target,
    /// Is another active `*` holder than the caller and the target present?
    other_superuser: bool,
    status: u16,
    code: Option<&'static str>,
}

fn row(
    caller: &'static [&'static str],
    method: Method,
    path: &'static str,
    body: Option<Value>,
    target: Target,
    status: u16,
    code: Option<&'static str>,
) -> Row {
    Row {
        caller,
        method,
        path,
        body,
        target,
        other_superuser: true,
        status,
        code,
    }
}

const STAR: &[&str] = &["*"];
const ROLES: &[&str] = &["roles:manage"];
const WRITE: &[&str] = &["users:write"];
const DELETE: &[&str] = &["users:delete"];
const MANAGER: &[&str] = &["roles:manage", "users:read"];

fn rows() -> Vec<Row> {
    use Method as M;
    use Target as T;
    let suspend = || Some(json!({"status": "suspended"}));
    let forbidden = Some("forbidden");
    let conflict = Some("conflict");
    vec![
        // A role manager cannot hand out more than it holds...
        row(
            ROLES,
            M::PUT,
            "/v1/admin/users/{user}/roles/admin",
            None,
            T::Caller,
            403,
            forbidden,
        ),
        row(
            ROLES,
            M::POST,
            "/v1/admin/roles",
            Some(json!({"name": "root", "permissions": ["*"]})),
            T::Plain,
            403,
            forbidden,
        ),
        row(
            ROLES,
            M::POST,
            "/v1/admin/roles",
            Some(json!({"name": "readers", "permissions": ["users:read"]})),
            T::Plain,
            403,
            forbidden,
        ),
        row(
            ROLES,
            M::PATCH,
            "/v1/admin/roles/{role}",
            Some(json!({"name": "renamed"})),
            T::AdminRole,
            403,
            forbidden,
        ),
        row(
            ROLES,
            M::PATCH,
            "/v1/admin/roles/{role}",
            Some(json!({"permissions": []})),
            T::AdminRole,
            403,
            forbidden,
        ),
        row(
            ROLES,
            M::DELETE,
            "/v1/admin/roles/{role}",
            None,
            T::AdminRole,
            403,
            forbidden,
        ),
        // ...nor act on a user who holds more (even to give a role it holds).
        row(
            MANAGER,
            M::PUT,
            "/v1/admin/users/{user}/roles/managers",
            None,
            T::Writer,
            403,
            forbidden,
        ),
        row(
            ROLES,
            M::DELETE,
            "/v1/admin/users/{user}/roles/admin",
            None,
            T::Superuser,
            403,
            forbidden,
        ),
        // What it holds, it may hand out.
        row(
            ROLES,
            M::POST,
            "/v1/admin/roles",
            Some(json!({"name": "managers2", "permissions": ["roles:manage"]})),
            T::Plain,
            201,
            None,
        ),
        row(
            MANAGER,
            M::PUT,
            "/v1/admin/users/{user}/roles/managers",
            None,
            T::Plain,
            204,
            None,
        ),
        // users:write cannot touch an admin...
        row(
            WRITE,
            M::PATCH,
            "/v1/admin/users/{user}",
            suspend(),
            T::Superuser,
            403,
            forbidden,
        ),
        row(
            WRITE,
            M::PATCH,
            "/v1/admin/users/{user}",
            Some(json!({"first_name": "Mallory"})),
            T::Superuser,
            403,
            forbidden,
        ),
        row(
            WRITE,
            M::POST,
            "/v1/admin/users/{user}/unlock",
            None,
            T::Superuser,
            403,
            forbidden,
        ),
        row(
            WRITE,
            M::POST,
            "/v1/admin/users/{user}/revoke-sessions",
            None,
            T::Superuser,
            403,
            forbidden,
        ),
        row(
            WRITE,
            M::POST,
            "/v1/admin/users/{user}/password-reset",
            None,
            T::Superuser,
            403,
            forbidden,
        ),
        row(
            WRITE,
            M::PATCH,
            "/v1/admin/users/{user}",
            suspend(),
            T::Writer,
            403,
            forbidden,
        ),
        // ...but may act on those who hold no more than it does.
        row(
            WRITE,
            M::PATCH,
            "/v1/admin/users/{user}",
            suspend(),
            T::Plain,
            200,
            None,
        ),
        row(
            WRITE,
            M::POST,
            "/v1/admin/users/{user}/revoke-sessions",
            None,
            T::Plain,
            204,
            None,
        ),
        // users:delete cannot delete or restore an admin.
        row(
            DELETE,
            M::DELETE,
            "/v1/admin/users/{user}",
            None,
            T::Superuser,
            403,
            forbidden,
        ),
        row(
            DELETE,
            M::POST,
            "/v1/admin/users/{user}/restore",
            None,
            T::DeletedSuperuser,
            403,
            forbidden,
        ),
        row(
            STAR,
            M::POST,
            "/v1/admin/users/{user}/restore",
            None,
            T::DeletedSuperuser,
            200,
            None,
        ),
        // Reading is not ranked.
        row(
            &["users:read"],
            M::GET,
            "/v1/admin/users/{user}",
            None,
            T::Superuser,
            200,
            None,
        ),
        // The built-in admin role keeps its name, its `*` and its existence.
        row(
            STAR,
            M::PATCH,
            "/v1/admin/roles/{role}",
            Some(json!({"name": "renamed"})),
            T::AdminRole,
            409,
            conflict,
        ),
        row(
            STAR,
            M::PATCH,
            "/v1/admin/roles/{role}",
            Some(json!({"permissions": ["users:read"]})),
            T::AdminRole,
            409,
            conflict,
        ),
        row(
            STAR,
            M::DELETE,
            "/v1/admin/roles/{role}",
            None,
            T::AdminRole,
            409,
            conflict,
        ),
        row(
            STAR,
            M::PATCH,
            "/v1/admin/roles/{role}",
            Some(json!({"description": "All of it"})),
            T::AdminRole,
            200,
            None,
        ),
        // The last active `*` holder stays...
        Row {
            other_superuser: false,
            ..row(
                STAR,
                M::DELETE,
                "/v1/admin/users/{user}/roles/admin",
                None,
                T::Caller,
                409,
                conflict,
            )
        },
        Row {
            other_superuser: false,
            ..row(
                STAR,
                M::PATCH,
                "/v1/admin/users/{user}",
                suspend(),
                T::Caller,
                409,
                conflict,
            )
        },
        Row {
            other_superuser: false,
            ..row(
                STAR,
                M::PATCH,
                "/v1/admin/users/{user}",
                Some(json!({"status": "inactive"})),
                T::Caller,
                409,
                conflict,
            )
        },
        Row {
            other_superuser: false,
            ..row(
                STAR,
                M::DELETE,
                "/v1/admin/users/{user}",
                None,
                T::Caller,
                409,
                conflict,
            )
        },
        // ...(a caller without the rank hears 403 first)...
        Row {
            other_superuser: false,
            ..row(
                WRITE,
                M::PATCH,
                "/v1/admin/users/{user}",
                suspend(),
                T::Superuser,
                403,
                forbidden,
            )
        },
        // ...unless another one remains.
        row(
            STAR,
            M::DELETE,
            "/v1/admin/users/{user}/roles/admin",
            None,
            T::Caller,
            204,
            None,
        ),
        row(
            STAR,
            M::PATCH,
            "/v1/admin/users/{user}",
            suspend(),
            T::Superuser,
            200,
            None,
        ),
        row(
            STAR,
            M::DELETE,
            "/v1/admin/users/{user}",
            None,
            T::Superuser,
            204,
            None,
        ),
    ]
}

async fn assign_admin_role(app: &TestApp, user: Uuid) {
    sqlx::query(
        "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = 'admin'",
    )
    .bind(user)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// A user with `permissions` through a role named after them.
async fn holder(app: &TestApp, name: &str, permissions: &[&str]) -> TestUser {
    let user = app.register(name).await;
    if permissions == STAR {
        assign_admin_role(app, user.id).await;
    } else if !permissions.is_empty() {
        app.grant(user.id, permissions).await;
    }
    user
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn no_one_hands_out_more_than_they_hold(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "100000")]);
    let admin_role: Uuid = sqlx::query_scalar("SELECT id FROM roles WHERE name = 'admin'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO roles (name, permissions) VALUES ('managers', '[\"roles:manage\"]')")
        .execute(&app.pool)
        .await
        .unwrap();
    for (n, row) in rows().into_iter().enumerate() {
        // Each row on a fresh cast: no row's change leaks into the next.
        sqlx::query("DELETE FROM user_roles")
            .execute(&app.pool)
            .await
            .unwrap();
        let caller = holder(&app, &format!("caller{n}"), row.caller).await;
        let token = app.login_as(&caller).await.body["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        if row.other_superuser {
            holder(&app, &format!("bystander{n}"), STAR).await;
        }
        let target = match row.target {
            Target::Caller => caller.id,
            Target::Superuser => holder(&app, &format!("root{n}"), STAR).await.id,
            Target::Writer => {
                holder(&app, &format!("writer{n}"), &["users:read", "users:write"])
                    .await
                    .id
            }
            Target::Plain | Target::AdminRole => holder(&app, &format!("plain{n}"), &[]).await.id,
            Target::DeletedSuperuser => {
                let user = holder(&app, &format!("gone{n}"), STAR).await;
                sqlx::query("SELECT soft_delete_user($1)")
                    .bind(user.id)
                    .execute(&app.pool)
                    .await
                    .unwrap();
                user.id
            }
        };
        let path = row
            .path
            .replace("{user}", &target.to_string())
            .replace("{role}", &admin_role.to_string());
        let response = app
            .call(row.method.clone(), &path, row.body.clone(), Some(&token))
            .await;
        let what = format!(
            "row {n}: {:?} {} {path} on {:?}",
            row.caller, row.method, row.target
        );
        match row.code {
            Some(code) => {
                assert_eq!(
                    response.status.as_u16(),
                    row.status,
                    "{what}: {}",
                    response.body
                );
                assert_problem(&response, row.status, code);
                if code == "conflict" {
                    let detail = response.body["detail"].as_str().unwrap_or_default();
                    assert!(
                        detail.contains("admin") || detail.contains('*'),
                        "{what}: {detail}"
                    );
                }
            }
            None => assert_eq!(
                response.status.as_u16(),
                row.status,
                "{what}: {}",
                response.body
            ),
        }
        if matches!(row.target, Target::AdminRole) {
            let (name, permissions): (String, Value) =
                sqlx::query_as("SELECT name, permissions FROM roles WHERE id = $1")
                    .bind(admin_role)
                    .fetch_one(&app.pool)
                    .await
                    .unwrap();
            assert_eq!(
                (name.as_str(), permissions),
                ("admin", json!(["*"])),
                "{what}"
            );
        }
        // Refused changes change nothing: the target keeps its roles and status.
        if row.status >= 400 && !matches!(row.target, Target::AdminRole) {
            let (status, roles): (String, i64) = sqlx::query_as(
                "SELECT status::text, (SELECT count(*) FROM user_roles WHERE user_id = u.id)
                 FROM users u WHERE id = $1",
            )
            .bind(target)
            .fetch_one(&app.pool)
            .await
            .unwrap();
            let expected_status = if matches!(row.target, Target::DeletedSuperuser) {
                "deleted"
            } else {
                "active"
            };
            assert_eq!(status, expected_status, "{what}");
            let expected_roles = if matches!(row.target, Target::Plain) {
                0
            } else {
                1
            };
            assert_eq!(roles, expected_roles, "{what}");
        }
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_last_admin_cannot_delete_their_own_account(pool: PgPool) {
    let app = TestApp::new(pool);
    let root = holder(&app, "root", STAR).await;
    let token = app.login_as(&root).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let delete = |token: String| {
        let app = &app;
        async move {
            app.call(
                Method::DELETE,
                "/v1/users/me",
                Some(json!({"password": tests::STRONG_PASSWORD})),
                Some(&token),
            )
            .await
        }
    };
    assert_problem(&delete(token.clone()).await, 409, "conflict");
    holder(&app, "second", STAR).await;
    assert_eq!(delete(token).await.status, 204);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_admins_removing_each_other_at_once_leave_one(pool: PgPool) {
    let app = TestApp::new(pool);
    let a = holder(&app, "alpha", STAR).await;
    let b = holder(&app, "bravo", STAR).await;
    let token = |u: &TestUser| {
        let app = &app;
        let u = u.clone();
        async move {
            app.login_as(&u).await.body["access_token"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let (ta, tb) = (token(&a).await, token(&b).await);
    let path_a = format!("/v1/admin/users/{}/roles/admin", b.id);
    let path_b = format!("/v1/admin/users/{}/roles/admin", a.id);
    let (ra, rb) = tokio::join!(
        app.call(Method::DELETE, &path_a, None, Some(&ta)),
        app.call(Method::DELETE, &path_b, None, Some(&tb)),
    );
    let mut statuses = [ra.status.as_u16(), rb.status.as_u16()];
    statuses.sort();
    // One wins; the other is either refused as the last-admin removal
    // (409) or finds it no longer holds the rank (403).
    assert_eq!(statuses[0], 204, "{} / {}", ra.body, rb.body);
    assert!(
        matches!(statuses[1], 403 | 409),
        "{} / {}",
        ra.body,
        rb.body
    );
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE r.name = 'admin'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(left, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn restore_brings_back_the_status_before_the_delete(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, admin) = app
        .user_with("admin", &["users:delete", "users:write"])
        .await;
    let (alice, _) = app.user_with("alice", &[]).await;
    let path = format!("/v1/admin/users/{}", alice.id);
    let suspended = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"status": "suspended"})),
            Some(&admin),
        )
        .await;
    assert_eq!(suspended.status, 200, "{}", suspended.body);
    assert_eq!(
        app.call(Method::DELETE, &path, None, Some(&admin))
            .await
            .status,
        204
    );
    let restored = app
        .call(Method::POST, &format!("{path}/restore"), None, Some(&admin))
        .await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(
        restored.body["status"], "suspended",
        "a delete does not lift a suspension"
    );
    assert_problem(&app.login_as(&alice).await, 403, "account_disabled");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_restore_without_a_known_status_is_inactive(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, admin) = app.user_with("admin", &["users:delete"]).await;
    // As a delete before status_before_delete existed left the row.
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO users (username, email, password_hash, status, deleted_at)
         VALUES ('old', 'old@example.com', 'x', 'deleted', now()) RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let restored = app
        .call(
            Method::POST,
            &format!("/v1/admin/users/{id}/restore"),
            None,
            Some(&admin),
        )
        .await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(
        restored.body["status"], "inactive",
        "an admin decides, not the default"
    );
}
