//! The compiled function binaries under the Runtime API emulator, driven by
//! API Gateway v2 events and an EventBridge Scheduled Event, sharing one
//! database and one signing key, as they would in AWS.

use std::time::Duration;

use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::emulator::{Function, SAMPLE_EVENTS, apigw_event, response_body as body, sample_event};
use tests::{STRONG_PASSWORD, test_key_pem};

fn env(pool: &PgPool) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", tests::database_url(pool)),
        ("JWT_PRIVATE_KEY_PEM", test_key_pem().to_string()),
        ("MFA_ENCRYPTION_KEY", tests::TEST_MFA_KEY.to_string()),
        ("ARGON2_MEMORY_KIB", "1024".into()),
        ("ARGON2_ITERATIONS", "1".into()),
        (
            "MAIL_OUTBOX_DIR",
            std::env::temp_dir()
                .join("um-lambda-outbox")
                .to_string_lossy()
                .into_owned(),
        ),
    ]
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn register_login_and_me_through_three_binaries(pool: PgPool) {
    let env = env(&pool);
    let auth = Function::start("auth", &env).await;
    let users = Function::start("users", &env).await;

    let register = apigw_event(
        "POST",
        "/v1/auth/register",
        Some(
            json!({"username": "alice", "email": "alice@example.com", "password": STRONG_PASSWORD}),
        ),
        None,
    );
    let request_id = register["requestContext"]["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    let created = auth.invoke(register).await.expect("register answered");
    let cold_start = auth.started.elapsed();
    assert_eq!(created["statusCode"], 201, "{created}");
    assert_eq!(
        created["headers"]["x-request-id"],
        request_id.as_str(),
        "API Gateway's id is used"
    );
    assert_eq!(created["headers"]["cache-control"], "no-store");

    let login = auth
        .invoke(apigw_event(
            "POST",
            "/v1/auth/login",
            Some(json!({"login": "alice", "password": STRONG_PASSWORD})),
            None,
        ))
        .await
        .expect("login answered");
    assert_eq!(login["statusCode"], 200, "{login}");
    let token = body(&login)["access_token"].as_str().unwrap().to_string();

    let me = users
        .invoke(apigw_event("GET", "/v1/users/me", None, Some(&token)))
        .await
        .expect("me answered");
    assert_eq!(me["statusCode"], 200, "{me}");
    assert_eq!(body(&me)["username"], "alice");

    // The users function serves only its own routes.
    let foreign = users
        .invoke(apigw_event("GET", "/v1/health", None, None))
        .await
        .expect("answered");
    assert_eq!(foreign["statusCode"], 404);

    // The audit row carries API Gateway's request id and source IP.
    let (rid, ip): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT request_id, host(ip_address) FROM audit_logs WHERE action = 'user_registered'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(rid.as_deref(), Some(request_id.as_str()));
    assert_eq!(ip.as_deref(), Some("203.0.113.7"));

    // Metrics leave as Embedded Metric Format lines in the log.
    let emf: Vec<Value> = auth
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("_aws").is_some())
        .collect();
    assert!(
        emf.iter().any(|m| m["Registrations"] == 1.0),
        "no registration metric"
    );
    assert!(
        emf.iter().any(|m| m["LoginSuccesses"] == 1.0),
        "no login metric"
    );
    assert!(
        emf.iter()
            .any(|m| m["Route"] == "POST /v1/auth/login" && m["Latency"].is_number()),
        "no latency metric for the route"
    );

    let admin = Function::start("admin", &env).await;
    let denied = admin
        .invoke(apigw_event("GET", "/v1/admin/stats", None, Some(&token)))
        .await
        .expect("answered");
    assert_eq!(denied["statusCode"], 403);
    println!(
        "auth cold start to first response: {:.1} ms",
        cold_start.as_secs_f64() * 1000.0
    );
}

/// `events/` holds exactly the sample events, and the API Gateway ones work
/// as committed: register, login, then `me` once its placeholder holds the
/// login's access token (the cleanup ones are used by the next test).
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_sample_events_work_as_committed(pool: PgPool) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = SAMPLE_EVENTS.iter().map(|n| format!("{n}.json")).collect();
    expected.sort();
    assert_eq!(files, expected, "every sample event is tested");

    let env = env(&pool);
    let auth = Function::start("auth", &env).await;
    let users = Function::start("users", &env).await;
    let register = sample_event("auth-register");
    let created = auth.invoke(register.clone()).await.expect("answered");
    assert_eq!(created["statusCode"], 201, "{created}");
    let login = auth
        .invoke(sample_event("auth-login"))
        .await
        .expect("answered");
    assert_eq!(login["statusCode"], 200, "{login}");
    let token = body(&login)["access_token"].as_str().unwrap().to_string();

    let mut me = sample_event("users-me");
    assert_eq!(
        me["headers"]["authorization"], "Bearer REPLACE_WITH_ACCESS_TOKEN",
        "the placeholder the README tells developers to fill"
    );
    let unfilled = users.invoke(me.clone()).await.expect("answered");
    assert_eq!(unfilled["statusCode"], 401, "{unfilled}");
    me["headers"]["authorization"] = format!("Bearer {token}").into();
    let answer = users.invoke(me).await.expect("answered");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let sent: Value = serde_json::from_str(register["body"].as_str().unwrap()).unwrap();
    assert_eq!(body(&answer)["username"], sent["username"]);
    assert_eq!(body(&answer)["email"], sent["email"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cleanup_runs_on_the_schedule_and_twice_changes_nothing(pool: PgPool) {
    sqlx::query(
        "INSERT INTO rate_limits (identifier, endpoint, window_start, window_end)
         VALUES ('ip', 'login', now() - interval '3 hours', now() - interval '2 hours')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let cleanup = Function::start("cleanup", &env(&pool)).await;
    let scheduled = sample_event("cleanup-scheduled");
    let dry = cleanup
        .invoke(sample_event("cleanup-dry-run"))
        .await
        .expect("dry run answered");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["deleted_rate_limits"], 1);
    let first = cleanup
        .invoke(scheduled.clone())
        .await
        .expect("first run answered");
    assert_eq!(first["dry_run"], false);
    assert_eq!(first["deleted_rate_limits"], 1);
    let second = cleanup
        .invoke(scheduled)
        .await
        .expect("second run answered");
    for key in [
        "deleted_refresh_tokens",
        "deleted_password_reset_tokens",
        "deleted_email_verification_tokens",
        "deleted_rate_limits",
        "anonymized_users",
        "retention_expired_users",
        "partitions_created",
        "partitions_dropped",
    ] {
        assert_eq!(second[key], 0, "{key} on the second run: {second}");
    }
}

#[tokio::test]
async fn a_missing_setting_is_reported_as_an_init_error() {
    let function = Function::start(
        "auth",
        &[("JWT_PRIVATE_KEY_PEM", test_key_pem().to_string())],
    )
    .await;
    let report = function
        .api
        .init_error(Duration::from_secs(20))
        .await
        .expect("an init error is reported");
    assert_eq!(report["errorType"], "Runtime.InitError");
    assert!(
        report["errorMessage"]
            .as_str()
            .unwrap()
            .contains("DATABASE_URL"),
        "{report}"
    );
    let (code, stderr) = function.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(1));
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_missing_mfa_key_is_reported_as_an_init_error_naming_it() {
    let function = Function::start(
        "users",
        &[
            (
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres".into(),
            ),
            ("JWT_PRIVATE_KEY_PEM", test_key_pem().to_string()),
        ],
    )
    .await;
    let report = function
        .api
        .init_error(Duration::from_secs(20))
        .await
        .expect("reported");
    let message = report["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("MFA_ENCRYPTION_KEY") && message.contains("MFA_SECRET_ARN"),
        "{message}"
    );
    let (code, _) = function.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn a_bad_signing_key_is_reported_as_an_init_error() {
    let function = Function::start(
        "users",
        &[
            (
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres".into(),
            ),
            (
                "JWT_PRIVATE_KEY_PEM",
                "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----".into(),
            ),
        ],
    )
    .await;
    let report = function
        .api
        .init_error(Duration::from_secs(20))
        .await
        .expect("reported");
    assert!(
        report["errorMessage"].as_str().unwrap().contains("JWT"),
        "{report}"
    );
}

#[sqlx::test(migrations = false)]
async fn the_migration_custom_resource_applies_the_schema_and_answers_cloudformation(pool: PgPool) {
    let (url, rx) = tests::emulator::cloudformation_receiver().await;
    let cleanup = Function::start("cleanup", &env(&pool)).await;
    let event = tests::emulator::migrations_event(&url);
    let answer = cleanup
        .invoke(event)
        .await
        .expect("the custom resource answered");
    assert_eq!(answer["migrations"], "Create");
    let response = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("CloudFormation got a response")
        .unwrap();
    assert_eq!(response["Status"], "SUCCESS", "{response}");
    assert_eq!(response["RequestId"], "req-1");
    assert_eq!(response["LogicalResourceId"], "SchemaMigrations");
    let users: Option<String> = sqlx::query_scalar("SELECT to_regclass('users')::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users.as_deref(), Some("users"));
}

#[tokio::test]
async fn the_migration_waits_for_the_database_then_answers_failed() {
    // A first deploy's database may not answer yet: the handler retries
    // for MIGRATION_DB_WAIT_SECONDS, then tells CloudFormation why.
    let (url, rx) = tests::emulator::cloudformation_receiver().await;
    let env = vec![
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/none".to_string(),
        ),
        ("DB_CONNECT_TIMEOUT_SECONDS", "1".to_string()),
        ("MIGRATION_DB_WAIT_SECONDS", "2".to_string()),
    ];
    let cleanup = Function::start("cleanup", &env).await;
    let started = std::time::Instant::now();
    let answer = cleanup
        .invoke(tests::emulator::migrations_event(&url))
        .await
        .expect("the custom resource answered");
    assert_eq!(answer["migrations"], "Create");
    let response = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("CloudFormation got a response")
        .unwrap();
    assert_eq!(response["Status"], "FAILED", "{response}");
    let reason = response["Reason"].as_str().unwrap();
    assert!(
        reason.contains("did not become reachable within 2 s"),
        "{reason}"
    );
    assert!(!reason.contains("postgres://"), "{reason}");
    // It did wait (at least one retry), and gave up.
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_operators_event_makes_the_first_admin(pool: PgPool) {
    // The stack's own network has no host that reaches the database: the
    // first admin is made by invoking the cleanup function.
    let app = tests::TestApp::new(pool.clone());
    let user = app.register("first_admin").await;
    let cleanup = Function::start("cleanup", &env(&pool)).await;
    let answer = cleanup
        .invoke(json!({"grant_admin": user.email.to_uppercase()}))
        .await
        .expect("granted");
    assert_eq!(answer["granted"], true, "{answer}");
    assert_eq!(answer["user_id"], user.id.to_string());
    let roles: Vec<String> = sqlx::query_scalar(
        "SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = $1",
    )
    .bind(user.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(roles, ["admin"]);
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE user_id = $1 AND action = 'role_assigned' AND performed_by IS NULL AND request_id = 'grant_admin'",
    )
    .bind(user.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    // The admin can now do admin things.
    let login = app.login_as(&user).await;
    let token = login.body["access_token"].as_str().unwrap();
    assert_eq!(app.get_as("/v1/admin/users", token).await.status, 200);

    // Again: nothing new. An unknown address: an error naming it.
    let again = cleanup
        .invoke(json!({"grant_admin": user.email}))
        .await
        .unwrap();
    assert_eq!(again["granted"], false);
    let unknown = cleanup
        .invoke(json!({"grant_admin": "nobody@example.com"}))
        .await
        .expect_err("no such account");
    assert!(
        unknown.to_string().contains("nobody@example.com"),
        "{unknown}"
    );
}

/// Process start to first response, median of 5, for each binary (printed
/// for the record; the bound only catches a function that hangs at start).
#[sqlx::test(migrator = "MIGRATOR")]
async fn cold_starts_are_measured(pool: PgPool) {
    let env = env(&pool);
    let cases = [
        ("auth", apigw_event("GET", "/v1/health", None, None), 200),
        ("users", apigw_event("GET", "/v1/users/me", None, None), 401),
        (
            "admin",
            apigw_event("GET", "/v1/admin/stats", None, None),
            401,
        ),
    ];
    for (name, event, status) in cases {
        let mut times = Vec::new();
        for _ in 0..5 {
            let function = Function::start(name, &env).await;
            let answer = function.invoke(event.clone()).await.expect("answered");
            times.push(function.started.elapsed());
            assert_eq!(answer["statusCode"], status, "{name}: {answer}");
        }
        times.sort();
        println!(
            "cold start {name}: median {:.1} ms over 5 (first response)",
            times[2].as_secs_f64() * 1000.0
        );
        assert!(
            times[2] < Duration::from_secs(5),
            "{name} takes {:?} to answer",
            times[2]
        );
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let function = Function::start("cleanup", &env).await;
        let answer = function
            .invoke(json!({"dry_run": true}))
            .await
            .expect("answered");
        times.push(function.started.elapsed());
        assert_eq!(answer["dry_run"], true);
    }
    times.sort();
    println!(
        "cold start cleanup: median {:.1} ms over 5 (dry run)",
        times[2].as_secs_f64() * 1000.0
    );
}

/// Every function binary as it ships (`cargo lambda build --release`, as
/// `sam build` runs it, when `LAMBDA_BIN_DIR` names its output) stays under
/// 10 MB: the Lambda package, and with it the cold start, grow with it.
#[test]
fn every_function_binary_is_under_10_mb() {
    const LIMIT: u64 = 10_000_000;
    for name in ["auth", "users", "admin", "cleanup"] {
        let path = tests::emulator::binary(name);
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(
            size < LIMIT,
            "{}: {size} bytes, over {LIMIT}",
            path.display()
        );
    }
}
