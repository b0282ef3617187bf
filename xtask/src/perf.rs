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
pub fn output(cmd: &mut Command, what: &str) -> Result<String> {
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

/// Runs `psql -c sql` on the database at `url`.
pub fn psql_on(url: &str, sql: &str) -> Result<()> {
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
        let mut cmd = crate::tool("schemathesis");
        cmd.args(["run", "openapi.json", "--url", &server.url])
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
