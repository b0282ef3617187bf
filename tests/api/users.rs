//! The users group: the caller's own account and the users:read routes.

use axum::http::Method;
use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{STRONG_PASSWORD, TestApp, assert_problem};

fn access(pair: &Value) -> String {
    pair["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn me_reads_and_patches_the_profile(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    let token = access(&pair);
    let me = app.get_as("/v1/users/me", &token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], user.id.to_string());
    assert!(me.body.get("password_hash").is_none());

    let patch = json!({"first_name": "Alice", "last_name": "Liddell", "phone_number": "+447911123456",
                       "date_of_birth": "1990-05-01", "profile_picture_url": "https://cdn.example.com/a.png",
                       "bio": "Down the rabbit hole"});
    let patched = app
        .call(Method::PATCH, "/v1/users/me", Some(patch), Some(&token))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["first_name"], "Alice");
    assert_eq!(patched.body["date_of_birth"], "1990-05-01");
    // null clears one field, the others stay.
    let cleared = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(json!({"bio": null})),
            Some(&token),
        )
        .await;
    assert_eq!(cleared.body["bio"], Value::Null);
    assert_eq!(cleared.body["first_name"], "Alice");

    let broken = json!({"first_name": "x".repeat(101), "phone_number": "0123", "date_of_birth": "2999-01-01",
                        "profile_picture_url": "http://insecure.example.com", "bio": "y".repeat(501)});
    let response = app
        .call(Method::PATCH, "/v1/users/me", Some(broken), Some(&token))
        .await;
    assert_problem(&response, 422, "validation_failed");
    let fields: Vec<&str> = response.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "first_name",
            "phone_number",
            "date_of_birth",
            "profile_picture_url",
            "bio"
        ]
    );
    let bad_date = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(json!({"date_of_birth": "01/05/1990"})),
            Some(&token),
        )
        .await;
    assert_problem(&bad_date, 422, "validation_failed");
    assert_eq!(bad_date.body["errors"][0]["field"], "date_of_birth");
    let unknown = app
        .call(
            Method::PATCH,
            "/v1/users/me",
            Some(json!({"email": "x@example.com"})),
            Some(&token),
        )
        .await;
    assert_problem(&unknown, 422, "validation_failed");

    let audited: Value = sqlx::query_scalar(
        "SELECT new_values FROM audit_logs WHERE action = 'profile_updated' AND user_id = $1 ORDER BY id LIMIT 1",
    )
    .bind(user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        audited["first_name"], "[redacted]",
        "personal data stays out of audit values"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn changing_the_password_keeps_only_the_current_session(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, current) = app.signed_in("alice").await;
    let other = app.login_as(&user).await.body;
    let token = access(&current);
    let wrong = app
        .call(
            Method::POST,
            "/v1/users/me/password",
            Some(json!({"current_password": "Not-it-123!", "new_password": "Brand-New-Secret-77"})),
            Some(&token),
        )
        .await;
    assert_problem(&wrong, 401, "invalid_credentials");
    let weak = app
        .call(
            Method::POST,
            "/v1/users/me/password",
            Some(json!({"current_password": STRONG_PASSWORD, "new_password": "Password1!"})),
            Some(&token),
        )
        .await;
    assert_problem(&weak, 422, "validation_failed");
    let ok = app
        .call(
            Method::POST,
            "/v1/users/me/password",
            Some(
                json!({"current_password": STRONG_PASSWORD, "new_password": "Brand-New-Secret-77"}),
            ),
            Some(&token),
        )
        .await;
    assert_eq!(ok.status, 204, "{}", ok.body);
    assert_eq!(app.get_as("/v1/users/me", &token).await.status, 200);
    assert_eq!(
        app.get_as("/v1/users/me", &access(&other)).await.status,
        401
    );
    let login = app
        .post(
            "/v1/auth/login",
            json!({"login": "alice", "password": "Brand-New-Secret-77"}),
        )
        .await;
    assert_eq!(login.status, 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn changing_the_email_waits_for_verification(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, pair) = app.signed_in("alice").await;
    app.register("bob").await;
    let token = access(&pair);
    let change = |email: &str, password: &str| {
        app.call(
            Method::POST,
            "/v1/users/me/email",
            Some(json!({"new_email": email, "password": password})),
            Some(&token),
        )
    };
    assert_problem(
        &change("new@example.com", "Wrong-pass-1!").await,
        401,
        "invalid_credentials",
    );
    assert_problem(
        &change("BOB@example.com", STRONG_PASSWORD).await,
        409,
        "email_taken",
    );
    assert_problem(
        &change("not-an-email", STRONG_PASSWORD).await,
        422,
        "validation_failed",
    );
    assert_eq!(change("New@Example.com", STRONG_PASSWORD).await.status, 202);
    assert_eq!(
        app.get_as("/v1/users/me", &token).await.body["email"],
        "alice@example.com"
    );
    let verify_token = app
        .token_from_mail("new@example.com", "verify-email")
        .unwrap();
    let verified = app
        .post("/v1/auth/email/verify", json!({"token": verify_token}))
        .await;
    assert_eq!(verified.status, 200);
    assert_eq!(verified.body["email"], "new@example.com");
    assert_eq!(verified.body["is_email_verified"], true);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn deleting_me_revokes_sessions_and_frees_the_names(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, pair) = app.signed_in("alice").await;
    let token = access(&pair);
    let wrong = app
        .call(
            Method::DELETE,
            "/v1/users/me",
            Some(json!({"password": "Wrong-pass-1!"})),
            Some(&token),
        )
        .await;
    assert_problem(&wrong, 401, "invalid_credentials");
    let deleted = app
        .call(
            Method::DELETE,
            "/v1/users/me",
            Some(json!({"password": STRONG_PASSWORD})),
            Some(&token),
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(app.get_as("/v1/users/me", &token).await.status, 401);
    // The same e-mail and username sign up again at once.
    app.register("alice").await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sessions_are_listed_marked_and_revocable(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, first) = app.signed_in("alice").await;
    let second = app.login_as(&user).await.body;
    let (_, bob) = app.signed_in("bob").await;
    let token = access(&first);
    let list = app.get_as("/v1/users/me/sessions", &token).await;
    assert_eq!(list.status, 200);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    let first_sid = app.state.keys.verify(&token).unwrap().sid.to_string();
    let current = items.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(current["id"], first_sid);

    let paged = app.get_as("/v1/users/me/sessions?limit=1", &token).await;
    assert_eq!(paged.body["items"].as_array().unwrap().len(), 1);
    assert!(paged.body["next_cursor"].is_string());

    let bob_sid = app.state.keys.verify(&access(&bob)).unwrap().sid;
    let foreign = app
        .call(
            Method::DELETE,
            &format!("/v1/users/me/sessions/{bob_sid}"),
            None,
            Some(&token),
        )
        .await;
    assert_problem(&foreign, 404, "not_found");
    assert_eq!(app.get_as("/v1/users/me", &access(&bob)).await.status, 200);

    let second_sid = app.state.keys.verify(&access(&second)).unwrap().sid;
    let revoked = app
        .call(
            Method::DELETE,
            &format!("/v1/users/me/sessions/{second_sid}"),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(revoked.status, 204);
    assert_eq!(
        app.get_as("/v1/users/me", &access(&second)).await.status,
        401
    );
    assert_eq!(app.get_as("/v1/users/me", &token).await.status, 200);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_export_holds_everything_stored_about_the_caller(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    let token = access(&pair);
    let profile = json!({"first_name": "Alice", "last_name": "Liddell", "phone_number": "+447911123456",
                         "date_of_birth": "1990-05-01", "profile_picture_url": "https://cdn.example.com/a.png",
                         "bio": "Down the rabbit hole"});
    app.call(
        Method::PATCH,
        "/v1/users/me",
        Some(profile.clone()),
        Some(&token),
    )
    .await;
    app.grant(user.id, &["stats:read"]).await;
    let export = app.get_as("/v1/users/me/export", &token).await;
    assert_eq!(export.status, 200, "{}", export.body);
    let exported = &export.body["user"];
    // Every column of the users row except the hash is in the export.
    let columns: Vec<String> = sqlx::query_scalar(
        // status_before_delete and anonymized_at are only ever set on a
        // deleted row, which has no export.
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'users'
         AND column_name NOT IN ('password_hash', 'status_before_delete', 'anonymized_at')",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for column in columns {
        assert!(exported.get(&column).is_some(), "export lacks {column}");
    }
    for (field, value) in profile.as_object().unwrap() {
        assert_eq!(&exported[field], value);
    }
    assert_eq!(export.body["roles"], json!(["test-stats_read"]));
    assert_eq!(export.body["sessions"].as_array().unwrap().len(), 1);
    let actions: Vec<&str> = export.body["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"user_registered"));
    assert!(actions.contains(&"login_succeeded"));
    assert!(
        actions.contains(&"data_exported"),
        "the export itself is audited"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn other_users_need_users_read_and_are_otherwise_404(pool: PgPool) {
    let app = TestApp::new(pool);
    let (alice, alice_token) = app.user_with("alice", &[]).await;
    let (bob, _) = app.user_with("bob", &[]).await;
    let (_, reader) = app.user_with("reader", &["users:read"]).await;
    assert_eq!(
        app.get_as(&format!("/v1/users/{}", alice.id), &alice_token)
            .await
            .status,
        200
    );
    assert_problem(
        &app.get_as(&format!("/v1/users/{}", bob.id), &alice_token)
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &app.get_as(&format!("/v1/users/{}", uuid::Uuid::new_v4()), &reader)
            .await,
        404,
        "not_found",
    );
    assert_problem(
        &app.get_as("/v1/users/not-a-uuid", &reader).await,
        404,
        "not_found",
    );
    assert_eq!(
        app.get_as(&format!("/v1/users/{}", bob.id), &reader)
            .await
            .body["username"],
        "bob"
    );
    assert_problem(
        &app.get_as("/v1/users", &alice_token).await,
        403,
        "forbidden",
    );
    let list = app.get_as("/v1/users?q=bob", &reader).await;
    assert_eq!(list.status, 200);
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["bob"]);
    assert_problem(
        &app.get_as("/v1/users?limit=0", &reader).await,
        422,
        "validation_failed",
    );
    assert_problem(
        &app.get_as("/v1/users?cursor=garbage", &reader).await,
        422,
        "validation_failed",
    );
    assert_problem(
        &app.get_as("/v1/users?status=sleeping", &reader).await,
        422,
        "validation_failed",
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sixty_users_paged_by_25_are_each_seen_once_despite_inserts(pool: PgPool) {
    let app = TestApp::new(pool);
    let (_, reader) = app.user_with("reader", &["users:read"]).await;
    sqlx::query(
        "INSERT INTO users (username, email, password_hash, created_at)
         SELECT 'user' || g, 'user' || g || '@example.com', 'x', now() - g * interval '1 minute'
         FROM generate_series(1, 59) g",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/users?limit=25&cursor={c}"),
            None => "/v1/users?limit=25".to_string(),
        };
        let page = app.get_as(&path, &reader).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for user in page.body["items"].as_array().unwrap() {
            assert!(
                seen.insert(user["id"].as_str().unwrap().to_string()),
                "a user was listed twice"
            );
        }
        pages += 1;
        // New sign-ups between pages land before the cursor and do not shift it.
        sqlx::query("INSERT INTO users (username, email, password_hash) VALUES ($1, $2, 'x')")
            .bind(format!("late{pages}"))
            .bind(format!("late{pages}@example.com"))
            .execute(&app.pool)
            .await
            .unwrap();
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 60);
    assert_eq!(pages, 3);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_export_does_not_reveal_staff(pool: PgPool) {
    let app = TestApp::new(pool);
    let (admin_user, admin) = app.user_with("admin", &["users:write"]).await;
    let (user, pair) = app.signed_in("alice").await;
    let patched = app
        .call(
            Method::PATCH,
            &format!("/v1/admin/users/{}", user.id),
            Some(json!({"first_name": "Alicia"})),
            Some(&admin),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    // Stored: the admin, with the address and agent it acted from.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE user_id = $1 AND performed_by = $2 AND ip_address IS NOT NULL",
    )
    .bind(user.id)
    .bind(admin_user.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(stored >= 1);

    let export = app.get_as("/v1/users/me/export", &access(&pair)).await;
    let events = export.body["audit_events"].as_array().unwrap();
    let by_staff: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "profile_updated")
        .collect();
    assert!(!by_staff.is_empty(), "{events:?}");
    for event in by_staff {
        for key in ["performed_by", "ip_address", "user_agent"] {
            assert!(event.get(key).is_some(), "the key {key} stays");
            assert!(event[key].is_null(), "{key} revealed: {event}");
        }
    }
    // The user's own actions keep where they came from.
    let own = events
        .iter()
        .find(|e| e["action"] == "login_succeeded")
        .unwrap();
    assert!(own["ip_address"].is_string(), "{own}");
}
