//! wrk (Debian's `wrk` package) as the load generator of the read routes
//! with a fixed path: like pgbench on the floor's side, a C generator on
//! epoll, so on a shared machine the generator takes as little of the cores
//! on both sides of the ratio. Each request carries the next of the
//! benchmark's tokens (one per user).

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::stats::Summary;

/// What one wrk run measured.
#[derive(Debug, Clone)]
pub struct WrkRun {
    pub requests: u64,
    /// Non-2xx answers and socket errors.
    pub errors: u64,
    pub rps: f64,
    pub latency: Summary,
}

/// Is `wrk` installed?
pub fn available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// The Lua script: GET `path`, each request with the next token of `tokens_file`.
fn script(path: &str, tokens_file: &str) -> String {
    format!(
        "local tokens = {{}}\n\
         for line in io.lines({tokens_file:?}) do tokens[#tokens + 1] = line end\n\
         local i = 0\n\
         request = function()\n\
         \x20 i = i % #tokens + 1\n\
         \x20 return wrk.format(\"GET\", {path:?}, {{[\"Authorization\"] = \"Bearer \" .. tokens[i]}})\n\
         end\n"
    )
}

/// A wrk duration ("812.00us", "4.12ms", "1.02s").
fn duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        return None;
    };
    number
        .parse::<f64>()
        .ok()
        .map(|v| Duration::from_secs_f64(v * scale))
}

/// Reads wrk's report (run with `--latency`).
fn parse(text: &str) -> Result<WrkRun> {
    let mut run = WrkRun {
        requests: 0,
        errors: 0,
        rps: 0.0,
        latency: Summary::default(),
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", d] => run.latency.p50 = duration(d).unwrap_or_default(),
            ["90%", _] | ["75%", _] => {}
            ["99%", d] => run.latency.p99 = duration(d).unwrap_or_default(),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            ["Requests/sec:", v] => run.rps = v.parse().unwrap_or(0.0),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.errors += n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                run.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if run.requests == 0 {
        bail!("wrk reported no requests: {text}");
    }
    run.latency.count = usize::try_from(run.requests).unwrap_or(usize::MAX);
    Ok(run)
}

/// GET `base` + `path` with `connections` connections for `duration`.
pub async fn get(
    base: &str,
    path: &str,
    tokens: &[String],
    connections: usize,
    duration: Duration,
) -> Result<WrkRun> {
    let dir = std::env::temp_dir().join(format!("um-wrk-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tokens_file = dir.join("tokens");
    std::fs::write(&tokens_file, tokens.join("\n") + "\n")?;
    let script_file = dir.join("get.lua");
    std::fs::write(
        &script_file,
        script(path, &tokens_file.display().to_string()),
    )?;
    let out = tokio::process::Command::new("wrk")
        .args(["-t2", "--latency"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("-s")
        .arg(&script_file)
        .arg(base)
        .output()
        .await
        .context("running wrk");
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_read() {
        let report = "Running 5s test @ http://127.0.0.1:3100\n  2 threads and 32 connections\n\
            \x20 Latency Distribution\n     50%  812.00us\n     75%    2.00ms\n     90%    3.10ms\n     99%    1.02s\n\
            \x20 60690 requests in 9.01s, 53.07MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
            \x20 Non-2xx or 3xx responses: 5\nRequests/sec:   6738.94\nTransfer/sec:      5.89MB\n";
        let run = parse(report).unwrap();
        assert_eq!(run.requests, 60690);
        assert_eq!(run.errors, 8);
        assert!((run.rps - 6738.94).abs() < 1e-9);
        assert_eq!(run.latency.p50, Duration::from_micros(812));
        assert_eq!(run.latency.p99, Duration::from_millis(1020));
        assert!(parse("nothing").is_err());
    }

    #[test]
    fn the_script_sends_each_token_in_turn() {
        let lua = script("/v1/users/me", "/tmp/t");
        assert!(lua.contains("io.lines(\"/tmp/t\")"), "{lua}");
        assert!(
            lua.contains("wrk.format(\"GET\", \"/v1/users/me\""),
            "{lua}"
        );
    }
}
