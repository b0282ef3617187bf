//! Developer commands.
//!
//! - `cargo xtask dev`: the whole API on 127.0.0.1:3000; a throwaway
//!   PostgreSQL under `target/` when `DATABASE_URL` is not set.
//! - `cargo xtask test`: starts what the tests need, then fmt, clippy, the
//!   sqlx offline check, the whole suite and schemathesis.
//! - `cargo xtask seed | bench | load`: performance and reliability runs
//!   (see `perf/`).
//! - `cargo xtask watch | invoke`: the Lambda developer's path (`lambda.rs`).
//! - `cargo xtask openapi`: rewrites `openapi.json` from the handlers.
//! - `cargo xtask template`: rewrites `template.yaml`'s routes from `openapi.json`.

mod bench;
mod browser;
mod checks;
mod lambda;
mod perf;
mod template;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use xtask::services::{Postgres, ensure_moto, ensure_redis};

const USAGE: &str =
    "usage: cargo xtask <dev | watch | invoke | test | seed | load | bench | openapi | template>

  dev    run the API locally on 127.0.0.1:3000 (BIND_ADDR to change);
         uses DATABASE_URL, or starts a throwaway PostgreSQL under target/
  watch  [-P 9000] cargo lambda watch on 127.0.0.1 with every route at its
         real path; the database as for dev, migrated, a development
         signing key unless JWT_PRIVATE_KEY_PEM is set, mail to the outbox
  invoke <auth | users | admin | cleanup> <event.json>  one event (see
         events/) through the function's release binary under the Runtime
         API emulator; prints the answer (sam local invoke without Docker)
  test   start PostgreSQL and Redis if needed, then fmt --check, clippy,
         the sqlx offline check, the whole test suite and schemathesis
  seed   [--users N] [--cleanup-backlog] fill DATABASE_URL (default: the
         um_bench database) with realistic data generated in SQL; tops up
  load   [--connections 64] [--seconds 120] mixed workload against a local
         server on a fresh database, then a consistency audit
  bench  seed 1M users if needed, run every benchmark, write BENCHMARKS.md
  openapi  regenerate openapi.json from the code
  template regenerate template.yaml's routes from openapi.json";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "help")
    {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = match args.first().map(String::as_str) {
        Some("dev") => dev(),
        Some("watch") => lambda::watch(&args[1..]),
        Some("invoke") => lambda::invoke(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("seed") => perf::seed(&args[1..]),
        Some("load") => perf::load(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("openapi") => openapi(),
        Some("template") => template::generate(&root()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

pub(crate) fn cargo() -> Command {
    tool(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `program`, run in the workspace root without the variables `cargo run`
/// set for xtask itself: cargo subcommands such as cargo-machete read them as
/// "run directly" and misparse their arguments, and build scripts that watch
/// them (ring's watches `CARGO_MANIFEST_DIR`) would rebuild half the tree
/// for a build started from here (`sam build`, too).
pub(crate) fn tool(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_MANIFEST_") {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

/// The steps `run` ran, with their wall time (for the closing summary).
static STEPS: std::sync::Mutex<Vec<(String, std::time::Duration, bool)>> =
    std::sync::Mutex::new(Vec::new());

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<()> {
    step(what, || {
        let status = cmd.status().with_context(|| format!("starting {what}"))?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
        Ok(())
    })
}

/// Prints each step with its time, the test counts from nextest's JUnit
/// report, and the total.
fn summary(started: std::time::Instant, junit: &std::path::Path) {
    eprintln!("\n==> summary");
    if let Ok(steps) = STEPS.lock() {
        for (what, took, ok) in steps.iter() {
            let mark = if *ok { "ok  " } else { "FAIL" };
            eprintln!("    {mark} {:>7.1} s  {what}", took.as_secs_f64());
        }
    }
    if let Ok(xml) = std::fs::read_to_string(junit) {
        let attr = |name: &str| {
            xml.split_once(&format!(" {name}=\""))
                .and_then(|(_, rest)| rest.split('"').next())
                .unwrap_or("?")
                .to_string()
        };
        eprintln!(
            "    tests: {} run, {} failed, {} errors (nextest, {})",
            attr("tests"),
            attr("failures"),
            attr("errors"),
            junit.display()
        );
    }
    eprintln!(
        "    total: {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
}

/// `DATABASE_URL`, or the throwaway cluster under `target/dev-postgres`
/// (port 54329) that `dev`, `watch` and `invoke` share; stop it when done.
pub(crate) fn dev_database() -> Result<(String, Option<Postgres>)> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok((url, None)),
        _ => {
            let pg = Postgres::start_throwaway(&perf::target_dir().join("dev-postgres"), 54329)?;
            Ok((pg.url("postgres"), Some(pg)))
        }
    }
}

/// `cargo run` of the `local` binary (debug build) with `args`: the server,
/// or one of its modes (`--print-openapi`, `--migrate`, `--dev-key PATH`).
pub(crate) fn local(args: &[&str]) -> Command {
    let mut cmd = cargo();
    cmd.args(["run", "--package", "shared", "--bin", "local", "--"])
        .args(args)
        .env("SQLX_OFFLINE", "true");
    cmd
}

fn dev() -> Result<()> {
    // Ctrl-C reaches the server too (same process group); xtask lives on to
    // stop the database it started.
    ctrlc::set_handler(|| eprintln!("\nstopping…")).context("installing the Ctrl-C handler")?;
    let (url, pg) = dev_database()?;
    // The browser sample on a second origin, allowed by CORS.
    let page = browser::serve_page(3001)?;
    let origins = match std::env::var("CORS_ALLOWED_ORIGINS") {
        Ok(more) if !more.is_empty() => format!("{page},{more}"),
        _ => page.clone(),
    };
    eprintln!("==> building and starting the local server (DATABASE_URL={url})");
    eprintln!("==> the browser sample: open {page}/ (API on http://127.0.0.1:3000)");
    let status = local(&[])
        .env("DATABASE_URL", &url)
        .env("CORS_ALLOWED_ORIGINS", &origins)
        .status();
    if let Some(pg) = pg {
        pg.stop();
    }
    let status = status.context("running the local server")?;
    // 130: interrupted by Ctrl-C, the normal way to stop it.
    if !status.success() && status.code() != Some(130) && status.code().is_some() {
        bail!("the local server exited with {status}");
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    let started = std::time::Instant::now();
    // nextest keeps its reports under the workspace's target/, whatever
    // CARGO_TARGET_DIR says.
    let junit = root().join("target/nextest/ci/junit.xml");
    let result = test_steps(extra);
    summary(started, &junit);
    result
}

fn test_steps(extra: &[String]) -> Result<()> {
    let postgres = Postgres::ensure_running()?;
    let database_url = postgres.url("postgres");
    let redis_url = ensure_redis()?;
    let moto_url = ensure_moto()?;

    run(
        cargo().args(["fmt", "--all", "--check"]),
        "cargo fmt --check",
    )?;
    run(
        cargo()
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
            .env("SQLX_OFFLINE", "true"),
        "cargo clippy -D warnings",
    )?;
    // Unused dependencies, and licences, bans and sources (deny.toml); both
    // work offline. The advisory check needs the network: a manual step.
    checks::install_cargo_tool(
        "machete",
        &["cargo-machete", "--version", "0.9.2", "--locked"],
    )?;
    run(cargo().arg("machete"), "cargo machete")?;
    checks::install_cargo_tool("deny", &["cargo-deny", "--version", "0.20.2", "--locked"])?;
    run(
        cargo().args(["deny", "check", "licenses", "bans", "sources"]),
        "cargo deny check licenses bans sources",
    )?;
    checks::sqlx_offline_check(&postgres)?;
    checks::lint_template()?;
    lambda::ensure_cargo_lambda()?;
    checks::readme_commands()?;

    checks::install_cargo_tool("nextest", &["cargo-nextest", "--locked"])?;
    // Schemathesis runs against the release local server; the emulator tests
    // run the functions as cargo-lambda builds them for Lambda (`sam build`
    // later finds them built).
    perf::build_release(&[])?;
    lambda::build_functions(&[])?;
    let mut nextest = cargo();
    nextest
        .args([
            "nextest",
            "run",
            "--workspace",
            "--all-targets",
            "--no-fail-fast",
            // All tests, the slow group included (.config/nextest.toml).
            "--profile",
            "ci",
        ])
        .args(extra)
        .env("SQLX_OFFLINE", "true")
        .env("DATABASE_URL", &database_url)
        .env("REDIS_URL", &redis_url)
        .env("LAMBDA_BIN_DIR", lambda::release_dir())
        .env("MOTO_URL", &moto_url);
    run(&mut nextest, "cargo nextest run (the whole suite)")?;
    step("cargo lambda watch walk-through", || {
        lambda::walk_through(&postgres)
    })?;
    lambda::sam_build()?;
    perf::schemathesis(&postgres, &redis_url)?;
    step("browser sample in headless Chromium", || {
        browser::end_to_end(&postgres, &redis_url)
    })
}

/// Runs `body` as a step of the summary.
pub(crate) fn step(what: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("==> {what}");
    let started = std::time::Instant::now();
    let outcome = body();
    if let Ok(mut steps) = STEPS.lock() {
        steps.push((what.to_string(), started.elapsed(), outcome.is_ok()));
    }
    outcome
}

fn openapi() -> Result<()> {
    let output = local(&["--print-openapi"])
        .output()
        .context("running the local binary")?;
    if !output.status.success() {
        bail!(
            "generating the document failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::write(root().join("openapi.json"), &output.stdout).context("writing openapi.json")?;
    eprintln!("==> wrote openapi.json");
    Ok(())
}

/// `true` when `program --version` runs and succeeds.
pub(crate) fn answers(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `pip install --quiet packages` (the Python tools CI needs).
pub(crate) fn pip_install(packages: &[&str]) -> Result<()> {
    run(
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(packages),
        &format!("installing {} (PyPI)", packages.join(", ")),
    )
}
