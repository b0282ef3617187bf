//! `cargo xtask bench`: every benchmark on a seeded `um_bench` database,
//! written into the generated part of BENCHMARKS.md.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::perf::{
    LIFTED_LIMITS, LocalServer, build_release, existing_database, flag, output, perf_bin, psql_on,
    target_dir,
};
use crate::{cargo, root};
use xtask::services::{Postgres, ensure_redis};

/// `cargo xtask bench [--users N] [--seconds S]`: seeds (or tops up) the
/// `um_bench` database, runs every benchmark and rewrites the measured part
/// of BENCHMARKS.md (the hand-written capacity section below the marker is
/// kept).
pub fn bench(args: &[String]) -> Result<()> {
    let pg = Postgres::ensure_running()?;
    let redis = ensure_redis()?;
    ensure_wrk();
    build_release(&["coldstart"])?;
    // The function binaries as they ship (what `sam build` packages).
    crate::lambda::build_functions(&[])?;
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
            .env("LAMBDA_BIN_DIR", crate::lambda::release_dir()),
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

/// The Lambda binaries' sizes as they ship (`cargo lambda build --release`)
/// against the issue's goal (stripped, < 10 MB).
fn binary_sizes(bins: &[&str]) -> String {
    const GOAL: u64 = 10_000_000;
    let mut out = String::from(
        "| Lambda binary (stripped, `cargo lambda build --release`) | bytes | goal | |\n|---|---|---|---|\n",
    );
    for bin in bins {
        let path = crate::lambda::release_dir().join(bin).join("bootstrap");
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
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
