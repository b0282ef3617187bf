//! What the HTTP figures are measured against, on the same machine in the
//! same run: the database's own speed through `pgbench`, and the CPU cost
//! of the two pieces of cryptography a request cannot avoid.
//!
//! - The read floor: `pgbench -M prepared`, one primary-key lookup of a
//!   `users` row per transaction, at the same client count as the API run,
//!   of the very users the API run logs in as (one script per user, picked
//!   at random per transaction, as pgbench's `\set` cannot make UUIDs).
//! - The write floor: `pgbench -N` (prepared; an UPDATE, a SELECT and an
//!   INSERT per transaction, one commit) on its own database in the cluster.
//! - RS256 signing and Argon2id verification, per operation on one core.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use secrecy::SecretString;
use uuid::Uuid;

/// One pgbench run.
#[derive(Debug, Clone)]
pub struct Pgbench {
    pub clients: usize,
    pub tps: f64,
    pub latency_avg_ms: f64,
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn pgbench(args: &[String], url: &str) -> Result<(f64, f64)> {
    let out = tokio::process::Command::new("pgbench")
        .args(args)
        .arg(url)
        .output()
        .await
        .context("running pgbench (PostgreSQL's client tools)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let number_after = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    Ok((
        number_after("tps = ").context("pgbench printed no tps")?,
        number_after("latency average = ").unwrap_or(0.0),
    ))
}

fn common_args(clients: usize, duration: Duration) -> Vec<String> {
    vec![
        "-n".into(),
        "-M".into(),
        "prepared".into(),
        "-j".into(),
        "2".into(),
        format!("-c{clients}"),
        format!("-T{}", duration.as_secs().max(1)),
    ]
}

/// The read floor with `clients` clients over the rows of `ids` (at most
/// 128: pgbench's limit on scripts).
pub async fn read(
    database_url: &str,
    ids: &[Uuid],
    clients: usize,
    duration: Duration,
) -> Result<Pgbench> {
    if ids.is_empty() {
        bail!("no users to look up");
    }
    let dir = std::env::temp_dir().join(format!("um-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut args = common_args(clients, duration);
    for (i, id) in ids.iter().take(128).enumerate() {
        let script = dir.join(format!("pk-{i}.sql"));
        std::fs::write(&script, format!("SELECT * FROM users WHERE id = '{id}';\n"))?;
        args.push("-f".into());
        args.push(script.display().to_string());
    }
    let result = pgbench(&args, database_url).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (tps, latency_avg_ms) = result?;
    Ok(Pgbench {
        clients,
        tps,
        latency_avg_ms,
    })
}

/// The write floor: `pgbench -N` on `um_pgbench` (created and initialised
/// at scale 1 on first use) in the same cluster as `database_url`.
pub async fn write(database_url: &str, clients: usize, duration: Duration) -> Result<Pgbench> {
    let url = with_database(database_url, "um_pgbench");
    let pool = sqlx::PgPool::connect(database_url).await?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'um_pgbench')",
    )
    .fetch_one(&pool)
    .await?;
    if !exists {
        sqlx::query("CREATE DATABASE um_pgbench")
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    let init = tokio::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "1"])
        .arg(&url)
        .output()
        .await
        .context("initialising the pgbench database")?;
    if !init.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let mut args = common_args(clients, duration);
    args.push("-N".into());
    let (tps, latency_avg_ms) = pgbench(&args, &url).await?;
    Ok(Pgbench {
        clients,
        tps,
        latency_avg_ms,
    })
}

/// Microseconds of one RS256 access-token signature (a fresh 2048-bit key,
/// as production keys are), on one core.
pub fn rs256_sign_us() -> Result<f64> {
    let pem: SecretString = shared::security::jwt::generate_private_key_pem()?;
    let keys = shared::security::jwt::JwtKeys::new(
        &[pem],
        "https://bench.invalid",
        "bench",
        Duration::from_secs(900),
    )?;
    let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
    keys.issue(user, session, &[])?;
    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        keys.issue(user, session, &[])?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds))
}

/// Milliseconds of one Argon2id verification with the configured
/// parameters (the environment's, else the defaults), on one core.
pub async fn argon2_verify_ms() -> Result<f64> {
    let config = shared::config::Config::from_env()?;
    let hasher = shared::security::PasswordHasher::new(config.argon2)?;
    let password = shared::domain::Password::candidate("Correct-Horse-Battery-9!")
        .map_err(anyhow::Error::msg)?;
    let hash = hasher.hash(&password).await?;
    let rounds = 10;
    let started = Instant::now();
    for _ in 0..rounds {
        hasher.verify(&password, Some(&hash)).await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e3 / f64::from(rounds))
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/um_bench", "um_pgbench"),
            "postgres://u@127.0.0.1:5432/um_pgbench"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
