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

mod audit;
mod worker;

pub use audit::audit;
use worker::{Tally, Worker};

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
