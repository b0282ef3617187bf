//! The auth group: registration.

#[allow(unused_imports)]
use super::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn register_creates_an_active_unverified_user(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app
        .post(
            "/v1/auth/register",
            json!({"username": "Alice", "email": "  Alice@Example.com ", "password": STRONG_PASSWORD,
                   "first_name": "Alice", "gdpr_consent": true}),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.body);
    let id = response.body["id"].as_str().unwrap();
    assert_eq!(
        response.header("location"),
        Some(format!("/v1/users/{id}").as_str())
    );
    assert_eq!(response.body["email"], "alice@example.com");
    assert_eq!(response.body["username"], "Alice");
    assert_eq!(response.body["status"], "active");
    assert_eq!(response.body["is_email_verified"], false);
    assert_eq!(response.body["roles"], json!([]));
    assert!(response.body.get("password_hash").is_none());
    let consent: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT gdpr_consent_at FROM users WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(consent.is_some());
    // The verification mail follows the API's outbox format.
    let mails = app.mails_to("alice@example.com");
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail["subject"].as_str().is_some());
    assert!(
        mail["text"]
            .as_str()
            .unwrap()
            .contains("verify-email?token=")
    );
    // The audit row of the registration carries the request id.
    let request_id: Option<String> = sqlx::query_scalar(
        "SELECT request_id FROM audit_logs WHERE action = 'user_registered' AND entity_id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(request_id.as_deref(), response.header("x-request-id"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn register_names_every_broken_field(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app
        .post(
            "/v1/auth/register",
            json!({"username": "a b", "email": "nope", "password": "short", "first_name": "x".repeat(101)}),
        )
        .await;
    assert_problem(&response, 422, "validation_failed");
    let fields: Vec<&str> = response.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["username", "email", "password", "first_name"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn guessable_passwords_are_refused(pool: PgPool) {
    let app = TestApp::new(pool);
    for password in ["Password1!", "Qwerty123!", "alice1234A!"] {
        let response = app
            .post(
                "/v1/auth/register",
                json!({"username": "alice1234", "email": "alice@example.com", "password": password}),
            )
            .await;
        assert_problem(&response, 422, "validation_failed");
        assert_eq!(
            response.body["errors"][0]["field"], "password",
            "{password}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_composition_rule_matches_the_sql_function(pool: PgPool) {
    let cases = [
        "Abcdef1!",
        "Abcde1!",
        "abcdef1!",
        "ABCDEF1!",
        "Abcdefg!",
        "Abcdefg1",
        "Ab1 defgh",
        "Pässwörd1",
        "日本語Aa1!xx",
        "",
    ];
    let long = format!("Aa1!{}", "x".repeat(125));
    for case in cases.iter().copied().chain([long.as_str()]) {
        let sql: bool = sqlx::query_scalar("SELECT is_strong_password($1)")
            .bind(case)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            shared::domain::password::meets_composition_rule(case),
            sql,
            "{case:?}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn taken_emails_and_usernames_conflict_in_any_case(pool: PgPool) {
    let app = TestApp::new(pool);
    app.register("alice").await;
    let response = app
        .post(
            "/v1/auth/register",
            json!({"username": "alice2", "email": "ALICE@example.com", "password": STRONG_PASSWORD}),
        )
        .await;
    assert_problem(&response, 409, "email_taken");
    let response = app
        .post(
            "/v1/auth/register",
            json!({"username": "ALICE", "email": "other@example.com", "password": STRONG_PASSWORD}),
        )
        .await;
    assert_problem(&response, 409, "username_taken");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn ten_concurrent_registrations_of_one_email_create_one_user(pool: PgPool) {
    let app = TestApp::new(pool);
    let attempts = (0..10).map(|i| {
        let email = if i % 2 == 0 {
            "race@example.com".to_string()
        } else {
            format!("RACE@Example.com{}", "")
        };
        app.post(
            "/v1/auth/register",
            json!({"username": format!("racer{i}"), "email": email, "password": STRONG_PASSWORD}),
        )
    });
    let responses = futures::future::join_all(attempts).await;
    let created = responses.iter().filter(|r| r.status == 201).count();
    let conflicts = responses
        .iter()
        .filter(|r| r.code() == Some("email_taken"))
        .count();
    assert_eq!((created, conflicts), (1, 9));
}
