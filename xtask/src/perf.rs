//! `seed`, `load`, `bench` and the schemathesis run: the local server (release
//! build) against a database of its own, driven by the `perf` binary or by
//! schemathesis.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};
use xtask::services::{Postgres, ensure_redis};

/// Per-IP limits lifted: every request of a local run comes from 127.0.0.1.
pub const LIFTED_LIMITS: [(&str, &str); 4] = [
    ("RATE_LIMIT_PER_MINUTE", "10000000"),
    ("RATE_LIMIT_REGISTER_PER_MINUTE", "10000000"),
    ("RATE_LIMIT_LOGIN_PER_MINUTE", "10000000"),
    ("RATE_LIMIT_REFRESH_PER_MINUTE", "10000000"),
];

/// The target directory cargo builds into.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The value after `--name` in `args`.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Runs `psql -c sql` on the server's `postgres` database.
pub fn psql(pg: &Postgres, sql: &str) -> Result<()> {
    psql_on(&pg.url("postgres"), sql)
}

/// An empty database `name` (dropped first if it exists).
pub fn fresh_database(pg: &Postgres, name: &str) -> Result<String> {
    psql(pg, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
    psql(pg, &format!("CREATE DATABASE {name}"))?;
    Ok(pg.url(name))
}

/// Database `name`, created if missing (kept otherwise: seeds top it up).
pub fn existing_database(pg: &Postgres, name: &str) -> Result<String> {
    let exists = Command::new("psql")
        .arg(pg.url("postgres"))
        .args([
            "-Atc",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        ])
        .output()
        .context("running psql")?;
    if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
        psql(pg, &format!("CREATE DATABASE {name}"))?;
    }
    Ok(pg.url(name))
}

/// Builds release binaries: the local server, perf, and `bins`.
pub fn build_release(bins: &[&str]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--workspace"]);
    for bin in ["local", "perf"].iter().chain(bins) {
        cmd.args(["--bin", bin]);
    }
    cmd.env("SQLX_OFFLINE", "true");
    run(
        &mut cmd,
        &format!("building (release): local, perf {}", bins.join(" ")),
    )
}

/// The `perf` binary (release).
pub fn perf_bin() -> Command {
    let mut cmd = Command::new(target_dir().join("release/perf"));
    cmd.current_dir(root());
    cmd
}

/// The local server as a child process; killed when dropped.
pub struct LocalServer {
    child: Child,
    pub url: String,
}

impl LocalServer {
    /// Starts `target/release/local` on `port` against `database_url` and
    /// waits until `/v1/health` answers 200.
    pub fn start(database_url: &str, port: u16, env: &[(&str, &str)]) -> Result<Self> {
        let log_path = target_dir().join(format!("local-{port}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let outbox = target_dir().join(format!("outbox-{port}"));
        let mut cmd = Command::new(target_dir().join("release/local"));
        cmd.env("DATABASE_URL", database_url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("MAIL_OUTBOX_DIR", &outbox)
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting the local server")?;
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if health(port) == Some(200) {
                eprintln!("==> local server up on {}", server.url);
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "the local server did not become healthy within 60 s (log: {})",
            log_path.display()
        )
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `GET /v1/health` on 127.0.0.1:`port`, if it answers.
fn health(port: u16) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `cargo xtask seed [--users N] [--cleanup-backlog]`: DATABASE_URL, or the
/// `um_bench` database on the local server.
pub fn seed(args: &[String]) -> Result<()> {
    let pg = Postgres::ensure_running()?;
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => existing_database(&pg, "um_bench")?,
    };
    let mut cmd = cargo();
    cmd.args(["run", "--release", "-p", "perf", "--", "seed"])
        .args(args)
        .env("SQLX_OFFLINE", "true")
        .env("DATABASE_URL", &url);
    run(&mut cmd, &format!("seeding {url}"))
}

/// `cargo xtask load [--connections C] [--seconds S]`: the mixed workload
/// against a local server on a fresh `um_load` database, then the audit.
pub fn load(args: &[String]) -> Result<()> {
    let pg = Postgres::ensure_running()?;
    let redis = ensure_redis()?;
    build_release(&[])?;
    let url = fresh_database(&pg, "um_load")?;
    let mut env = LIFTED_LIMITS.to_vec();
    env.push(("REDIS_URL", &redis));
    let server = LocalServer::start(&url, 3901, &env)?;
    let report = target_dir().join("load-report.md");
    let status = perf_bin()
        .args(["load", "--url", &server.url])
        .args([
            "--connections",
            flag(args, "--connections").unwrap_or("64"),
            "--seconds",
            flag(args, "--seconds").unwrap_or("120"),
            "--out",
        ])
        .arg(&report)
        .env("DATABASE_URL", &url)
        .status()
        .context("running perf load")?;
    drop(server);
    if let Ok(text) = std::fs::read_to_string(&report) {
        println!("{text}");
    }
    if !status.success() {
        bail!(
            "the load run failed ({status}); report: {}",
            report.display()
        );
    }
    Ok(())
}

/// Runs `cmd`, returns its standard output (standard error passes through).
fn output(cmd: &mut Command, what: &str) -> Result<String> {
    eprintln!("==> {what}");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo xtask bench [--users N] [--seconds S]`: seeds (or tops up) the
/// `um_bench` database, runs every benchmark and rewrites the measured part
/// of BENCHMARKS.md (the hand-written capacity section below the marker is
/// kept).
pub fn bench(args: &[String]) -> Result<()> {
    let pg = Postgres::ensure_running()?;
    let redis = ensure_redis()?;
    ensure_wrk();
    build_release(&["auth", "users", "admin", "cleanup", "coldstart"])?;
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => existing_database(&pg, "um_bench")?,
    };
    let users = flag(args, "--users").unwrap_or("1000000");
    let seconds = flag(args, "--seconds").unwrap_or("10");
    let perf = |what: &[&str]| {
        let mut cmd = perf_bin();
        cmd.args(what).env("DATABASE_URL", &url);
        cmd
    };
    let started = Instant::now();
    let seed = output(&mut perf(&["seed", "--users", users]), "seeding")?;
    psql_on(&url, "SELECT pg_stat_reset()")?;
    let queries = output(
        &mut perf(&["queries", "--samples", "2000"]),
        "query classes",
    )?;

    let mut env = LIFTED_LIMITS.to_vec();
    env.push(("REDIS_URL", &redis));
    let server = LocalServer::start(&url, 3903, &env)?;
    let http = output(
        perf(&["http", "--url", &server.url, "--seconds", seconds])
            .args(["--label", "With Redis (rate limits counted in Redis)"]),
        "HTTP routes and the floors",
    )?;
    drop(server);
    // The same hot routes with the rate limits counted in PostgreSQL.
    let server = LocalServer::start(&url, 3904, &LIFTED_LIMITS)?;
    let http_pg = output(
        perf(&["http", "--url", &server.url, "--seconds", seconds]).args([
            "--routes",
            "GET /v1/users/me,POST /v1/auth/refresh",
            "--label",
            "Without Redis (rate limits counted in PostgreSQL)",
        ]),
        "the hot routes without Redis",
    )?;
    drop(server);
    let sizes = binary_sizes(&["auth", "users", "admin", "cleanup"]);
    let argon2 = output(
        cargo()
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "shared",
                "--example",
                "argon2_cost",
            ])
            .env("SQLX_OFFLINE", "true"),
        "the Argon2id cost",
    )?;
    let coldstart = output(
        Command::new(target_dir().join("release/coldstart"))
            .env("DATABASE_URL", &url)
            .env("LAMBDA_BIN_DIR", target_dir().join("release")),
        "cold starts, peak RSS, sizes",
    )?;
    let backlog = output(
        &mut perf(&["seed", "--users", users, "--cleanup-backlog"]),
        "seeding the cleanup backlog",
    )?;
    let cleanup = output(&mut perf(&["cleanup"]), "the cleanup job at scale")?;
    let indexes = output(&mut perf(&["indexes"]), "index usage")?;

    let path = root().join("BENCHMARKS.md");
    let kept = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| {
            text.split_once(CAPACITY_MARKER)
                .map(|(_, rest)| rest.to_string())
        })
        .unwrap_or_else(|| "\n## Capacity model\n\n(to be written)\n".into());
    let text = format!(
        "# Benchmarks\n\n\
         Measured by `cargo xtask bench --users {users} --seconds {seconds}` on {machine}, \
         {date}. Whole run: {total:.0} s. Everything below the capacity marker is generated.\n\n\
         ## Seed data\n\n```text\n{seed}```\n\n\
         ## 1. Query classes through the data layer\n\n{queries}\n\
         ## 2. HTTP against the local server (release build, production Argon2id)\n\n\
         Load generators (column `generator`): `wrk` (C, epoll, like pgbench; Lua script in \
         `perf/src/wrk.rs`) for the fixed-path reads, each request with the next of the \
         benchmark users' tokens; `perf` (this repository's hyper client, one request in flight \
         per connection, each connection its own user and token chain) for the rest. The \
         floors by pgbench in the same run. Access logs on (the default `info`, to /dev/null).\n\n{http}\n{http_pg}\n\
         {sizes}\n\
         Argon2id cost on this machine (`cargo run --release -p shared --example argon2_cost`):\n\n\
         ```text\n{argon2}```\n\n\
         ## 3. Lambda binaries under the Runtime API emulator\n\n{coldstart}\n\
         ## 4. Cleanup at scale\n\n```text\n{backlog}```\n\n{cleanup}\n\
         ## Index usage over the whole run (`pg_stat_user_indexes`, reset after seeding)\n\n{indexes}\n\
         {CAPACITY_MARKER}{kept}",
        machine = machine(),
        date = date(),
        total = started.elapsed().as_secs_f64(),
    );
    std::fs::write(&path, text).context("writing BENCHMARKS.md")?;
    eprintln!("==> wrote {}", path.display());
    Ok(())
}

/// wrk (Debian's package) drives the fixed-path reads; installed when
/// missing and possible, else `perf http` uses its own client and says so.
fn ensure_wrk() {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return;
    }
    eprintln!("==> installing wrk (apt-get)");
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-q", "wrk"])
        .stdout(Stdio::null())
        .status();
}

/// The Lambda binaries' sizes against the issue's goal (stripped, < 10 MB).
fn binary_sizes(bins: &[&str]) -> String {
    const GOAL: u64 = 10_000_000;
    let mut out =
        String::from("| Lambda binary (stripped) | bytes | goal | |\n|---|---|---|---|\n");
    for bin in bins {
        let size = std::fs::metadata(target_dir().join("release").join(bin)).map_or(0, |m| m.len());
        let met = if size > 0 && size < GOAL {
            "met"
        } else {
            "**missed**"
        };
        out.push_str(&format!("| {bin} | {size} | < 10,000,000 | {met} |\n"));
    }
    out
}

/// Where the generated part of BENCHMARKS.md ends.
const CAPACITY_MARKER: &str = "<!-- generated above; the capacity model below is kept -->";

/// Runs `psql -c sql` on the database at `url`.
fn psql_on(url: &str, sql: &str) -> Result<()> {
    let status = Command::new("psql")
        .arg(url)
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .context("running psql")?;
    if !status.success() {
        bail!("psql failed on: {sql}");
    }
    Ok(())
}

/// "2 cores (CPU model), N GiB, PostgreSQL x".
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let pg = Command::new("psql")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores ({model}), {gib:.0} GiB, {pg}")
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// schemathesis (PyPI) against the local server: every operation of
/// openapi.json, a bounded number of examples each, with an admin's token.
pub fn schemathesis(pg: &Postgres, redis_url: &str) -> Result<()> {
    if !crate::answers("schemathesis") {
        crate::pip_install(&["schemathesis==4.32.5"])?;
    }
    let url = fresh_database(pg, "um_schemathesis")?;
    let mut env = LIFTED_LIMITS.to_vec();
    env.push(("REDIS_URL", redis_url));
    let server = LocalServer::start(&url, 3902, &env)?;
    let examples = std::env::var("SCHEMATHESIS_MAX_EXAMPLES").unwrap_or_else(|_| "50".into());
    // The operations that can end the caller's own session or take its
    // admin role away (schemathesis links ids it has seen, its own among
    // them). Each runs in a pass of its own with a fresh token, so the main
    // pass keeps a working token throughout.
    let self_ending = [
        "revoke_session",
        "revoke_sessions",
        "update_user",
        "delete_user",
        "remove_role",
    ];
    let passes = std::iter::once(None).chain(self_ending.iter().map(Some));
    for only in passes {
        let pass = only.map_or("main", |id| id);
        let token = perf_bin()
            .args(["token", "--url", &server.url])
            .env("DATABASE_URL", &url)
            .output()
            .context("running perf token")?;
        if !token.status.success() {
            bail!(
                "getting an admin token failed: {}",
                String::from_utf8_lossy(&token.stderr)
            );
        }
        let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
        let report_dir = target_dir().join(format!("schemathesis-{pass}"));
        let mut cmd = Command::new("schemathesis");
        cmd.current_dir(root())
            .args(["run", "openapi.json", "--url", &server.url])
            .args(["--checks", "all"])
            .args(["--max-examples", &examples, "--seed", "20261128"])
            // One worker: CPython 3.11.7 (this machine's) raises "AST constructor
            // recursion depth mismatch" when two threads parse source at once
            // (hypothesis does, describing strategies), failing a pass at random.
            .args(["--workers", "1", "--request-timeout", "10"])
            .args(["--suppress-health-check", "all", "--no-color"])
            .arg("--header")
            .arg(format!("Authorization: Bearer {token}"))
            .args(["--report", "junit", "--report-dir"])
            .arg(&report_dir)
            .env("SCHEMATHESIS_TELEMETRY", "false");
        match only {
            // Alone, it has no links to follow: no stateful phase.
            Some(id) => cmd
                .args(["--include-operation-id", id])
                .args(["--phases", "coverage,fuzzing"]),
            None => self_ending
                .iter()
                .fold(&mut cmd, |cmd, id| cmd.args(["--exclude-operation-id", id])),
        };
        crate::run(&mut cmd, &format!("schemathesis ({pass} pass)")).with_context(|| {
            format!(
                "schemathesis found problems (report under {})",
                report_dir.display()
            )
        })?;
    }
    drop(server);
    Ok(())
}
