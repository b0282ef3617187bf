//! `local`: the whole API on one port for development (`cargo xtask dev`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match shared::local::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("local server failed: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
