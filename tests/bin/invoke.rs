//! `invoke <function> <event.json>`: one event through one function binary
//! (from `LAMBDA_BIN_DIR`, else a release build) under the Runtime API
//! emulator, with this process's environment; prints the function's answer
//! on stdout and its log on stderr. `cargo xtask invoke` runs it: the
//! `sam local invoke` of a machine without Docker.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tests::emulator::Function;

/// How long the function may take to initialise and answer.
const WITHIN: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    match invoke().await {
        Ok(answer) => {
            println!("{answer:#}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("invoke: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn invoke() -> Result<Value> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [function, event] = args.as_slice() else {
        bail!("usage: invoke <function> <event.json>");
    };
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(event).with_context(|| format!("reading {event}"))?,
    )
    .with_context(|| format!("{event} is not JSON"))?;
    // The caller's settings (DATABASE_URL, JWT_PRIVATE_KEY_PEM, ...); the
    // emulator sets the Lambda ones.
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| !name.starts_with("AWS_LAMBDA_") && name != "LAMBDA_BIN_DIR")
        .collect();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let running = Function::start(function, &env).await;
    let outcome = tokio::select! {
        answer = running.invoke(event) => answer,
        Some(report) = running.api.init_error(WITHIN) => {
            eprint!("{}", running.stdout());
            bail!("{function} failed to initialise: {report}");
        }
    };
    eprint!("{}", running.stdout());
    outcome.map_err(|error| anyhow::anyhow!("{function} answered with an error: {error}"))
}
