//! `coldstart`: each function binary under the Runtime API emulator —
//! process start to first response (median of 20), peak RSS after a few
//! hundred invocations with the production Argon2 cost, and file size.
//! Run by `cargo xtask bench` with DATABASE_URL (a migrated database) and
//! LAMBDA_BIN_DIR; prints a markdown table.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tests::emulator::{Function, apigw_event, binary, response_body};

const RUNS: usize = 20;
const PASSWORD: &str = "Cold-Start-Passw0rd-Heron";

fn env(database_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_string()),
        ("JWT_PRIVATE_KEY_PEM", tests::test_key_pem().to_string()),
        ("MFA_ENCRYPTION_KEY", tests::TEST_MFA_KEY.to_string()),
        // The production cost: peak RSS includes one Argon2id hash's memory.
        ("ARGON2_MEMORY_KIB", "19456".into()),
        ("ARGON2_ITERATIONS", "2".into()),
        ("RATE_LIMIT_PER_MINUTE", "1000000".into()),
        ("RATE_LIMIT_LOGIN_PER_MINUTE", "1000000".into()),
        ("RATE_LIMIT_REGISTER_PER_MINUTE", "1000000".into()),
        ("RATE_LIMIT_REFRESH_PER_MINUTE", "1000000".into()),
        (
            "MAIL_OUTBOX_DIR",
            std::env::temp_dir()
                .join("um-coldstart-outbox")
                .to_string_lossy()
                .into_owned(),
        ),
    ]
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// Starts `name` RUNS times; the median time to answer `event`.
async fn cold(name: &str, env: &[(&str, String)], event: &Value) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let function = Function::start(name, env).await;
        let answer = function.invoke(event.clone()).await;
        times.push(function.started.elapsed());
        if answer.is_err() {
            bail!("{name} failed: {answer:?}");
        }
    }
    Ok(median(times))
}

/// Wall and CPU time per invocation over `n` calls of `event`.
#[derive(Debug, Clone, Copy, Default)]
struct PerCall {
    n: u32,
    wall: Duration,
    cpu: Duration,
}

async fn per_call(
    f: &Function,
    n: u32,
    mut event: impl FnMut(&Value) -> Value,
    status: u64,
) -> Result<(PerCall, Value)> {
    let cpu0 = f.cpu_time().unwrap_or_default();
    let t0 = Instant::now();
    let mut last = Value::Null;
    for _ in 0..n {
        last = call(f, event(&last), status).await?;
    }
    let wall = t0.elapsed() / n;
    let cpu = f.cpu_time().unwrap_or_default().saturating_sub(cpu0) / n;
    Ok((PerCall { n, wall, cpu }, last))
}

async fn call(f: &Function, event: Value, status: u64) -> Result<Value> {
    let answer = f.invoke(event).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if answer["statusCode"] != status {
        bail!("expected {status}, got {answer}");
    }
    Ok(response_body(&answer))
}

#[tokio::main]
async fn main() -> Result<()> {
    let database_url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let pool = sqlx::PgPool::connect(&database_url).await?;
    let env = env(&database_url);

    // Cold starts. The first request of the HTTP functions either needs no
    // database (JWKS; an unauthenticated call answered 401) or does (health).
    let mut rows = Vec::new();
    let jwks = apigw_event("GET", "/.well-known/jwks.json", None, None);
    let health = apigw_event("GET", "/v1/health", None, None);
    rows.push((
        "auth",
        "GET /.well-known/jwks.json (no database)",
        cold("auth", &env, &jwks).await?,
    ));
    rows.push((
        "auth",
        "GET /v1/health (first database connection)",
        cold("auth", &env, &health).await?,
    ));
    rows.push((
        "users",
        "GET /v1/users/me without a token (401)",
        cold(
            "users",
            &env,
            &apigw_event("GET", "/v1/users/me", None, None),
        )
        .await?,
    ));
    rows.push((
        "admin",
        "GET /v1/admin/stats without a token (401)",
        cold(
            "admin",
            &env,
            &apigw_event("GET", "/v1/admin/stats", None, None),
        )
        .await?,
    ));
    rows.push((
        "cleanup",
        "dry run (connects, counts)",
        cold("cleanup", &env, &json!({"dry_run": true})).await?,
    ));

    // Peak RSS under a sustained sequence of invocations.
    let started = Instant::now();
    let auth = Function::start("auth", &env).await;
    let name = format!("cold{}", uuid::Uuid::new_v4().simple());
    call(
        &auth,
        apigw_event(
            "POST",
            "/v1/auth/register",
            Some(json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD})),
            None,
        ),
        201,
    )
    .await?;
    let login = apigw_event(
        "POST",
        "/v1/auth/login",
        Some(json!({"login": name, "password": PASSWORD})),
        None,
    );
    let (logins, pair) = per_call(&auth, 100, |_| login.clone(), 200).await?;
    let mut current = pair;
    let (refreshes, pair) = per_call(
        &auth,
        300,
        |last| {
            let token = if last.is_null() { &current } else { last };
            apigw_event(
                "POST",
                "/v1/auth/refresh",
                Some(json!({"refresh_token": token["refresh_token"]})),
                None,
            )
        },
        200,
    )
    .await?;
    current = pair.clone();
    let auth_rss = auth.peak_rss_kib();
    drop(auth);
    let user_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(&name)
        .fetch_one(&pool)
        .await?;
    sqlx::query(
        "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = 'admin'
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .execute(&pool)
    .await?;
    let token = current["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let users = Function::start("users", &env).await;
    let me_event = apigw_event("GET", "/v1/users/me", None, Some(&token));
    let (me, _) = per_call(&users, 500, |_| me_event.clone(), 200).await?;
    let users_rss = users.peak_rss_kib();
    drop(users);
    let admin = Function::start("admin", &env).await;
    let list_event = apigw_event("GET", "/v1/admin/users?limit=50", None, Some(&token));
    let (list, _) = per_call(&admin, 300, |_| list_event.clone(), 200).await?;
    let admin_rss = admin.peak_rss_kib();
    drop(admin);
    let cleanup = Function::start("cleanup", &env).await;
    for _ in 0..3 {
        cleanup
            .invoke(json!({"dry_run": true}))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let cleanup_rss = cleanup.peak_rss_kib();
    drop(cleanup);
    let load_time = started.elapsed();

    println!("| function | first request | cold start, median of {RUNS} (ms) |");
    println!("|---|---|---|");
    for (f, what, t) in &rows {
        println!("| {f} | {what} | {} |", ms(*t));
    }
    println!(
        "\n| function | invocations | peak RSS (MiB) | stripped x86_64 binary (bytes) | (MB) |"
    );
    println!("|---|---|---|---|---|");
    for (f, what, rss) in [
        ("auth", "1 register, 100 logins, 300 refreshes", auth_rss),
        ("users", "500 × GET /v1/users/me", users_rss),
        ("admin", "300 × GET /v1/admin/users?limit=50", admin_rss),
        ("cleanup", "3 dry runs", cleanup_rss),
    ] {
        let size = std::fs::metadata(binary(f)).map(|m| m.len()).unwrap_or(0);
        println!(
            "| {f} | {what} | {:.1} | {size} | {:.1} |",
            rss.unwrap_or(0) as f64 / 1024.0,
            size as f64 / 1e6
        );
    }
    println!(
        "\n| invocation (warm, one at a time, as Lambda runs them) | count | wall ms per call (billed duration) | CPU ms per call |"
    );
    println!("|---|---|---|---|");
    for (what, p) in [
        ("auth: POST /v1/auth/login (Argon2id 19 MiB, t=2)", logins),
        ("auth: POST /v1/auth/refresh", refreshes),
        ("users: GET /v1/users/me", me),
        ("admin: GET /v1/admin/users?limit=50", list),
    ] {
        println!("| {what} | {} | {} | {} |", p.n, ms(p.wall), ms(p.cpu));
    }
    eprintln!("(load part took {load_time:?})");
    Ok(())
}
