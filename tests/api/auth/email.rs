//! The auth group: e-mail verification.

#[allow(unused_imports)]
use super::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn verification_tokens_work_once(pool: PgPool) {
    let app = TestApp::new(pool);
    let user = app.register("alice").await;
    let token = app.token_from_mail(&user.email, "verify-email").unwrap();
    let response = app
        .post("/v1/auth/email/verify", json!({"token": token}))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["is_email_verified"], true);
    let again = app
        .post("/v1/auth/email/verify", json!({"token": token}))
        .await;
    assert_problem(&again, 400, "invalid_token");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE action = 'email_verified' AND user_id = $1",
    )
    .bind(user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn resend_needs_a_bearer_token_and_sends_a_new_mail(pool: PgPool) {
    let app = TestApp::new(pool);
    let response = app
        .call(Method::POST, "/v1/auth/email/resend", None, None)
        .await;
    assert_problem(&response, 401, "unauthorized");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let (user, pair) = app.signed_in("alice").await;
    assert_eq!(me_status(&app, &bearer(&pair)).await, 202);
    assert_eq!(app.mails_to(&user.email).len(), 2);
}
