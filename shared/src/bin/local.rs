//! `local`: the whole API on one port for development (`cargo xtask dev`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().any(|a| a == "--print-openapi") {
        println!("{}", shared::api::openapi::json());
        return std::process::ExitCode::SUCCESS;
    }
    match shared::local::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("local server failed: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
