//! Conventions every route shares: health, request ids, problem+json
//! fallbacks, security headers, and the JSON body rules.

use axum::body::Body;
use axum::http::{Method, Request};
use sqlx::PgPool;
use tests::{TestApp, assert_problem};

use shared::db::MIGRATOR;

#[sqlx::test(migrator = "MIGRATOR")]
async fn health_reports_the_database_up(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app.get("/v1/health").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["status"], "ok");
    assert_eq!(response.body["database"], "ok");
    assert_eq!(response.body["cache"], "disabled");
    assert!(response.header("x-request-id").is_some());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn health_reports_redis_when_configured(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("REDIS_URL", "redis://127.0.0.1:6379")]);
    let response = app.get("/v1/health").await;
    assert_eq!(response.body["cache"], "ok", "{}", response.body);
    let app = TestApp::with_config(app.pool.clone(), &[("REDIS_URL", "redis://127.0.0.1:1")]);
    let response = app.get("/v1/health").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["cache"], "unavailable");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_tls_redis_url_is_accepted_and_a_failed_handshake_is_unavailable(pool: PgPool) {
    // Plain Redis on 6379 does not speak TLS: the cache reports unavailable,
    // and nothing panics for want of a crypto provider.
    let app = TestApp::with_config(pool, &[("REDIS_URL", "rediss://127.0.0.1:6379")]);
    let response = app.get("/v1/health").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["cache"], "unavailable");
}

#[tokio::test]
async fn health_is_503_problem_when_the_database_is_down() {
    // Nothing listens on port 1: every connection attempt is refused.
    let config = tests::test_config(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
        ("DB_CONNECT_TIMEOUT_SECONDS", "1"),
    ]);
    let state = shared::AppState::from_config(config).expect("state");
    let router = shared::api::app(state);
    let app = TestApp::from_router(router);
    let started = std::time::Instant::now();
    let response = app.get("/v1/health").await;
    assert_problem(&response, 503, "unavailable");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let detail = response.body["detail"].as_str().unwrap_or_default();
    assert!(
        !detail.contains("127.0.0.1"),
        "internal detail leaked: {detail}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unknown_paths_are_problem_404_and_wrong_methods_405(pool: PgPool) {
    let app = TestApp::new(pool);
    assert_problem(&app.get("/v1/nothing-here").await, 404, "not_found");
    let response = app.call(Method::DELETE, "/v1/health", None, None).await;
    assert_problem(&response, 405, "method_not_allowed");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_response_carries_security_headers(pool: PgPool) {
    let app = TestApp::new(pool);
    for response in [app.get("/v1/health").await, app.get("/nope").await] {
        assert_eq!(response.header("cache-control"), Some("no-store"));
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert!(response.header("strict-transport-security").is_some());
        assert!(response.header("server").is_none());
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn request_ids_are_unique_per_request(pool: PgPool) {
    let app = TestApp::new(pool);
    let a = app.get("/v1/health").await;
    let b = app.get("/v1/health").await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn api_gateway_request_ids_are_used(pool: PgPool) {
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
    use lambda_http::request::RequestContext;
    let app = TestApp::new(pool);
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.request_id = Some("JKJaXmPLvHcESHA=".into());
    let mut request = Request::builder()
        .uri("/v1/nothing")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(RequestContext::ApiGatewayV2(context));
    let response = app.send(request).await;
    assert_eq!(response.header("x-request-id"), Some("JKJaXmPLvHcESHA="));
    assert_problem(&response, 404, "not_found");
}

#[tokio::test]
async fn problem_bodies_never_carry_internal_causes() {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    let response = shared::Error::internal(anyhow::anyhow!("relation \"users\" does not exist"))
        .into_response();
    assert_eq!(response.status(), 500);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("\"code\":\"internal\""), "{text}");
    assert!(!text.contains("relation"), "{text}");
}
