//! The load and consistency harness (`cargo xtask load`).
//!
//! `connections` workers each drive their own account through a weighted mix
//! of register, login (right and wrong password), me, refresh (sometimes two
//! racing refreshes of one token), profile update, logout and the admin list,
//! for `duration`. Every answer is counted by operation and status. Then the
//! database is audited against the counts: the run's users, live sessions,
//! rotations, failure counters and audit rows must all agree with what the
//! clients were told. Any 5xx, unexpected status, answer without
//! `x-request-id` or disagreement fails the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use rand::Rng;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::client::{Client, Reply};
use crate::stats::{Summary, ms};

/// The password of every account the harness registers.
pub const LOAD_PASSWORD: &str = "Load-Harness-Passw0rd-Kestrel";

/// Consecutive wrong passwords a worker allows itself before logging in
/// properly (below the lockout threshold, so no account locks).
const MAX_FAILURES: i32 = 3;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub connections: usize,
    pub duration: Duration,
}

/// The operations of the mix, in report order.
const OPS: [&str; 9] = [
    "register",
    "login",
    "login_wrong_password",
    "me",
    "refresh",
    "refresh_race",
    "profile_update",
    "logout",
    "admin_list",
];

/// What the clients saw and what the database holds afterwards.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub run_id: String,
    pub connections: usize,
    pub elapsed: Duration,
    /// Operation → status → count.
    pub statuses: BTreeMap<&'static str, BTreeMap<u16, u64>>,
    pub latency: BTreeMap<&'static str, Summary>,
    pub unexpected: Vec<String>,
    pub missing_request_id: u64,
    pub transport_errors: u64,
    pub checks: Vec<Check>,
    /// Every account driven, with the failure count the server must hold.
    pub accounts: Vec<(Uuid, i32)>,
}

/// One consistency check: what the counts predict and what the database holds.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub expected: i64,
    pub found: i64,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.expected == self.found
    }
}

impl LoadReport {
    pub fn requests(&self) -> u64 {
        self.statuses.values().flat_map(|m| m.values()).sum()
    }

    pub fn count(&self, op: &str, status: u16) -> u64 {
        self.statuses
            .get(op)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }

    pub fn server_errors(&self) -> u64 {
        self.statuses
            .values()
            .flat_map(|m| m.iter())
            .filter(|(status, _)| **status >= 500)
            .map(|(_, n)| n)
            .sum()
    }

    /// No 5xx, nothing unexpected, every answer identified, every check agreeing.
    pub fn passed(&self) -> bool {
        self.server_errors() == 0
            && self.unexpected.is_empty()
            && self.missing_request_id == 0
            && self.transport_errors == 0
            && self.checks.iter().all(Check::ok)
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let secs = self.elapsed.as_secs_f64();
        let _ = writeln!(
            out,
            "Run `{}`: {} connections, {:.1} s, {} requests ({:.0} req/s), {} 5xx, \
             {} transport errors, {} answers without x-request-id.\n",
            self.run_id,
            self.connections,
            secs,
            self.requests(),
            self.requests() as f64 / secs.max(f64::EPSILON),
            self.server_errors(),
            self.transport_errors,
            self.missing_request_id
        );
        let _ = writeln!(out, "| operation | statuses | p50 ms | p99 ms |");
        let _ = writeln!(out, "|---|---|---|---|");
        for op in OPS {
            let Some(statuses) = self.statuses.get(op) else {
                continue;
            };
            let list: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
            let lat = self.latency.get(op).copied().unwrap_or_default();
            let _ = writeln!(
                out,
                "| {op} | {} | {} | {} |",
                list.join(", "),
                ms(lat.p50),
                ms(lat.p99)
            );
        }
        let _ = writeln!(out, "\n| consistency check | expected | found | ok |");
        let _ = writeln!(out, "|---|---|---|---|");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                c.name,
                c.expected,
                c.found,
                if c.ok() { "yes" } else { "**NO**" }
            );
        }
        for u in self.unexpected.iter().take(20) {
            let _ = writeln!(out, "- unexpected: {u}");
        }
        out
    }
}

/// Counts and samples of one worker, merged at the end.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<&'static str, BTreeMap<u16, u64>>,
    samples: BTreeMap<&'static str, Vec<Duration>>,
    unexpected: Vec<String>,
    missing_request_id: u64,
    transport_errors: u64,
}

/// An account a worker drives.
struct Account {
    id: Uuid,
    username: String,
    access: String,
    refresh: String,
    /// Wrong passwords since the last successful login, as the server must count them.
    failures: i32,
}

struct Worker {
    client: Client,
    run_id: String,
    index: usize,
    serial: u64,
    tally: Tally,
    accounts: Arc<Mutex<Vec<(Uuid, i32)>>>,
}

impl Worker {
    /// Sends one request, records status, latency and request id; `None` on
    /// a transport error.
    async fn call(
        &mut self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
        expect: &[u16],
    ) -> Option<Reply> {
        let started = Instant::now();
        let reply = self.client.call(method, path, body, bearer).await;
        let took = started.elapsed();
        match reply {
            Ok(reply) => {
                self.record(op, &reply, took, expect);
                Some(reply)
            }
            Err(err) => {
                self.tally.transport_errors += 1;
                self.tally
                    .unexpected
                    .push(format!("{op}: transport error {err}"));
                None
            }
        }
    }

    fn record(&mut self, op: &'static str, reply: &Reply, took: Duration, expect: &[u16]) {
        *self
            .tally
            .statuses
            .entry(op)
            .or_default()
            .entry(reply.status)
            .or_default() += 1;
        self.tally.samples.entry(op).or_default().push(took);
        if reply.request_id.is_none() {
            self.tally.missing_request_id += 1;
        }
        if !expect.contains(&reply.status) {
            self.tally.unexpected.push(format!(
                "{op}: {} {}",
                reply.status,
                reply.code().unwrap_or("")
            ));
        }
    }

    fn next_name(&mut self) -> String {
        self.serial += 1;
        format!("ld{}w{}n{}", self.run_id, self.index, self.serial)
    }

    /// Registers and logs in a new account.
    async fn new_account(&mut self) -> Option<Account> {
        let username = self.next_name();
        let body = json!({
            "username": username,
            "email": format!("{username}@load.example.com"),
            "password": LOAD_PASSWORD,
        });
        let reply = self
            .call(
                "register",
                Method::POST,
                "/v1/auth/register",
                Some(&body),
                None,
                &[201],
            )
            .await?;
        let id: Uuid = reply.str("id")?.parse().ok()?;
        let mut account = Account {
            id,
            username,
            access: String::new(),
            refresh: String::new(),
            failures: 0,
        };
        self.login(&mut account).await?;
        Some(account)
    }

    async fn login(&mut self, account: &mut Account) -> Option<()> {
        let body = json!({"login": account.username, "password": LOAD_PASSWORD});
        let reply = self
            .call(
                "login",
                Method::POST,
                "/v1/auth/login",
                Some(&body),
                None,
                &[200],
            )
            .await?;
        account.access = reply.str("access_token")?.to_string();
        account.refresh = reply.str("refresh_token")?.to_string();
        account.failures = 0;
        Some(())
    }

    async fn refresh(&mut self, account: &mut Account) -> Option<()> {
        let body = json!({"refresh_token": account.refresh});
        let reply = self
            .call(
                "refresh",
                Method::POST,
                "/v1/auth/refresh",
                Some(&body),
                None,
                &[200],
            )
            .await?;
        account.access = reply.str("access_token")?.to_string();
        account.refresh = reply.str("refresh_token")?.to_string();
        Some(())
    }

    /// Two refreshes of the same token at once: exactly one may win.
    async fn refresh_race(&mut self, account: &mut Account) -> Option<()> {
        let body = json!({"refresh_token": account.refresh});
        let started = Instant::now();
        let (a, b) = tokio::join!(
            self.client
                .call(Method::POST, "/v1/auth/refresh", Some(&body), None),
            self.client
                .call(Method::POST, "/v1/auth/refresh", Some(&body), None),
        );
        let took = started.elapsed();
        let mut winner = None;
        for reply in [a, b] {
            match reply {
                Ok(reply) => {
                    self.record("refresh_race", &reply, took, &[200, 401]);
                    if reply.status == 200 {
                        if winner.is_some() {
                            self.tally
                                .unexpected
                                .push("refresh_race: both refreshes of one token won".into());
                        }
                        winner = Some(reply);
                    }
                }
                Err(err) => {
                    self.tally.transport_errors += 1;
                    self.tally
                        .unexpected
                        .push(format!("refresh_race: transport error {err}"));
                }
            }
        }
        match winner {
            Some(reply) => {
                account.access = reply.str("access_token")?.to_string();
                account.refresh = reply.str("refresh_token")?.to_string();
                Some(())
            }
            None => {
                self.tally
                    .unexpected
                    .push("refresh_race: neither refresh won".into());
                None
            }
        }
    }

    /// One step of the mix for `account`; `admin` is the admin's access token.
    async fn step(&mut self, account: &mut Account, admin: &str) -> Option<()> {
        let roll = rand::thread_rng().gen_range(0..100);
        match roll {
            0..=34 => {
                self.call(
                    "me",
                    Method::GET,
                    "/v1/users/me",
                    None,
                    Some(&account.access.clone()),
                    &[200],
                )
                .await?;
            }
            35..=52 => self.refresh(account).await?,
            53..=54 => self.refresh_race(account).await?,
            55..=64 => {
                self.serial += 1;
                let body = json!({"first_name": format!("Name{}", self.serial)});
                self.call(
                    "profile_update",
                    Method::PATCH,
                    "/v1/users/me",
                    Some(&body),
                    Some(&account.access.clone()),
                    &[200],
                )
                .await?;
            }
            65..=72 => {
                if account.failures >= MAX_FAILURES {
                    return self.login(account).await;
                }
                let body = json!({"login": account.username, "password": "Not-The-Password-123"});
                self.call(
                    "login_wrong_password",
                    Method::POST,
                    "/v1/auth/login",
                    Some(&body),
                    None,
                    &[401],
                )
                .await?;
                account.failures += 1;
            }
            73..=80 => self.login(account).await?,
            81..=85 => {
                let body = json!({"refresh_token": account.refresh});
                self.call(
                    "logout",
                    Method::POST,
                    "/v1/auth/logout",
                    Some(&body),
                    None,
                    &[204],
                )
                .await?;
                self.login(account).await?;
            }
            86..=91 => {
                self.call(
                    "admin_list",
                    Method::GET,
                    "/v1/admin/users?limit=20",
                    None,
                    Some(admin),
                    &[200],
                )
                .await?;
            }
            _ => {
                self.retire(account);
                *account = self.new_account().await?;
            }
        }
        Some(())
    }

    /// A registered account given the built-in admin role, logged in again
    /// so its token carries the role.
    async fn make_admin(&mut self, pool: &PgPool) -> anyhow::Result<Account> {
        let mut admin = self.new_account().await.ok_or_else(|| {
            anyhow::anyhow!(
                "registering the admin account failed: {:?}",
                self.tally.unexpected
            )
        })?;
        sqlx::query(
            "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = 'admin'
             ON CONFLICT DO NOTHING",
        )
        .bind(admin.id)
        .execute(pool)
        .await?;
        self.login(&mut admin)
            .await
            .ok_or_else(|| anyhow::anyhow!("the admin's login failed"))?;
        Ok(admin)
    }

    /// Remembers an account's final failure count for the audit.
    fn retire(&self, account: &Account) {
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.push((account.id, account.failures));
        }
    }
}

/// Registers an account, gives it the built-in admin role and returns its
/// access token.
pub async fn admin_token(client: &Client, pool: &PgPool) -> anyhow::Result<String> {
    let mut worker = Worker {
        client: client.clone(),
        run_id: format!("{:08x}", rand::thread_rng().r#gen::<u32>()),
        index: 0,
        serial: 0,
        tally: Tally::default(),
        accounts: Arc::new(Mutex::new(Vec::new())),
    };
    let admin = worker.make_admin(pool).await?;
    Ok(admin.access)
}

/// Runs the mix against `client` for `opts.duration`, then audits `pool`
/// (the database the server writes to).
pub async fn run(client: &Client, pool: &PgPool, opts: &LoadOptions) -> anyhow::Result<LoadReport> {
    let run_id = format!("{:08x}", rand::thread_rng().r#gen::<u32>());
    let started = Instant::now();
    let accounts = Arc::new(Mutex::new(Vec::new()));
    let mut setup = Worker {
        client: client.clone(),
        run_id: run_id.clone(),
        index: 0,
        serial: 0,
        tally: Tally::default(),
        accounts: accounts.clone(),
    };
    let admin = setup.make_admin(pool).await?;
    setup.retire(&admin);
    let admin_token = Arc::new(admin.access.clone());

    let deadline = started + opts.duration;
    let mut handles = Vec::new();
    for index in 1..=opts.connections {
        let mut worker = Worker {
            client: client.clone(),
            run_id: run_id.clone(),
            index,
            serial: 0,
            tally: Tally::default(),
            accounts: accounts.clone(),
        };
        let admin_token = admin_token.clone();
        handles.push(tokio::spawn(async move {
            let mut account = None;
            while Instant::now() < deadline {
                match account.as_mut() {
                    None => account = worker.new_account().await,
                    Some(acc) => {
                        if worker.step(acc, &admin_token).await.is_none() {
                            // The account's tokens are in an unknown state: keep its
                            // count and start over with a fresh one.
                            worker.retire(acc);
                            account = None;
                        }
                    }
                }
            }
            if let Some(acc) = &account {
                worker.retire(acc);
            }
            worker.tally
        }));
    }
    let mut tallies = vec![setup.tally];
    for handle in handles {
        tallies.push(handle.await?);
    }
    let elapsed = started.elapsed();

    let mut report = LoadReport {
        run_id: run_id.clone(),
        connections: opts.connections,
        elapsed,
        ..Default::default()
    };
    let mut samples: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    for tally in tallies {
        for (op, statuses) in tally.statuses {
            for (status, n) in statuses {
                *report
                    .statuses
                    .entry(op)
                    .or_default()
                    .entry(status)
                    .or_default() += n;
            }
        }
        for (op, mut s) in tally.samples {
            samples.entry(op).or_default().append(&mut s);
        }
        report.unexpected.extend(tally.unexpected);
        report.missing_request_id += tally.missing_request_id;
        report.transport_errors += tally.transport_errors;
    }
    for (op, mut s) in samples {
        report.latency.insert(op, Summary::of(&mut s));
    }
    report.accounts = accounts.lock().map(|a| a.clone()).unwrap_or_default();
    report.checks = audit(pool, &report).await?;
    Ok(report)
}

/// Compares the database with what the clients were told.
pub async fn audit(pool: &PgPool, report: &LoadReport) -> anyhow::Result<Vec<Check>> {
    let pattern = format!("ld{}w%", report.run_id);
    let count = |op: &str, status: u16| report.count(op, status) as i64;
    let race_wins = count("refresh_race", 200);
    let logins = count("login", 200);
    let mut checks = Vec::new();
    let scalar = |sql: &'static str| {
        let pattern = pattern.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(pattern)
                .fetch_one(pool)
                .await
        }
    };

    checks.push(Check {
        name: "users created = 201s",
        expected: count("register", 201),
        found: scalar("SELECT count(*) FROM users WHERE username LIKE $1").await?,
    });
    checks.push(Check {
        name: "rotated tokens = successful refreshes",
        expected: count("refresh", 200) + race_wins,
        found: scalar(
            "SELECT count(*) FROM refresh_tokens t JOIN users u ON u.id = t.user_id
             WHERE u.username LIKE $1 AND t.replaced_by IS NOT NULL",
        )
        .await?,
    });
    checks.push(Check {
        name: "rotations whose successor is missing or in another session",
        expected: 0,
        found: scalar(
            "SELECT count(*) FROM refresh_tokens t JOIN users u ON u.id = t.user_id
             LEFT JOIN refresh_tokens s ON s.id = t.replaced_by
             WHERE u.username LIKE $1 AND t.replaced_by IS NOT NULL
               AND (s.id IS NULL OR s.session_id <> t.session_id)",
        )
        .await?,
    });
    checks.push(Check {
        name: "sessions with two live tokens",
        expected: 0,
        found: scalar(
            "SELECT count(*) FROM (
                 SELECT t.session_id FROM refresh_tokens t JOIN users u ON u.id = t.user_id
                 WHERE u.username LIKE $1 AND t.revoked_at IS NULL
                 GROUP BY t.session_id HAVING count(*) > 1) s",
        )
        .await?,
    });
    checks.push(Check {
        name: "live sessions = logins - logouts",
        expected: logins - count("logout", 204),
        found: scalar(
            "SELECT count(*) FROM refresh_tokens t JOIN users u ON u.id = t.user_id
             WHERE u.username LIKE $1 AND t.revoked_at IS NULL AND t.expires_at > now()",
        )
        .await?,
    });
    let mut mismatched = 0;
    for (id, failures) in &report.accounts {
        let stored: Option<i32> =
            sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
        if stored != Some(*failures) {
            mismatched += 1;
        }
    }
    checks.push(Check {
        name: "accounts whose failed_login_attempts differs from the failures counted",
        expected: 0,
        found: mismatched,
    });
    for (action, expected) in [
        ("user_registered", count("register", 201)),
        ("login_succeeded", logins),
        ("login_failed", count("login_wrong_password", 401)),
        ("token_refreshed", count("refresh", 200) + race_wins),
        ("logout", count("logout", 204)),
        ("profile_updated", count("profile_update", 200)),
    ] {
        let found: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_logs a JOIN users u ON u.id = a.user_id
             WHERE u.username LIKE $1 AND a.action = $2::audit_action",
        )
        .bind(&pattern)
        .bind(action)
        .fetch_one(pool)
        .await?;
        checks.push(Check {
            name: match action {
                "user_registered" => "audit rows user_registered = 201s",
                "login_succeeded" => "audit rows login_succeeded = logins",
                "login_failed" => "audit rows login_failed = wrong passwords",
                "token_refreshed" => "audit rows token_refreshed = refreshes",
                "logout" => "audit rows logout = logouts",
                _ => "audit rows profile_updated = profile updates",
            },
            expected,
            found,
        });
    }
    Ok(checks)
}
