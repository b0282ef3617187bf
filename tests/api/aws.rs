//! AWS integration against moto (a local AWS API): database credentials and
//! signing keys from Secrets Manager, ElastiCache discovery, SES mail, and
//! clear init errors for missing or malformed secrets.

use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_sdk_secretsmanager::config::Credentials;
use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::emulator::{Function, apigw_event, response_body as body};
use tests::{STRONG_PASSWORD, test_key_pem};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(super) fn moto_url() -> String {
    std::env::var("MOTO_URL").unwrap_or_else(|_| "http://127.0.0.1:5000".into())
}

pub(super) async fn sdk() -> SdkConfig {
    shared::aws::sdk_loader()
        .endpoint_url(moto_url())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await
}

/// The environment a function gets in AWS, pointed at moto.
fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto_url()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("ARGON2_MEMORY_KIB", "1024".into()),
        ("ARGON2_ITERATIONS", "1".into()),
    ]
}

pub(super) async fn create_secret(sdk: &SdkConfig, value: &str) -> String {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client
        .create_secret()
        .name(format!("test/{}", uuid::Uuid::new_v4()))
        .secret_string(value)
        .send()
        .await
        .expect("creating a secret in moto");
    out.arn().expect("an ARN").to_string()
}

/// GET on moto's own API (plain HTTP/1.0 on loopback).
async fn moto_get(path: &str) -> Value {
    let host = moto_url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&host)
        .await
        .expect("moto reachable");
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn credentials_and_keys_come_from_secrets_manager_and_mail_goes_through_ses(pool: PgPool) {
    let sdk = sdk().await;
    let options = pool.connect_options();
    let db_secret = create_secret(
        &sdk,
        &json!({"username": options.get_username(), "password": "unused-with-trust-auth",
                "engine": "postgres", "host": "proxy.invalid", "port": 5432})
        .to_string(),
    )
    .await;
    let jwt_secret = create_secret(&sdk, test_key_pem()).await;
    // The key sealing TOTP secrets, in the form Secrets Manager's generator
    // gives (no key id: one is derived).
    let mfa_secret = create_secret(&sdk, "0123456789abcdefghijABCDEFGHIJ0123456789").await;
    let sender = format!("no-reply-{}@example.com", uuid::Uuid::new_v4().simple());
    aws_sdk_sesv2::Client::new(&sdk)
        .create_email_identity()
        .email_identity(&sender)
        .send()
        .await
        .expect("verifying the sender in moto");

    let mut env = aws_env();
    env.extend([
        ("DB_SECRET_ARN", db_secret),
        ("DB_HOST", options.get_host().to_string()),
        ("DB_PORT", options.get_port().to_string()),
        (
            "DB_NAME",
            options.get_database().unwrap_or("postgres").to_string(),
        ),
        ("JWT_SECRET_ARN", jwt_secret),
        ("MFA_SECRET_ARN", mfa_secret),
        ("MAIL_TRANSPORT", "ses".into()),
        ("MAIL_FROM", sender.clone()),
    ]);
    let auth = Function::start("auth", &env).await;
    let to = format!("alice-{}@example.com", uuid::Uuid::new_v4().simple());
    let created = auth
        .invoke(apigw_event(
            "POST",
            "/v1/auth/register",
            Some(json!({"username": "alice", "email": to, "password": STRONG_PASSWORD})),
            None,
        ))
        .await
        .expect("register answered");
    assert_eq!(created["statusCode"], 201, "{created}");
    let login = auth
        .invoke(apigw_event(
            "POST",
            "/v1/auth/login",
            Some(json!({"login": "alice", "password": STRONG_PASSWORD})),
            None,
        ))
        .await
        .expect("login answered");
    let token = body(&login)["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Signed with the key from the secret: the tests' key verifies it.
    let keys = shared::security::JwtKeys::new(
        &[secrecy::SecretString::from(test_key_pem().to_string())],
        "http://127.0.0.1:3000",
        "user-management-api",
        Duration::from_secs(900),
    )
    .unwrap();
    assert!(keys.verify(&token).is_some());

    // The verification mail went out through SES.
    let data = moto_get("/moto-api/data.json").await;
    let sent = data["ses"]["Message"].to_string();
    assert!(sent.contains(&to), "no SES message to {to}");
}

#[tokio::test]
async fn a_missing_secret_is_an_init_error_naming_it() {
    let mut env = aws_env();
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:does-not-exist-AbCdEf";
    env.extend([
        ("DB_SECRET_ARN", arn.to_string()),
        ("DB_HOST", "127.0.0.1".into()),
        ("JWT_PRIVATE_KEY_PEM", test_key_pem().to_string()),
    ]);
    let function = Function::start("users", &env).await;
    let report = function
        .api
        .init_error(Duration::from_secs(30))
        .await
        .expect("reported");
    let message = report["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("DB_SECRET_ARN") && message.contains(arn),
        "{message}"
    );
}

#[tokio::test]
async fn a_malformed_secret_is_an_init_error_that_does_not_echo_it() {
    let sdk = sdk().await;
    let arn = create_secret(&sdk, "hunter2-not-json").await;
    let mut env = aws_env();
    env.extend([
        ("DB_SECRET_ARN", arn.clone()),
        ("DB_HOST", "127.0.0.1".into()),
        ("JWT_PRIVATE_KEY_PEM", test_key_pem().to_string()),
    ]);
    let function = Function::start("admin", &env).await;
    let report = function
        .api
        .init_error(Duration::from_secs(30))
        .await
        .expect("reported");
    let message = report["errorMessage"].as_str().unwrap();
    assert!(
        message.contains(&arn) && message.contains("not JSON"),
        "{message}"
    );
    assert!(
        !message.contains("hunter2"),
        "the secret's value leaked: {message}"
    );
    let jwt = create_secret(&sdk, "no key here").await;
    let mut env = aws_env();
    env.extend([
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres".to_string(),
        ),
        ("JWT_SECRET_ARN", jwt.clone()),
    ]);
    let function = Function::start("auth", &env).await;
    let report = function
        .api
        .init_error(Duration::from_secs(30))
        .await
        .expect("reported");
    let message = report["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("JWT_SECRET_ARN") && message.contains(&jwt),
        "{message}"
    );
}

#[tokio::test]
async fn the_elasticache_endpoint_is_discovered() {
    let sdk = sdk().await;
    let id = format!("um-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    aws_sdk_elasticache::Client::new(&sdk)
        .create_replication_group()
        .replication_group_id(&id)
        .replication_group_description("tests")
        .engine("redis")
        .cache_node_type("cache.t4g.small")
        .num_cache_clusters(1)
        .transit_encryption_enabled(true)
        .send()
        .await
        .expect("creating a replication group in moto");
    let mut config = tests::test_config(&[("ELASTICACHE_REPLICATION_GROUP_ID", &id)]);
    shared::aws::resolve(&mut config, &sdk)
        .await
        .expect("discovered");
    let url = secrecy::ExposeSecret::expose_secret(config.redis_url.as_ref().unwrap()).to_string();
    assert!(url.starts_with("rediss://") && url.contains(&id), "{url}");

    let mut config = tests::test_config(&[("ELASTICACHE_REPLICATION_GROUP_ID", "no-such-group")]);
    let err = shared::aws::resolve(&mut config, &sdk).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("ELASTICACHE_REPLICATION_GROUP_ID"),
        "{err:#}"
    );
}

#[tokio::test]
async fn an_unreachable_secrets_manager_is_an_init_error_naming_the_secret() {
    let mut env = aws_env();
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf";
    for (key, value) in env.iter_mut() {
        if *key == "AWS_ENDPOINT_URL" {
            *value = "http://127.0.0.1:1".into();
        }
    }
    env.extend([
        ("DB_SECRET_ARN", arn.to_string()),
        ("DB_HOST", "127.0.0.1".into()),
        ("JWT_PRIVATE_KEY_PEM", test_key_pem().to_string()),
    ]);
    let started = std::time::Instant::now();
    let function = Function::start("auth", &env).await;
    let report = function
        .api
        .init_error(Duration::from_secs(30))
        .await
        .expect("reported");
    let message = report["errorMessage"].as_str().unwrap();
    assert!(message.contains(arn), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    let (code, _) = function.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(1), "it does not start half-configured");
}

/// On deploy the migration resource (run as the owner) lets the API role
/// log in with the password of its own secret; a secret for another role
/// is an init error naming it.
#[sqlx::test(migrations = false)]
async fn the_migration_resource_gives_the_api_role_its_password(pool: PgPool) {
    let sdk = sdk().await;
    let password = format!("it's-{}", uuid::Uuid::new_v4());
    let app_secret = create_secret(
        &sdk,
        &json!({"username": tests::APP_ROLE, "password": password}).to_string(),
    )
    .await;
    let mut env = aws_env();
    env.extend([
        ("DATABASE_URL", tests::database_url(&pool)),
        ("APP_DB_SECRET_ARN", app_secret),
        // The template's globals, meant for the HTTP functions: the job
        // may not read them and must start without them.
        (
            "JWT_SECRET_ARN",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:not-for-cleanup-AbCdEf".into(),
        ),
        ("ELASTICACHE_REPLICATION_GROUP_ID", "not-for-cleanup".into()),
        ("MAIL_TRANSPORT", "ses".into()),
    ]);
    let (url, rx) = tests::emulator::cloudformation_receiver().await;
    let cleanup = Function::start("cleanup", &env).await;
    let answer = cleanup
        .invoke(tests::emulator::migrations_event(&url))
        .await
        .expect("the custom resource answered");
    assert_eq!(answer["migrations"], "Create");
    let response = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("CloudFormation got a response")
        .unwrap();
    assert_eq!(response["Status"], "SUCCESS", "{response}");
    // The stored verifier is of this password (SCRAM: salted, never the text).
    let (login, verifier): (bool, Option<String>) =
        sqlx::query_as("SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = $1")
            .bind(tests::APP_ROLE)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(login);
    let verifier = verifier.unwrap_or_default();
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    assert!(
        !cleanup.stdout().contains(&password),
        "the password was logged"
    );

    let other = create_secret(
        &sdk,
        &json!({"username": "postgres", "password": "x"}).to_string(),
    )
    .await;
    let mut env = aws_env();
    env.extend([
        ("DATABASE_URL", tests::database_url(&pool)),
        ("APP_DB_SECRET_ARN", other.clone()),
    ]);
    let function = Function::start("cleanup", &env).await;
    let report = function
        .api
        .init_error(Duration::from_secs(30))
        .await
        .expect("reported");
    let message = report["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("APP_DB_SECRET_ARN") && message.contains(&other),
        "{message}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_phone_code_goes_out_through_sns_and_verifies_the_number(pool: PgPool) {
    // The user signs in through the in-process API (same database, same key).
    let app = tests::TestApp::new(pool.clone());
    let (_, pair) = app.signed_in("texted").await;
    let token = pair["access_token"].as_str().unwrap().to_string();
    // A number of its own per run: moto keeps what earlier runs sent.
    let number = format!("+4479{:08}", uuid::Uuid::new_v4().as_u128() % 100_000_000);

    let mut env = aws_env();
    env.extend([
        ("DATABASE_URL", tests::database_url(&pool)),
        ("JWT_PRIVATE_KEY_PEM", test_key_pem().to_string()),
        ("MFA_ENCRYPTION_KEY", tests::TEST_MFA_KEY.to_string()),
        ("SMS_TRANSPORT", "sns".into()),
        ("AWS_REGION", "eu-west-1".into()),
    ]);
    let users = Function::start("users", &env).await;
    let call = |method: &str, path: &str, json: Option<Value>| {
        users.invoke(apigw_event(method, path, json, Some(&token)))
    };
    let patched = call(
        "PATCH",
        "/v1/users/me",
        Some(json!({"phone_number": number})),
    )
    .await
    .expect("answered");
    assert_eq!(patched["statusCode"], 200, "{patched}");
    let sent = call("POST", "/v1/users/me/phone/verify", None)
        .await
        .expect("answered");
    assert_eq!(sent["statusCode"], 202, "{sent}");

    // moto's SNS holds the message: take the code from it.
    let data = moto_get("/moto-api/data.json").await;
    let texts: Vec<&Value> = data["sns"]["SMS"]
        .as_array()
        .map(|all| all.iter().filter(|m| m["phone_number"] == number).collect())
        .unwrap_or_default();
    assert_eq!(texts.len(), 1, "one SMS to {number}: {}", data["sns"]);
    let message = texts[0]["message"].as_str().unwrap();
    let start = message.find("code is ").unwrap() + "code is ".len();
    let code = &message[start..start + 6];

    let confirmed = call(
        "POST",
        "/v1/users/me/phone/confirm",
        Some(json!({"code": code})),
    )
    .await
    .expect("answered");
    assert_eq!(confirmed["statusCode"], 200, "{confirmed}");
    assert_eq!(body(&confirmed)["is_phone_verified"], true);
}
