//! Phone verification: a code by SMS (the outbox here, Amazon SNS through
//! moto in `aws.rs`), 10 minutes, 5 tries, capped per number and per user,
//! bound to the number, and cleared by a change of number.

use axum::http::Method;
use serde_json::json;
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{TestApp, assert_problem};

/// The codes texted to `number`, oldest first.
fn codes_to(app: &TestApp, number: &str) -> Vec<String> {
    app.texts_to(number)
        .iter()
        .filter_map(|sms| {
            let text = sms["text"].as_str()?;
            let start = text.find("code is ")? + "code is ".len();
            Some(text[start..start + 6].to_string())
        })
        .collect()
}

async fn with_number(app: &TestApp, name: &str, number: &str) -> String {
    let (_, pair) = app.signed_in(name).await;
    let token = pair["access_token"].as_str().unwrap().to_string();
    let patched = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(json!({"phone_number": number})),
            Some(&token),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    token
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_code_by_sms_verifies_the_number_and_a_new_number_clears_it(pool: PgPool) {
    let app = TestApp::new(pool);
    let token = with_number(&app, "ada", "+447911123456").await;
    let send = || {
        app.call(
            Method::POST,
            "/v1/users/me/phone/verify",
            None,
            Some(&token),
        )
    };
    let confirm = |code: &str| {
        app.call(
            Method::POST,
            "/v1/users/me/phone/confirm",
            Some(json!({"code": code})),
            Some(&token),
        )
    };
    let sent = send().await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(sent.body["expires_in"], 600);
    let code = codes_to(&app, "+447911123456")
        .pop()
        .expect("an SMS in the outbox");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_problem(&confirm(wrong).await, 422, "validation_failed");
    let verified = confirm(&code).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.body["is_phone_verified"], true);
    // Used: the code works once.
    assert_problem(&confirm(&code).await, 400, "invalid_token");
    assert_problem(&send().await, 409, "conflict");

    // A new number is not verified.
    let patched = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(json!({"phone_number": "+447911000000"})),
            Some(&token),
        )
        .await;
    assert_eq!(patched.body["is_phone_verified"], false, "{}", patched.body);
    // Nor can a code sent to the old number verify the new one.
    assert_eq!(send().await.status, 202);
    let code = codes_to(&app, "+447911000000").pop().unwrap();
    app.call(
        Method::PATCH,
        "/v1/users/me",
        Some(json!({"phone_number": "+15550001111"})),
        Some(&token),
    )
    .await;
    assert_problem(&confirm(&code).await, 400, "invalid_token");
    let me = app.get_as("/v1/users/me", &token).await;
    assert_eq!(me.body["is_phone_verified"], false);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn five_wrong_tries_kill_a_code_and_sends_are_capped(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("PHONE_CODES_PER_HOUR", "2")]);
    let token = with_number(&app, "ada", "+447911123456").await;
    let send = || {
        app.call(
            Method::POST,
            "/v1/users/me/phone/verify",
            None,
            Some(&token),
        )
    };
    assert_eq!(send().await.status, 202);
    let code = codes_to(&app, "+447911123456").pop().unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let response = app
            .call(
                Method::POST,
                "/v1/users/me/phone/confirm",
                Some(json!({"code": wrong})),
                Some(&token),
            )
            .await;
        assert_problem(&response, 422, "validation_failed");
    }
    // Dead after five wrong tries, even with the right code.
    let dead = app
        .call(
            Method::POST,
            "/v1/users/me/phone/confirm",
            Some(json!({"code": code})),
            Some(&token),
        )
        .await;
    assert_problem(&dead, 400, "invalid_token");
    // Two codes an hour per number: the third is refused with Retry-After.
    assert_eq!(send().await.status, 202);
    let capped = send().await;
    assert_problem(&capped, 429, "rate_limited");
    let retry: u64 = capped.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    // The cap is per number too: another user with the same number is
    // refused as well.
    let other = with_number(&app, "bob", "+447911123456").await;
    let refused = app
        .call(
            Method::POST,
            "/v1/users/me/phone/verify",
            None,
            Some(&other),
        )
        .await;
    assert_problem(&refused, 429, "rate_limited");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn without_a_number_there_is_nothing_to_verify(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, pair) = app.signed_in("ada").await;
    let token = pair["access_token"].as_str().unwrap();
    let response = app
        .call(Method::POST, "/v1/users/me/phone/verify", None, Some(token))
        .await;
    assert_problem(&response, 409, "conflict");
    let response = app
        .call(
            Method::POST,
            "/v1/users/me/phone/confirm",
            Some(json!({"code": "123456"})),
            Some(token),
        )
        .await;
    assert_problem(&response, 400, "invalid_token");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn codes_go_only_to_full_numbers_nobody_else_verified(pool: PgPool) {
    let app = TestApp::new(pool);
    let send = |token: String| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/users/me/phone/verify",
                None,
                Some(&token),
            )
            .await
        }
    };
    // Without + and the country code: no code.
    let bare = with_number(&app, "bare", "447911123456").await;
    assert_problem(&send(bare).await, 422, "validation_failed");
    // Ada verifies her number; Bob may not have codes sent to it.
    let ada = with_number(&app, "ada", "+447911123456").await;
    assert_eq!(send(ada.clone()).await.status, 202);
    let code = codes_to(&app, "+447911123456").pop().unwrap();
    let verified = app
        .call(
            Method::POST,
            "/v1/users/me/phone/confirm",
            Some(json!({"code": code})),
            Some(&ada),
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    let bob = with_number(&app, "bob", "+447911123456").await;
    assert_problem(&send(bob).await, 409, "conflict");
    // The audit trail keeps the last two digits only.
    let logged: Vec<String> = sqlx::query_scalar(
        "SELECT new_values->>'phone_number' FROM audit_logs
         WHERE action IN ('phone_verification_sent', 'phone_verified') ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(logged, ["…56", "…56"]);
    let texts = app.texts_to("+447911123456");
    let text = texts[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("User Management: ") && text.contains("Do not share"),
        "{text}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_sms_that_cannot_be_sent_is_a_503_that_counts_nothing(pool: PgPool) {
    // The outbox "folder" is a file: every send fails.
    let file = std::env::temp_dir().join(format!("um-sms-file-{}", uuid::Uuid::new_v4()));
    std::fs::write(&file, b"not a folder").unwrap();
    let app = TestApp::with_config(pool, &[("SMS_OUTBOX_DIR", file.to_str().unwrap())]);
    let token = with_number(&app, "ada", "+447911123456").await;
    for _ in 0..4 {
        let failed = app
            .call(
                Method::POST,
                "/v1/users/me/phone/verify",
                None,
                Some(&token),
            )
            .await;
        assert_problem(&failed, 503, "unavailable");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM phone_verifications")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "failed sends count toward no cap");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_newer_code_replaces_the_older_only_once_sent(pool: PgPool) {
    let app = TestApp::new(pool);
    let token = with_number(&app, "ada", "+447911123456").await;
    let send = || {
        app.call(
            Method::POST,
            "/v1/users/me/phone/verify",
            None,
            Some(&token),
        )
    };
    assert_eq!(send().await.status, 202);
    let first = codes_to(&app, "+447911123456").pop().unwrap();
    assert_eq!(send().await.status, 202);
    let second = codes_to(&app, "+447911123456").pop().unwrap();
    let confirm = |code: String| {
        app.call(
            Method::POST,
            "/v1/users/me/phone/confirm",
            Some(json!({"code": code})),
            Some(&token),
        )
    };
    if first != second {
        // The first code died when the second was sent.
        assert_problem(&confirm(first).await, 422, "validation_failed");
    }
    assert_eq!(confirm(second).await.status, 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn one_account_verifies_a_number_even_when_two_hold_codes(pool: PgPool) {
    let app = TestApp::new(pool);
    let ada = with_number(&app, "ada", "+447911123456").await;
    let bob = with_number(&app, "bob", "+447911123456").await;
    let mut codes = Vec::new();
    for token in [&ada, &bob] {
        let sent = app
            .call(Method::POST, "/v1/users/me/phone/verify", None, Some(token))
            .await;
        assert_eq!(sent.status, 202, "{}", sent.body);
        codes.push(codes_to(&app, "+447911123456").pop().unwrap());
    }
    let confirm = |token: String, code: String| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/users/me/phone/confirm",
                Some(json!({"code": code})),
                Some(&token),
            )
            .await
        }
    };
    assert_eq!(confirm(ada, codes[0].clone()).await.status, 200);
    assert_problem(&confirm(bob, codes[1].clone()).await, 409, "conflict");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_send_that_finishes_late_does_not_kill_a_newer_code(pool: PgPool) {
    // Two sends of one user overlap: the older one's supersede runs last.
    let app = TestApp::new(pool);
    let (user, _) = app.signed_in("ada").await;
    let (older, newer) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let db = &app.pool;
    shared::db::phone::insert(db, older, user.id, "+447911123456", "h1", 10)
        .await
        .unwrap();
    shared::db::phone::insert(db, newer, user.id, "+447911123456", "h2", 10)
        .await
        .unwrap();
    shared::db::phone::supersede(db, user.id, newer)
        .await
        .unwrap();
    shared::db::phone::supersede(db, user.id, older)
        .await
        .unwrap();
    let live = shared::db::phone::live_for_update(db, user.id)
        .await
        .unwrap()
        .expect("a live code");
    assert_eq!(live.id, newer);
}
