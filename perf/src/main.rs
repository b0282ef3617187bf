//! `perf`: seed, benchmark and load the API (run through `cargo xtask`).
//!
//! ```text
//! perf seed --users N [--cleanup-backlog]     DATABASE_URL: the database to fill
//! perf queries --samples N [--out FILE]       query classes through the data layer
//! perf cleanup [--out FILE]                   the cleanup job at scale
//! perf http --url URL [--seconds S] [--routes R1,R2] [--label L] [--server-process NAME] [--no-wrk]
//!                                             HTTP routes at 32 and 64 connections, the floors
//! perf indexes                              pg_stat_user_indexes as a table
//! perf token --url URL                      register an admin, print its access token
//! perf load --url URL --connections C --seconds S [--out FILE]
//!                                             mixed workload + consistency audit
//! ```

use std::process::ExitCode;

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("perf: starting the runtime failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(std::env::args().skip(1).collect())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("perf: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The value after `--name`, if given.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match flag(args, name) {
        None => Ok(default),
        Some(v) => v
            .replace('_', "")
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} wants a number, got {v:?}")),
    }
}

async fn pool() -> Result<sqlx::PgPool> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .context("connecting to DATABASE_URL")
}

fn write_out(args: &[String], text: &str) -> Result<()> {
    match flag(args, "--out") {
        Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {path}")),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

async fn run(args: Vec<String>) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("seed") => {
            let pool = pool().await?;
            shared::db::MIGRATOR
                .run(&pool)
                .await
                .context("applying migrations")?;
            let opts = perf::seed::SeedOptions {
                users: number(&args, "--users", 1_000_000)?,
                cleanup_backlog: args.iter().any(|a| a == "--cleanup-backlog"),
            };
            let report = perf::seed::run(&pool, &opts).await?;
            println!("{report}");
            Ok(())
        }
        Some("queries") => {
            let pool = pool().await?;
            let samples = number(&args, "--samples", 2_000)?;
            let results = perf::queries::run(&pool, samples).await?;
            write_out(&args, &perf::queries::markdown(&results))
        }
        Some("cleanup") => {
            let pool = pool().await?;
            let result = perf::cleanup_scale::run(&pool).await?;
            write_out(&args, &result.markdown())
        }
        Some("http") => {
            let url = flag(&args, "--url").context("--url is required")?;
            let database_url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
            let pool = pool().await?;
            let plan = perf::http_bench::Plan {
                connection_counts: vec![32, 64],
                duration: std::time::Duration::from_secs(number(&args, "--seconds", 10)?),
                routes: flag(&args, "--routes")
                    .map(|r| r.split(',').map(|s| s.trim().to_string()).collect())
                    .unwrap_or_default(),
                server: perf::cpu::Server::Named(
                    flag(&args, "--server-process").unwrap_or_else(|| "local".into()),
                ),
                // wrk for the fixed-path reads when installed (`--no-wrk`: never).
                wrk: !args.iter().any(|a| a == "--no-wrk") && perf::wrk::available(),
            };
            let client = perf::client::Client::new(&url);
            let mut report = perf::http_bench::run(&client, &pool, &database_url, &plan).await?;
            report.label = flag(&args, "--label").unwrap_or_default();
            write_out(&args, &report.markdown())
        }
        Some("indexes") => {
            let pool = pool().await?;
            write_out(&args, &perf::indexes::usage(&pool).await?)
        }
        Some("token") => {
            // An admin's access token (for schemathesis and manual checks).
            let url = flag(&args, "--url").context("--url is required")?;
            let pool = pool().await?;
            let token = perf::load::admin_token(&perf::client::Client::new(&url), &pool).await?;
            println!("{token}");
            Ok(())
        }
        Some("load") => {
            let url = flag(&args, "--url").context("--url is required")?;
            let pool = pool().await?;
            let opts = perf::load::LoadOptions {
                connections: number(&args, "--connections", 64)?,
                duration: std::time::Duration::from_secs(number(&args, "--seconds", 120)?),
            };
            let report = perf::load::run(&perf::client::Client::new(&url), &pool, &opts).await?;
            write_out(&args, &report.markdown())?;
            if !report.passed() {
                bail!("the load run found problems (see the report)");
            }
            Ok(())
        }
        _ => bail!(
            "usage: perf <seed --users N [--cleanup-backlog] | queries --samples N | cleanup | \
             load --url URL --connections C --seconds S> [--out FILE]"
        ),
    }
}
