//! Hostile input: injection strings, oversized, confusable, NUL-containing
//! and wrongly typed values in every body field and query parameter get a
//! 4xx (never a 5xx), and existing rows stay as they were.

use axum::http::Method;
use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{STRONG_PASSWORD, TestApp};

fn payloads() -> Vec<Value> {
    vec![
        json!("' OR '1'='1"),
        json!("'; DROP TABLE users; --"),
        json!("admin'--"),
        json!("1; SELECT pg_sleep(10)"),
        json!("\u{0430}dmin@ex\u{0430}mple.com"),
        json!("a\u{0000}b"),
        json!("x".repeat(5_000)),
        json!("🦀".repeat(300)),
        json!(12345),
        json!(-1),
        json!(1.5e308),
        json!(true),
        json!(null),
        json!(["a", "b"]),
        json!({"$ne": null}),
        // Unicode case mapping and normalisation: 'İ' lower-cases to two
        // characters (255 of them to 510), 'ß' upper-cases to "SS",
        // combining marks, full-width and compatibility forms, bidi
        // overrides and zero-width characters.
        json!("\u{130}".repeat(255)),
        json!("\u{130}lice"),
        json!("\u{df}".repeat(128)),
        json!("stra\u{df}e@example.com"),
        json!("e\u{301}".repeat(100)),
        json!("a\u{300}\u{301}\u{302}\u{303}".repeat(60)),
        json!("\u{ff21}\u{ff24}\u{ff2d}\u{ff29}\u{ff2e}"),
        json!("\u{fb03}\u{fb00}"),
        json!("\u{131}"),
        json!("admin\u{202e}nimda"),
        json!("ad\u{200d}min\u{feff}"),
        json!("\u{1d400}\u{1d401}@example.com"),
    ]
}

async fn fingerprint(pool: &PgPool) -> String {
    sqlx::query_scalar(
        // Bookkeeping may move (wrong current passwords count toward the
        // lockout); nothing the caller owns may.
        "SELECT md5(string_agg((to_jsonb(u) - 'failed_login_attempts' - 'locked_until' - 'updated_at')::text, ',' ORDER BY id))
         FROM users u WHERE username IN ('alice', 'admin')",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn hostile_bodies_and_queries_get_4xx_and_change_nothing(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("RATE_LIMIT_PER_MINUTE", "100000")]);
    let (alice, alice_token) = app.user_with("alice", &[]).await;
    let (_, admin) = app.user_with("admin", &["*"]).await;
    let before = fingerprint(&app.pool).await;

    let alice_path = format!("/v1/admin/users/{}", alice.id);
    let bodies: Vec<(Method, &str, Option<&str>, Value)> = vec![
        (
            Method::POST,
            "/v1/auth/register",
            None,
            json!({"username": "eve", "email": "eve@example.com", "password": STRONG_PASSWORD}),
        ),
        (
            Method::POST,
            "/v1/auth/login",
            None,
            json!({"login": "nobody", "password": "Wrong-pass-1!"}),
        ),
        (
            Method::POST,
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": "x"}),
        ),
        (
            Method::POST,
            "/v1/auth/logout",
            None,
            json!({"refresh_token": "x"}),
        ),
        (
            Method::POST,
            "/v1/auth/password/forgot",
            None,
            json!({"email": "nobody@example.com"}),
        ),
        (
            Method::POST,
            "/v1/auth/password/reset",
            None,
            json!({"token": "x", "new_password": STRONG_PASSWORD}),
        ),
        (
            Method::POST,
            "/v1/auth/email/verify",
            None,
            json!({"token": "x"}),
        ),
        (
            Method::POST,
            "/v1/users/me/password",
            Some(&alice_token),
            json!({"current_password": "Wrong-pass-1!", "new_password": STRONG_PASSWORD}),
        ),
        (
            Method::POST,
            "/v1/users/me/email",
            Some(&alice_token),
            json!({"new_email": "new@example.com", "password": "Wrong-pass-1!"}),
        ),
        (
            Method::DELETE,
            "/v1/users/me",
            Some(&alice_token),
            json!({"password": "Wrong-pass-1!"}),
        ),
        (
            Method::POST,
            "/v1/admin/roles",
            Some(&admin),
            json!({"name": "r", "description": "d", "permissions": []}),
        ),
        (
            Method::POST,
            "/v1/auth/register",
            None,
            json!({"username": "eve2", "email": "eve2@example.com", "password": STRONG_PASSWORD,
                   "first_name": "Eve", "last_name": "Doe", "gdpr_consent": true}),
        ),
        (
            Method::POST,
            "/v1/auth/login",
            None,
            json!({"login": "nobody", "password": "Wrong-pass-1!", "device_fingerprint": "f"}),
        ),
    ];
    let mut tried = 0;
    for (method, path, token, template) in &bodies {
        for field in template.as_object().unwrap().keys() {
            for payload in payloads() {
                let mut body = template.clone();
                body[field] = payload.clone();
                let response = app.call(method.clone(), path, Some(body), *token).await;
                tried += 1;
                let status = response.status.as_u16();
                assert!(
                    status < 500,
                    "{method} {path} {field}={payload}: {status} {}",
                    response.body
                );
                if status >= 400 {
                    assert!(
                        response.code().is_some(),
                        "{method} {path}: no problem code"
                    );
                }
            }
        }
    }
    let queries = [
        "/v1/users?q=",
        "/v1/users?status=",
        "/v1/users?limit=",
        "/v1/users?cursor=",
        "/v1/admin/users?email=",
        "/v1/admin/users?created_from=",
        "/v1/admin/users?sort=",
        "/v1/admin/users?include_deleted=",
        "/v1/admin/audit-logs?user_id=",
        "/v1/admin/audit-logs?action=",
        "/v1/admin/audit-logs?entity_type=",
        "/v1/admin/audit-logs?from=",
        "/v1/admin/roles?cursor=",
    ];
    let raw = [
        "%27%20OR%20%271%27%3D%271",
        "%27%3B%20DROP%20TABLE%20users%3B%20--",
        "a%00b",
        "%D0%B0dmin",
        "-1",
        "999999999999999999999",
        "%F0%9F%A6%80",
        "",
    ];
    for query in queries {
        for value in raw {
            let response = app.get_as(&format!("{query}{value}"), &admin).await;
            tried += 1;
            assert!(
                response.status.as_u16() < 500,
                "{query}{value}: {}",
                response.body
            );
        }
    }
    // Ids in paths that are not UUIDs.
    for path in [
        "/v1/users/1%20OR%201=1",
        "/v1/admin/users/'%3B--",
        "/v1/admin/roles/%00",
    ] {
        let response = app.get_as(path, &admin).await;
        tried += 1;
        assert!(response.status.as_u16() < 500, "{path}: {}", response.body);
    }

    // A NUL in a path parameter names nothing (PostgreSQL text cannot hold it).
    for method in [Method::PUT, Method::DELETE] {
        let path = format!("/v1/admin/users/{}/roles/a%00b", alice.id);
        let response = app.call(method.clone(), &path, None, Some(&admin)).await;
        tried += 1;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.body);
        assert_eq!(response.code(), Some("not_found"));
    }
    assert_eq!(
        fingerprint(&app.pool).await,
        before,
        "an existing row changed"
    );
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(tables >= 2);
    // Profile fields, set by an admin and by the user: stored as text or
    // refused (the row may change here, legitimately).
    let setters = [
        (alice_path.as_str(), &admin),
        ("/v1/users/me", &alice_token),
    ];
    for field in [
        "first_name",
        "last_name",
        "phone_number",
        "date_of_birth",
        "profile_picture_url",
        "bio",
    ] {
        for (payload, (path, token)) in payloads()
            .into_iter()
            .flat_map(|p| setters.map(|s| (p.clone(), s)))
        {
            let response = app
                .call(
                    Method::PATCH,
                    path,
                    Some(json!({ field: payload.clone() })),
                    Some(token),
                )
                .await;
            tried += 1;
            assert!(
                response.status.as_u16() < 500,
                "{field}={payload}: {}",
                response.body
            );
        }
    }
    println!("hostile inputs tried: {tried}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn another_users_objects_are_404_and_unchanged(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, alice) = app.user_with("alice", &[]).await;
    let (bob, bob_token) = app.user_with("bob", &[]).await;
    let bob_sid = app.state.keys.verify(&bob_token).unwrap().sid;
    let before = fingerprint(&app.pool).await;
    let attempts = [
        (Method::GET, format!("/v1/users/{}", bob.id), 404),
        (
            Method::DELETE,
            format!("/v1/users/me/sessions/{bob_sid}"),
            404,
        ),
        (Method::PATCH, format!("/v1/admin/users/{}", bob.id), 403),
        (Method::DELETE, format!("/v1/admin/users/{}", bob.id), 403),
        (
            Method::POST,
            format!("/v1/admin/users/{}/revoke-sessions", bob.id),
            403,
        ),
        (
            Method::PUT,
            format!("/v1/admin/users/{}/roles/admin", bob.id),
            403,
        ),
    ];
    for (method, path, expected) in attempts {
        let body = (method == Method::PATCH).then(|| json!({"status": "suspended"}));
        let response = app.call(method.clone(), &path, body, Some(&alice)).await;
        assert_eq!(response.status.as_u16(), expected, "{method} {path}");
    }
    assert_eq!(
        app.get_as("/v1/users/me", &bob_token).await.status,
        200,
        "bob's session survived"
    );
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM user_roles WHERE user_id = $1")
        .bind(bob.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(roles, 0);
    let _ = before;
}
