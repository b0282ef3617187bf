//! The auth group: body rules.

#[allow(unused_imports)]
use super::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn bodies_follow_the_contracts_json_rules(pool: PgPool) {
    use axum::body::Body;
    use axum::http::Request;
    let app = TestApp::new(pool);
    let raw = |content_type: Option<&str>, body: String| {
        let mut builder = Request::builder().method("POST").uri("/v1/auth/login");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(Body::from(body)).unwrap()
    };
    let malformed = app
        .send(raw(Some("application/json"), "{\"login\": ".into()))
        .await;
    assert_problem(&malformed, 400, "malformed_json");
    let no_type = app.send(raw(None, "{}".into())).await;
    assert_problem(&no_type, 415, "unsupported_media_type");
    let text = app.send(raw(Some("text/plain"), "{}".into())).await;
    assert_problem(&text, 415, "unsupported_media_type");
    let big = format!(
        "{{\"login\": \"{}\", \"password\": \"x\"}}",
        "a".repeat(17 * 1024)
    );
    let too_large = app.send(raw(Some("application/json"), big)).await;
    assert_problem(&too_large, 413, "payload_too_large");
    let unknown = app
        .post(
            "/v1/auth/login",
            json!({"login": "a", "password": "b", "pasword": "c"}),
        )
        .await;
    assert_problem(&unknown, 422, "validation_failed");
    assert_eq!(unknown.body["errors"][0]["field"], "pasword");
    let wrong_type = app
        .post("/v1/auth/login", json!({"login": 42, "password": "b"}))
        .await;
    assert_problem(&wrong_type, 422, "validation_failed");
    assert_eq!(wrong_type.body["errors"][0]["field"], "login");
    let get = app.get("/v1/auth/login").await;
    assert_problem(&get, 405, "method_not_allowed");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn no_response_or_audit_row_carries_secrets(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    let refreshed = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": refresh_token(&pair)}),
        )
        .await;
    app.post("/v1/auth/password/forgot", json!({"email": user.email}))
        .await;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let bodies = format!("{} {}", pair, refreshed.body);
    assert!(!bodies.contains(&hash));
    assert!(!bodies.contains(STRONG_PASSWORD));
    assert!(!bodies.contains("password_hash"));
    let trail: String = sqlx::query_scalar("SELECT string_agg(a::text, ' ') FROM audit_logs a")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let reset_token = app.token_from_mail(&user.email, "reset-password").unwrap();
    for secret in [
        STRONG_PASSWORD,
        hash.as_str(),
        &refresh_token(&pair),
        &bearer(&pair),
        &reset_token,
        &user.email,
    ] {
        assert!(!trail.contains(secret), "the audit trail holds a secret");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_body_missing_several_fields_names_each(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app.post("/v1/auth/register", json!({})).await;
    assert_problem(&response, 422, "validation_failed");
    let fields: Vec<&str> = response.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "email", "password"]);
}
