//! The test command's walk-through of the Lambda developer's path:
//! `cargo lambda watch` against a fresh database, driven with curl, then the
//! cleanup through `cargo lambda invoke` and `cargo xtask invoke`.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{DevEnv, invoke_with, watch_command};
use crate::perf::{fresh_database, target_dir};
use crate::{cargo, root};
use xtask::services::Postgres;

/// `cargo lambda watch` as a child process group; stopped when dropped.
struct Watch {
    child: Child,
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The watch server, the cargo builds and the functions it started.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// The test command's walk-through: `cargo lambda watch` against a fresh
/// database, driven with curl through register → login → me → an admin route
/// (403 for a plain user) → the cleanup (`cargo lambda invoke` and `cargo
/// xtask invoke` with the sample events), then stopped.
pub fn walk_through(pg: &Postgres) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let url = fresh_database(pg, "um_watch")?;
    let env = DevEnv::prepare(&url)?;
    let port = "9417";
    let log_path = target_dir().join("lambda-watch.log");
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut cmd = watch_command(port);
    env.apply(&mut cmd)
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let _watch = Watch {
        child: cmd.spawn().context("starting cargo lambda watch")?,
    };
    let base = format!("http://127.0.0.1:{port}");
    let outcome = walk(&base, &env, started);
    if outcome.is_err() {
        eprintln!(
            "cargo lambda watch's log ({}):\n{}",
            log_path.display(),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }
    outcome
}

fn walk(base: &str, env: &DevEnv, started: Instant) -> Result<()> {
    // The first request waits for the functions to compile (debug build).
    let deadline = started + Duration::from_secs(900);
    loop {
        let (status, _) = curl(&["-X", "GET", &format!("{base}/v1/health")])?;
        if status == 200 {
            break;
        }
        if Instant::now() > deadline {
            bail!("cargo lambda watch did not serve /v1/health within 15 min (last: {status})");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "==> cargo lambda watch serves /v1/health after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let register = event_body("auth-register.json")?;
    let login = event_body("auth-login.json")?;
    let step = |what: &str, args: &[&str], want: u16| -> Result<serde_json::Value> {
        let (status, body) = curl(args)?;
        eprintln!("    {what}: {status} {}", shown(&body));
        if status != want {
            bail!("{what}: expected {want}, got {status}: {body}");
        }
        Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    };
    let json = ["-H", "content-type: application/json", "-X", "POST"];
    step(
        "POST /v1/auth/register",
        &[
            &json[..],
            &["-d", &register, &format!("{base}/v1/auth/register")],
        ]
        .concat(),
        201,
    )?;
    let pair = step(
        "POST /v1/auth/login",
        &[&json[..], &["-d", &login, &format!("{base}/v1/auth/login")]].concat(),
        200,
    )?;
    let access = pair["access_token"]
        .as_str()
        .context("the login answer has no access_token")?;
    let bearer = format!("authorization: Bearer {access}");
    let me = step(
        "GET /v1/users/me",
        &["-H", &bearer, &format!("{base}/v1/users/me")],
        200,
    )?;
    let registered: serde_json::Value = serde_json::from_str(&register)?;
    if me["username"] != registered["username"] {
        bail!("/v1/users/me answered another user: {me}");
    }
    let denied = step(
        "GET /v1/admin/users (a plain user)",
        &["-H", &bearer, &format!("{base}/v1/admin/users")],
        403,
    )?;
    if denied["code"] != "forbidden" {
        bail!("the admin route refused with {denied}, not the contract's `forbidden`");
    }
    for event in ["cleanup-dry-run.json", "cleanup-scheduled.json"] {
        let file = root().join("events").join(event);
        let mut cmd = cargo();
        cmd.args(["lambda", "invoke", "-A", "127.0.0.1", "-P"])
            .arg(base.rsplit(':').next().unwrap_or("9000"))
            .args(["cleanup", "--data-file"])
            .arg(&file);
        let answer =
            crate::perf::output(&mut cmd, &format!("cargo lambda invoke cleanup {event}"))?;
        eprintln!("    {}", truncate(answer.trim()));
        check_cleanup_answer(&answer, event == "cleanup-dry-run.json")?;
    }
    let answer = invoke_with(env, "cleanup", &root().join("events/cleanup-dry-run.json"))?;
    eprintln!(
        "    cargo xtask invoke cleanup: {}",
        truncate(answer.trim())
    );
    check_cleanup_answer(&answer, true)
}

/// The cleanup's report says whether it was a dry run.
fn check_cleanup_answer(answer: &str, dry_run: bool) -> Result<()> {
    let report: serde_json::Value = serde_json::from_str(answer.trim())
        .with_context(|| format!("cleanup answered {answer}"))?;
    if report["dry_run"] != dry_run {
        bail!("the cleanup report has dry_run ≠ {dry_run}: {report}");
    }
    Ok(())
}

/// The JSON body of a sample API Gateway event in `events/`.
fn event_body(name: &str) -> Result<String> {
    let path = root().join("events").join(name);
    let event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    event["body"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{name} has no body"))
}

/// `curl -s args`: the status and the body.
fn curl(args: &[&str]) -> Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "60", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    Ok((status.trim().parse().unwrap_or(0), body.to_string()))
}

/// A response body for the log: token values replaced, long text cut.
fn shown(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut fields)) => {
            for (name, value) in fields.iter_mut() {
                if name.ends_with("_token") {
                    *value = "<not shown>".into();
                }
            }
            truncate(&serde_json::Value::Object(fields).to_string())
        }
        _ => truncate(body),
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
