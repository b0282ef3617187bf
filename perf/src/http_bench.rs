//! The HTTP benchmark: closed-loop connections (this crate's hyper client,
//! one request in flight per connection) against a running server on a
//! seeded database, one route at a time, each figure beside the floors of
//! [`crate::floor`] measured in the same run, with the CPU per request of
//! the server, the database and the load generator.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::client::Client;
use crate::cpu::{PerRequest, Sample};
use crate::floor::{self, Pgbench};
use crate::stats::Summary;

/// One route at one connection count.
#[derive(Debug, Clone)]
pub struct HttpRow {
    pub route: &'static str,
    pub connections: usize,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub latency: Summary,
    pub cpu: PerRequest,
    /// "wrk" or "perf" (this crate's client).
    pub generator: &'static str,
}

/// The figures and what they are measured against.
#[derive(Debug, Default)]
pub struct HttpReport {
    /// What the run was called (e.g. "Redis" or "no Redis").
    pub label: String,
    pub rows: Vec<HttpRow>,
    /// The read floor at each connection count.
    pub floors: Vec<Pgbench>,
    pub write_floor: Option<Pgbench>,
    pub rs256_sign_us: f64,
    pub argon2_verify_ms: f64,
}

/// What to run and against which server process.
#[derive(Debug, Clone)]
pub struct Plan {
    pub connection_counts: Vec<usize>,
    pub duration: Duration,
    /// Routes to run (their [`Scenario::route`] names); empty: all.
    pub routes: Vec<String>,
    /// Where the server runs, for its CPU time.
    pub server: crate::cpu::Server,
    /// Drive the fixed-path read routes with wrk ([`crate::wrk`]).
    pub wrk: bool,
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
                matches!(
                    client.status(Method::GET, "/v1/users/me", token).await,
                    Ok(200)
                )
            }
            Scenario::Search { token, terms } => {
                let term = &terms[n % terms.len()];
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("q", term)
                    .append_pair("limit", "20")
                    .finish();
                let path = format!("/v1/users?{query}");
                matches!(client.status(Method::GET, &path, token).await, Ok(200))
            }
            Scenario::AdminList { token } => matches!(
                client
                    .status(Method::GET, "/v1/admin/users?status=active&limit=20", token)
                    .await,
                Ok(200)
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
async fn drive(client: &Client, scenarios: Vec<Scenario>, plan: &Plan) -> Result<HttpRow> {
    let route = scenarios.first().map(Scenario::route).unwrap_or("?");
    let connections = scenarios.len();
    let duration = plan.duration;
    let before = Sample::take(&plan.server);
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
    let requests = samples.len() as u64;
    let cpu = before.per_request(&Sample::take(&plan.server), requests);
    Ok(HttpRow {
        route,
        connections,
        requests,
        errors,
        rps: requests as f64 / elapsed,
        latency: Summary::of(&mut samples),
        cpu,
        generator: "perf",
    })
}

/// One fixed-path GET route driven by wrk.
async fn drive_wrk(
    client: &Client,
    route: &'static str,
    path: &str,
    tokens: &[String],
    plan: &Plan,
    connections: usize,
) -> Result<HttpRow> {
    let before = Sample::take(&plan.server);
    let children = crate::cpu::children_seconds();
    let run = crate::wrk::get(client.base(), path, tokens, connections, plan.duration).await?;
    let mut cpu = before.per_request(&Sample::take(&plan.server), run.requests);
    // wrk has exited and been waited for: its CPU is in this process's
    // children's count.
    cpu.generator_us =
        (crate::cpu::children_seconds() - children) * 1e6 / run.requests.max(1) as f64;
    Ok(HttpRow {
        route,
        connections,
        requests: run.requests,
        errors: run.errors,
        rps: run.rps,
        latency: run.latency,
        cpu,
        generator: "wrk",
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

/// Every route of `plan` at each connection count, then the floors.
pub async fn run(
    client: &Client,
    pool: &PgPool,
    database_url: &str,
    plan: &Plan,
) -> Result<HttpReport> {
    let most = plan.connection_counts.iter().copied().max().unwrap_or(1);
    // Seeded accounts that may log in, one per connection.
    // (Seeded users share one precomputed hash of SEED_PASSWORD: the most
    // common hash in the table.)
    let logins: Vec<(String, uuid::Uuid)> = sqlx::query_as(
        "SELECT username, id FROM users
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
    for (name, _) in &logins {
        pairs.push(login(client, name, password).await?);
    }
    let wanted = |route: &str| plan.routes.is_empty() || plan.routes.iter().any(|r| r == route);

    let mut report = HttpReport::default();
    for &c in &plan.connection_counts {
        let scenarios: Vec<Vec<Scenario>> = vec![
            pairs[..c]
                .iter()
                .map(|p| field(p, "access_token").map(|token| Scenario::Me { token }))
                .collect::<Result<_>>()?,
            (0..c)
                .map(|_| Scenario::Search {
                    token: admin.clone(),
                    terms: terms.clone(),
                })
                .collect(),
            (0..c)
                .map(|_| Scenario::AdminList {
                    token: admin.clone(),
                })
                .collect(),
            logins[..c]
                .iter()
                .map(|(name, _)| Scenario::Login {
                    login: name.clone(),
                    password: password.to_string(),
                })
                .collect(),
        ];
        for group in scenarios {
            if group.first().is_some_and(|s| wanted(s.route())) {
                let row = match (plan.wrk, group.first()) {
                    (true, Some(Scenario::Me { .. })) => {
                        let tokens = group
                            .iter()
                            .filter_map(|s| match s {
                                Scenario::Me { token } => Some(token.clone()),
                                _ => None,
                            })
                            .collect::<Vec<_>>();
                        drive_wrk(client, "GET /v1/users/me", "/v1/users/me", &tokens, plan, c)
                            .await?
                    }
                    (true, Some(Scenario::AdminList { .. })) => {
                        let path = "/v1/admin/users?status=active&limit=20";
                        let tokens = [admin.clone()];
                        drive_wrk(client, "GET /v1/admin/users", path, &tokens, plan, c).await?
                    }
                    _ => drive(client, group, plan).await?,
                };
                report.rows.push(row);
            }
        }
        if wanted("POST /v1/auth/refresh") {
            // Fresh sessions: each connection rotates its own chain.
            let mut refresh = Vec::new();
            for (name, _) in &logins[..c] {
                let pair = login(client, name, password).await?;
                refresh.push(Scenario::Refresh {
                    refresh: field(&pair, "refresh_token")?,
                });
            }
            report.rows.push(drive(client, refresh, plan).await?);
        }
    }
    let ids: Vec<uuid::Uuid> = logins.iter().map(|(_, id)| *id).collect();
    for &c in &plan.connection_counts {
        report
            .floors
            .push(floor::read(database_url, &ids[..c], c, plan.duration).await?);
    }
    let clients = plan.connection_counts.first().copied().unwrap_or(32);
    report.write_floor = Some(floor::write(database_url, clients, plan.duration).await?);
    report.rs256_sign_us = floor::rs256_sign_us()?;
    report.argon2_verify_ms = floor::argon2_verify_ms().await?;
    Ok(report)
}
