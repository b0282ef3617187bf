//! `local`: the whole API on one port for development (`cargo xtask dev`).
//!
//! Other modes, for the developer commands:
//! - `--print-openapi`: prints the OpenAPI document (`cargo xtask openapi`);
//! - `--migrate`: applies the migrations to `DATABASE_URL` and exits;
//! - `--dev-key PATH`: writes a development signing key to `PATH` unless it
//!   exists (`cargo xtask watch`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--print-openapi") => {
            println!("{}", shared::api::openapi::json());
            Ok(())
        }
        Some("--migrate") => shared::local::migrate().await,
        Some("--dev-key") => match args.get(1) {
            Some(path) => shared::local::write_dev_key(path.as_ref()).map(|created| {
                if created {
                    eprintln!("wrote a new development signing key to {path}");
                }
            }),
            None => Err(anyhow::anyhow!("--dev-key needs a file path")),
        },
        Some(other) => Err(anyhow::anyhow!(
            "unknown argument `{other}` (expected --print-openapi, --migrate or --dev-key PATH)"
        )),
        None => shared::local::run().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("local: {err:#}");
            ExitCode::FAILURE
        }
    }
}
