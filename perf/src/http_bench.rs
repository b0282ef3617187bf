//! The HTTP benchmark: closed-loop connections against a running server on
//! a seeded database, one route at a time, and the database floor for
//! `GET /v1/users/me` measured with `pgbench` running the same queries.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::client::Client;
use crate::stats::{Summary, ms};

/// One route at one connection count.
#[derive(Debug, Clone)]
pub struct HttpRow {
    pub route: &'static str,
    pub connections: usize,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub latency: Summary,
}

/// `pgbench` running `/v1/users/me`'s queries.
#[derive(Debug, Clone)]
pub struct Floor {
    pub connections: usize,
    pub tps: f64,
    pub latency_avg_ms: f64,
}

#[derive(Debug, Default)]
pub struct HttpReport {
    pub rows: Vec<HttpRow>,
    pub floors: Vec<Floor>,
}

/// What one connection sends, with the state it carries between requests.
#[derive(Clone)]
enum Scenario {
    Me { token: String },
    Search { token: String, terms: Vec<String> },
    AdminList { token: String },
    Refresh { refresh: String },
    Login { login: String, password: String },
}

impl Scenario {
    fn route(&self) -> &'static str {
        match self {
            Scenario::Me { .. } => "GET /v1/users/me",
            Scenario::Search { .. } => "GET /v1/users?q=",
            Scenario::AdminList { .. } => "GET /v1/admin/users",
            Scenario::Refresh { .. } => "POST /v1/auth/refresh",
            Scenario::Login { .. } => "POST /v1/auth/login",
        }
    }

    /// Sends one request; `true` when it answered as expected.
    async fn once(&mut self, client: &Client, n: usize) -> bool {
        match self {
            Scenario::Me { token } => {
                matches!(client.call(Method::GET, "/v1/users/me", None, Some(token)).await,
                    Ok(r) if r.status == 200)
            }
            Scenario::Search { token, terms } => {
                let term = &terms[n % terms.len()];
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("q", term)
                    .append_pair("limit", "20")
                    .finish();
                let path = format!("/v1/users?{query}");
                matches!(client.call(Method::GET, &path, None, Some(token)).await,
                    Ok(r) if r.status == 200)
            }
            Scenario::AdminList { token } => matches!(
                client
                    .call(Method::GET, "/v1/admin/users?status=active&limit=20", None, Some(token))
                    .await,
                Ok(r) if r.status == 200
            ),
            Scenario::Refresh { refresh } => {
                let body = json!({"refresh_token": refresh});
                match client
                    .call(Method::POST, "/v1/auth/refresh", Some(&body), None)
                    .await
                {
                    Ok(r) if r.status == 200 => match r.str("refresh_token") {
                        Some(next) => {
                            *refresh = next.to_string();
                            true
                        }
                        None => false,
                    },
                    _ => false,
                }
            }
            Scenario::Login { login, password } => {
                let body = json!({"login": login, "password": password});
                matches!(client.call(Method::POST, "/v1/auth/login", Some(&body), None).await,
                    Ok(r) if r.status == 200)
            }
        }
    }
}

/// Runs one scenario per connection for `duration`.
async fn drive(client: &Client, scenarios: Vec<Scenario>, duration: Duration) -> Result<HttpRow> {
    let route = scenarios.first().map(Scenario::route).unwrap_or("?");
    let connections = scenarios.len();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for (i, mut scenario) in scenarios.into_iter().enumerate() {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0u64;
            let mut n = i;
            while Instant::now() < deadline {
                let t = Instant::now();
                if !scenario.once(&client, n).await {
                    errors += 1;
                }
                samples.push(t.elapsed());
                n += 7;
            }
            (samples, errors)
        }));
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut s, e) = task.await?;
        samples.append(&mut s);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(HttpRow {
        route,
        connections,
        requests: samples.len() as u64,
        errors,
        rps: samples.len() as f64 / elapsed,
        latency: Summary::of(&mut samples),
    })
}

/// Logs in as `login` and returns the token pair.
async fn login(client: &Client, login: &str, password: &str) -> Result<Value> {
    let body = json!({"login": login, "password": password});
    let reply = client
        .call(Method::POST, "/v1/auth/login", Some(&body), None)
        .await?;
    if reply.status != 200 {
        bail!(
            "login as {login} answered {}: {:?}",
            reply.status,
            reply.body
        );
    }
    Ok(reply.body)
}

fn field(pair: &Value, name: &str) -> Result<String> {
    pair.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("the token pair has no {name}"))
}

/// Every route at each connection count, `duration` each.
pub async fn run(
    client: &Client,
    pool: &PgPool,
    connection_counts: &[usize],
    duration: Duration,
) -> Result<HttpReport> {
    let most = connection_counts.iter().copied().max().unwrap_or(1);
    // Seeded accounts that may log in, one per connection.
    // (Seeded users share one precomputed hash of SEED_PASSWORD: the most
    // common hash in the table.)
    let logins: Vec<String> = sqlx::query_scalar(
        "SELECT username FROM users
         WHERE status = 'active' AND deleted_at IS NULL AND locked_until IS NULL
           AND password_hash = (SELECT password_hash FROM users
                                GROUP BY 1 ORDER BY count(*) DESC LIMIT 1)
         ORDER BY random() LIMIT $1",
    )
    .bind(most as i64)
    .fetch_all(pool)
    .await?;
    if logins.len() < most {
        bail!(
            "the database has too few seeded active users ({})",
            logins.len()
        );
    }
    let terms: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT last_name FROM (
             SELECT last_name FROM users WHERE last_name IS NOT NULL LIMIT 5000) s
         LIMIT 64",
    )
    .fetch_all(pool)
    .await?;
    if terms.is_empty() {
        bail!("no last names to search for");
    }
    let admin = crate::load::admin_token(client, pool).await?;
    let password = crate::seed::SEED_PASSWORD;
    let mut pairs = Vec::new();
    for name in &logins {
        pairs.push(login(client, name, password).await?);
    }

    let mut report = HttpReport::default();
    for &c in connection_counts {
        let me: Vec<Scenario> = pairs[..c]
            .iter()
            .map(|p| field(p, "access_token").map(|token| Scenario::Me { token }))
            .collect::<Result<_>>()?;
        report.rows.push(drive(client, me, duration).await?);
        let search = (0..c)
            .map(|_| Scenario::Search {
                token: admin.clone(),
                terms: terms.clone(),
            })
            .collect();
        report.rows.push(drive(client, search, duration).await?);
        let list = (0..c)
            .map(|_| Scenario::AdminList {
                token: admin.clone(),
            })
            .collect();
        report.rows.push(drive(client, list, duration).await?);
        // Fresh sessions: each connection rotates its own chain.
        let mut refresh = Vec::new();
        for name in &logins[..c] {
            let pair = login(client, name, password).await?;
            refresh.push(Scenario::Refresh {
                refresh: field(&pair, "refresh_token")?,
            });
        }
        report.rows.push(drive(client, refresh, duration).await?);
        let logins: Vec<Scenario> = logins[..c]
            .iter()
            .map(|name| Scenario::Login {
                login: name.clone(),
                password: password.to_string(),
            })
            .collect();
        report.rows.push(drive(client, logins, duration).await?);
    }
    Ok(report)
}

/// The script pgbench runs: `/v1/users/me`'s two statements (the caller's
/// status, permissions and session, then the user row; the very SQL of
/// `users::caller` and `users::find_by_id`) for a random seeded id among
/// `ids`.
fn me_script(ids: i64) -> String {
    let id = "(SELECT id FROM bench_ids WHERE n = :n)";
    let caller = shared::db::users::CALLER_SQL
        .replace("$1", id)
        .replace("$2", "'00000000-0000-0000-0000-000000000000'::uuid");
    let user = shared::db::users::FIND_BY_ID_SQL.replace("$1", id);
    format!(
        "\\set n random(1, {ids})\n{};\n{};\n",
        caller.trim(),
        user.trim()
    )
}

/// `pgbench` with [`me_script`] at each connection count (prepared
/// statements, as sqlx uses them).
pub async fn floor(
    pool: &PgPool,
    database_url: &str,
    connection_counts: &[usize],
    duration: Duration,
) -> Result<Vec<Floor>> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_ids AS
         SELECT row_number() OVER () AS n, id FROM (
             SELECT id FROM users WHERE deleted_at IS NULL AND status = 'active'
             ORDER BY id LIMIT 100000) s",
    )
    .execute(pool)
    .await?;
    sqlx::query("CREATE UNIQUE INDEX IF NOT EXISTS bench_ids_n ON bench_ids (n)")
        .execute(pool)
        .await?;
    let ids: i64 = sqlx::query_scalar("SELECT count(*) FROM bench_ids")
        .fetch_one(pool)
        .await?;
    if ids == 0 {
        bail!("no active users to look up");
    }
    let script = std::env::temp_dir().join(format!("um-me-{}.pgbench.sql", std::process::id()));
    std::fs::write(&script, me_script(ids))?;
    let mut floors = Vec::new();
    for &c in connection_counts {
        let out = tokio::process::Command::new("pgbench")
            .args(["-n", "-M", "prepared", "-j", "2"])
            .arg(format!("-c{c}"))
            .arg(format!("-T{}", duration.as_secs().max(1)))
            .arg("-f")
            .arg(&script)
            .arg(database_url)
            .output()
            .await
            .context("running pgbench (PostgreSQL's client tools)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "pgbench failed: {}{}",
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let number_after = |prefix: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        };
        floors.push(Floor {
            connections: c,
            tps: number_after("tps = ").context("pgbench printed no tps")?,
            latency_avg_ms: number_after("latency average = ").unwrap_or(0.0),
        });
    }
    Ok(floors)
}

impl HttpReport {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| route | connections | requests | req/s | p50 ms | p99 ms | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {} |",
                r.route,
                r.connections,
                r.requests,
                r.rps,
                ms(r.latency.p50),
                ms(r.latency.p99),
                r.errors
            );
        }
        if !self.floors.is_empty() {
            let _ = writeln!(
                out,
                "\n| `GET /v1/users/me` vs the database floor | connections | API req/s | pgbench tx/s (same 2 queries) | pgbench latency avg ms | API / floor |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            for f in &self.floors {
                let api = self
                    .rows
                    .iter()
                    .find(|r| r.route == "GET /v1/users/me" && r.connections == f.connections)
                    .map_or(0.0, |r| r.rps);
                let _ = writeln!(
                    out,
                    "| | {} | {:.0} | {:.0} | {:.2} | {:.0} % |",
                    f.connections,
                    api,
                    f.tps,
                    f.latency_avg_ms,
                    100.0 * api / f.tps.max(f64::EPSILON)
                );
            }
        }
        out
    }
}
