//! Browser clients: CORS for the origins in CORS_ALLOWED_ORIGINS only, and
//! cookie mode (`X-Token-Transport: cookie`): the refresh token in an
//! HttpOnly `__Host-refresh` cookie that counts only with the header.

use axum::body::Body;
use axum::http::{Method, Request, header};
use serde_json::{Value, json};
use sqlx::PgPool;
use tests::{TestApp, TestResponse, assert_problem};

use shared::db::MIGRATOR;

const APP: &str = "https://app.example.com";

fn cors_app(pool: PgPool) -> TestApp {
    TestApp::with_config(pool, &[("CORS_ALLOWED_ORIGINS", APP)])
}

async fn preflight(app: &TestApp, origin: &str, path: &str) -> TestResponse {
    let request = Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "content-type,x-token-transport",
        )
        .body(Body::empty())
        .unwrap();
    app.send(request).await
}

async fn health_from(app: &TestApp, origin: &str) -> TestResponse {
    let request = Request::builder()
        .uri("/v1/health")
        .header(header::ORIGIN, origin)
        .body(Body::empty())
        .unwrap();
    app.send(request).await
}

fn cors_headers(response: &TestResponse) -> Vec<String> {
    response
        .headers
        .keys()
        .map(|name| name.as_str().to_string())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_allowed_origin_gets_a_preflight_with_only_the_routes_methods_and_headers(pool: PgPool) {
    let app = cors_app(pool);
    let response = preflight(&app, APP, "/v1/auth/login").await;
    assert!(response.status.is_success(), "{}", response.status);
    assert_eq!(response.header("access-control-allow-origin"), Some(APP));
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(response.header("access-control-max-age"), Some("600"));
    let methods: Vec<&str> = response
        .header("access-control-allow-methods")
        .unwrap()
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(methods, ["GET", "POST", "PUT", "PATCH", "DELETE"]);
    let headers = response.header("access-control-allow-headers").unwrap();
    assert_eq!(headers, "authorization,content-type,x-token-transport");
    // A preflight is still one of ours: request id and security headers.
    assert!(response.header("x-request-id").is_some());

    // The real request: the page may read the answer and its request id.
    let response = health_from(&app, APP).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("access-control-allow-origin"), Some(APP));
    assert!(
        response
            .header("access-control-expose-headers")
            .is_some_and(|h| h.contains("x-request-id"))
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn another_origin_gets_no_cors_header_at_all(pool: PgPool) {
    let app = cors_app(pool);
    for origin in [
        "https://evil.example.com",
        "http://app.example.com",
        "https://app.example.com.evil.net",
        "null",
    ] {
        let response = preflight(&app, origin, "/v1/auth/login").await;
        assert!(cors_headers(&response).is_empty(), "{origin}: {response:?}");
        // The router's own answer to OPTIONS, which says nothing.
        assert_problem(&response, 405, "method_not_allowed");

        let response = health_from(&app, origin).await;
        assert_eq!(response.status, 200);
        assert!(cors_headers(&response).is_empty(), "{origin}");
    }
    // Without CORS_ALLOWED_ORIGINS (the default) no origin is allowed.
    let plain = TestApp::new(app.pool.clone());
    let response = preflight(&plain, APP, "/v1/auth/login").await;
    assert!(cors_headers(&response).is_empty());
}

#[test]
fn the_cors_methods_are_the_methods_the_routes_use() {
    let doc: Value = serde_json::from_str(&shared::api::openapi::json()).unwrap();
    let mut used: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().keys().cloned())
        .map(|m| m.to_uppercase())
        .collect();
    used.sort();
    used.dedup();
    let mut allowed: Vec<String> = shared::http::cors::METHODS
        .iter()
        .map(|m| m.to_string())
        .collect();
    allowed.sort();
    assert_eq!(allowed, used);
}

/// A POST with a JSON body and extra headers.
async fn post_with(
    app: &TestApp,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.send(request.body(Body::from(body.to_string())).unwrap())
        .await
}

const COOKIE_MODE: (&str, &str) = ("x-token-transport", "cookie");

/// The `__Host-refresh` value a response set, and the whole Set-Cookie line.
fn set_cookie(response: &TestResponse) -> (String, String) {
    let line = response
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie: {response:?}"))
        .to_string();
    let value = line
        .strip_prefix("__Host-refresh=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    (value, line)
}

async fn cookie_login(app: &TestApp, username: &str) -> (TestResponse, String) {
    let user = app.register(username).await;
    let response = post_with(
        app,
        "/v1/auth/login",
        json!({"login": user.username, "password": user.password}),
        &[COOKIE_MODE],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let (cookie, _) = set_cookie(&response);
    (response, cookie)
}

async fn refresh_with_cookie(
    app: &TestApp,
    cookie: &str,
    headers: &[(&str, &str)],
) -> TestResponse {
    let cookie = format!("__Host-refresh={cookie}");
    let mut all = vec![("cookie", cookie.as_str())];
    all.extend_from_slice(headers);
    post_with(app, "/v1/auth/refresh", json!({}), &all).await
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cookie_mode_puts_the_refresh_token_in_a_host_only_http_only_strict_cookie(pool: PgPool) {
    let app = TestApp::new(pool);
    let (response, cookie) = cookie_login(&app, "cookie_ada").await;
    assert!(
        response.body.get("refresh_token").is_none(),
        "{}",
        response.body
    );
    assert!(response.body["access_token"].as_str().is_some());
    let (_, line) = set_cookie(&response);
    let attributes: Vec<&str> = line.split("; ").skip(1).collect();
    for expected in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(attributes.contains(&expected), "{expected} in {line}");
    }
    let max_age = format!("Max-Age={}", response.body["refresh_expires_in"]);
    assert!(attributes.contains(&max_age.as_str()), "{line}");
    assert!(!line.contains("Domain="), "__Host- cookies name no domain");
    // The cookie holds the session's live refresh token.
    let rotated = refresh_with_cookie(&app, &cookie, &[COOKIE_MODE]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    // Body mode is untouched: the token in the body, no cookie.
    let (_, pair) = app.signed_in("body_ada").await;
    assert!(pair["refresh_token"].as_str().is_some());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn refresh_and_logout_read_the_cookie_and_reuse_still_kills_the_session(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]);
    let (_, first) = cookie_login(&app, "cookie_bob").await;

    let rotated = refresh_with_cookie(&app, &first, &[COOKIE_MODE]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert!(rotated.body.get("refresh_token").is_none());
    let (second, _) = set_cookie(&rotated);
    assert_ne!(second, first);

    // The first cookie again (no grace window here): reuse, the whole
    // session dies, and the answer deletes the cookie.
    let replay = refresh_with_cookie(&app, &first, &[COOKIE_MODE]).await;
    assert_problem(&replay, 401, "refresh_token_reused");
    let cleared = replay.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("__Host-refresh=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let after = refresh_with_cookie(&app, &second, &[COOKIE_MODE]).await;
    assert_problem(&after, 401, "refresh_token_invalid");

    // Logout ends the session the cookie names and deletes the cookie.
    let (_, cookie) = cookie_login(&app, "cookie_cy").await;
    let out = post_with(
        &app,
        "/v1/auth/logout",
        json!({}),
        &[("cookie", &format!("__Host-refresh={cookie}")), COOKIE_MODE],
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let dead = refresh_with_cookie(&app, &cookie, &[COOKIE_MODE]).await;
    assert_problem(&dead, 401, "refresh_token_invalid");
    // No cookie at all: nothing to refresh, nothing to end.
    let none = post_with(&app, "/v1/auth/refresh", json!({}), &[COOKIE_MODE]).await;
    assert_problem(&none, 401, "refresh_token_invalid");
    let none = post_with(&app, "/v1/auth/logout", json!({}), &[COOKIE_MODE]).await;
    assert_eq!(none.status, 204);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_refresh_that_lost_a_race_keeps_the_winners_cookie(pool: PgPool) {
    // Two tabs refresh with the same cookie at once. The loser's 401 can
    // arrive after the winner's new cookie: it must not delete it.
    let app = TestApp::new(pool);
    let (_, first) = cookie_login(&app, "cookie_race").await;
    let winner = refresh_with_cookie(&app, &first, &[COOKIE_MODE]).await;
    assert_eq!(winner.status, 200, "{}", winner.body);
    let (second, _) = set_cookie(&winner);
    let loser = refresh_with_cookie(&app, &first, &[COOKIE_MODE]).await;
    assert_problem(&loser, 401, "refresh_token_invalid");
    assert!(loser.header("set-cookie").is_none(), "{loser:?}");
    let next = refresh_with_cookie(&app, &second, &[COOKIE_MODE]).await;
    assert_eq!(next.status, 200, "{}", next.body);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_planted_second_cookie_voids_both(pool: PgPool) {
    // Fixation: a same-site page plants its own `refresh` with a longer
    // path, which the browser sends first. Neither token is used.
    let app = TestApp::new(pool);
    let (_, victims) = cookie_login(&app, "cookie_fix").await;
    let (_, attackers) = cookie_login(&app, "cookie_mallory").await;
    let both = format!("__Host-refresh={attackers}; __Host-refresh={victims}");
    let refused = post_with(
        &app,
        "/v1/auth/refresh",
        json!({}),
        &[("cookie", &both), COOKIE_MODE],
    )
    .await;
    assert_problem(&refused, 401, "refresh_token_invalid");
    let logout = post_with(
        &app,
        "/v1/auth/logout",
        json!({}),
        &[("cookie", &both), COOKIE_MODE],
    )
    .await;
    assert_eq!(logout.status, 204);
    // Nothing was rotated or ended: each cookie alone still works.
    for cookie in [&victims, &attackers] {
        let alone = refresh_with_cookie(&app, cookie, &[COOKIE_MODE]).await;
        assert_eq!(alone.status, 200, "{}", alone.body);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_cookie_without_the_header_counts_for_nothing(pool: PgPool) {
    // CSRF: a cross-site form or a request that skipped the preflight
    // brings the cookie but cannot bring the header.
    let app = TestApp::new(pool);
    let (_, cookie) = cookie_login(&app, "cookie_dee").await;
    let forged = refresh_with_cookie(&app, &cookie, &[]).await;
    assert_problem(&forged, 401, "refresh_token_invalid");
    assert!(forged.header("set-cookie").is_none());
    let forged_logout = post_with(
        &app,
        "/v1/auth/logout",
        json!({}),
        &[("cookie", &format!("__Host-refresh={cookie}"))],
    )
    .await;
    assert_eq!(forged_logout.status, 204);
    assert!(forged_logout.header("set-cookie").is_none());
    // Neither touched the session: the cookie still refreshes.
    let honest = refresh_with_cookie(&app, &cookie, &[COOKIE_MODE]).await;
    assert_eq!(honest.status, 200, "{}", honest.body);

    // A body token is the token in either mode; with the header, the new
    // one goes into the cookie. The header takes two values only.
    let (_, pair) = app.signed_in("body_dee").await;
    let switched = post_with(
        &app,
        "/v1/auth/refresh",
        json!({"refresh_token": pair["refresh_token"]}),
        &[COOKIE_MODE],
    )
    .await;
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert!(switched.body.get("refresh_token").is_none());
    set_cookie(&switched);
    let odd = post_with(
        &app,
        "/v1/auth/refresh",
        json!({"refresh_token": pair["refresh_token"]}),
        &[("x-token-transport", "header")],
    )
    .await;
    assert_problem(&odd, 422, "validation_failed");
    assert_eq!(odd.body["errors"][0]["field"], "X-Token-Transport");
}
