//! What the logs hold during a full flow: JSON lines carrying the request
//! id, and never a password, hash, token or reset link.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::Method;
use serde_json::{Value, json};
use shared::config::LogFormat;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{STRONG_PASSWORD, TestApp};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut lines) = self.0.lock() {
            lines.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_full_flow_logs_json_with_request_ids_and_no_secrets(pool: PgPool) {
    let app = TestApp::new(pool);
    // The admin is set up before capturing: its role is granted by direct SQL.
    let (_, admin) = app.user_with("admin", &["*"]).await;
    let capture = Capture::default();
    shared::telemetry::init_with(LogFormat::Json, EnvFilter::new("debug"), capture.clone());

    let user = app.register("alice").await;
    let verify = app.token_from_mail(&user.email, "verify-email").unwrap();
    app.post("/v1/auth/email/verify", json!({"token": verify}))
        .await;
    app.post(
        "/v1/auth/login",
        json!({"login": "alice", "password": "Wrong-pass-1!"}),
    )
    .await;
    let pair = app.login_as(&user).await.body;
    let refreshed = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": pair["refresh_token"]}),
        )
        .await
        .body;
    app.post("/v1/auth/password/forgot", json!({"email": user.email}))
        .await;
    let reset = app.token_from_mail(&user.email, "reset-password").unwrap();
    let new_password = "Another-Strong-Pass-42?";
    app.post(
        "/v1/auth/password/reset",
        json!({"token": reset, "new_password": new_password}),
    )
    .await;
    app.call(
        Method::PATCH,
        &format!("/v1/admin/users/{}", user.id),
        Some(json!({"status": "suspended"})),
        Some(&admin),
    )
    .await;
    app.call(
        Method::POST,
        &format!("/v1/admin/users/{}/password-reset", user.id),
        None,
        Some(&admin),
    )
    .await;
    let bytes = capture.0.lock().unwrap().clone();
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let log = String::from_utf8(bytes).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() > 20,
        "the flow should have logged ({} lines)",
        lines.len()
    );
    let secrets = [
        STRONG_PASSWORD,
        new_password,
        "Wrong-pass-1!",
        hash.as_str(),
        pair["access_token"].as_str().unwrap(),
        pair["refresh_token"].as_str().unwrap(),
        refreshed["refresh_token"].as_str().unwrap(),
        admin.as_str(),
        verify.as_str(),
        reset.as_str(),
        "token=",
        "$argon2id$",
    ];
    for line in &lines {
        for secret in secrets {
            assert!(!line.contains(secret), "a log line leaks a secret: {line}");
        }
        let parsed: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        let request_id = parsed["span"]["request_id"].as_str();
        assert!(
            request_id.is_some_and(|id| !id.is_empty()),
            "no request id: {line}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn refusals_are_logged_with_subject_route_and_request_id(pool: PgPool) {
    let app = TestApp::new(pool);
    let (alice, token) = app.user_with("alice", &[]).await;
    let capture = Capture::default();
    shared::telemetry::init_with(LogFormat::Json, EnvFilter::new("info"), capture.clone());

    let forbidden = app.get_as("/v1/admin/users", &token).await;
    assert_eq!(forbidden.status, 403);
    let unauthorized = app.get_as("/v1/users/me", "not-a-token").await;
    assert_eq!(unauthorized.status, 401);

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let refusals: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "access refused")
        .collect();
    assert_eq!(refusals.len(), 2, "{log}");
    let [first, second] = [&refusals[0], &refusals[1]];
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["status"], 403);
    assert_eq!(first["subject"], alice.id.to_string());
    assert_eq!(first["route"], "GET /v1/admin/users");
    assert_eq!(
        first["request_id"].as_str(),
        forbidden.header("x-request-id")
    );
    assert_eq!(second["status"], 401);
    assert!(second["subject"].is_null(), "unknown: {second}");
    assert_eq!(second["route"], "GET /v1/users/me");
    assert!(!log.contains(&token), "the token is never logged");
}
