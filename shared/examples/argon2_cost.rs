//! Measures Argon2id hashing and verification with the configured
//! parameters (defaults: m = 19 MiB, t = 2, p = 1):
//! `cargo run --release -p shared --example argon2_cost`.

use std::time::Instant;

use shared::config::Config;
use shared::domain::Password;
use shared::security::PasswordHasher;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let hasher = PasswordHasher::new(config.argon2)?;
    let password = Password::candidate("Correct-Horse-Battery-9!").map_err(anyhow::Error::msg)?;
    let hash = hasher.hash(&password).await?;
    let mut hashing = Vec::new();
    let mut verifying = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        hasher.hash(&password).await?;
        hashing.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        hasher.verify(&password, Some(&hash)).await?;
        verifying.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    for (name, mut times) in [("hash", hashing), ("verify", verifying)] {
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: p50 {:.1} ms, p95 {:.1} ms over {} runs ({:?})",
            times[times.len() / 2],
            times[times.len() * 95 / 100],
            times.len(),
            config.argon2
        );
    }
    Ok(())
}
