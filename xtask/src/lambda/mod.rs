//! The Lambda developer's path: `cargo xtask watch` (cargo-lambda's watch
//! server with a database, a signing key and a mail outbox prepared),
//! `cargo xtask invoke` (one event through a release binary under the
//! project's Runtime API emulator) and the test command's walk-through of
//! both.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

mod walk;

pub use walk::walk_through;

use crate::perf::target_dir;
use crate::{cargo, dev_database, local, root, run};

/// The function binaries, as `functions/<name>` and the template name them.
pub const FUNCTIONS: [&str; 4] = ["auth", "users", "admin", "cleanup"];

/// The cargo-lambda release the project is tested with (a binary wheel on PyPI).
const CARGO_LAMBDA: &str = "cargo-lambda==1.9.2";

/// Where `cargo lambda build --release` leaves the function binaries, as
/// `<function>/bootstrap` (built with `--target x86_64-unknown-linux-gnu`:
/// a target directory of its own; the workspace's release profile as is,
/// `disable_optimizations` in Cargo.toml).
pub fn release_dir() -> PathBuf {
    target_dir().join("lambda")
}

/// `cargo lambda build --release` for `functions` (all four when empty): the
/// binaries Lambda runs, also what `sam build` reuses.
pub fn build_functions(functions: &[&str]) -> Result<()> {
    ensure_cargo_lambda()?;
    let functions = if functions.is_empty() {
        &FUNCTIONS[..]
    } else {
        functions
    };
    let mut cmd = cargo();
    cmd.args(["lambda", "build", "--release"]);
    for function in functions {
        cmd.args(["--bin", function]);
    }
    run(
        cmd.env("SQLX_OFFLINE", "true"),
        &format!("cargo lambda build --release ({})", functions.join(", ")),
    )
}

/// Installs cargo-lambda from PyPI unless `cargo lambda` already runs.
pub fn ensure_cargo_lambda() -> Result<()> {
    if crate::checks::cargo_runs("lambda") {
        return Ok(());
    }
    crate::pip_install(&[CARGO_LAMBDA])
}

/// The environment every function needs outside AWS: the database (migrated
/// here), a signing key shared by all functions, and the mail outbox.
pub(crate) struct DevEnv {
    vars: Vec<(&'static str, String)>,
}

impl DevEnv {
    pub(crate) fn prepare(database_url: &str) -> Result<Self> {
        run(
            local(&["--migrate"]).env("DATABASE_URL", database_url),
            "applying the migrations",
        )?;
        let key = match std::env::var("JWT_PRIVATE_KEY_PEM") {
            Ok(pem) if !pem.trim().is_empty() => pem,
            _ => {
                let path = dev_key_path();
                run(
                    local(&["--dev-key"]).arg(&path),
                    "the development signing key",
                )?;
                eprintln!(
                    "warning: JWT_PRIVATE_KEY_PEM is not set: the functions sign with the \
                     development key in {} (made for this checkout; never deploy it)",
                    path.display()
                );
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
            }
        };
        let mfa_key = match std::env::var("MFA_ENCRYPTION_KEY") {
            Ok(key) if !key.trim().is_empty() => key,
            _ => dev_mfa_key()?,
        };
        let outbox = std::env::var("MAIL_OUTBOX_DIR")
            .ok()
            .filter(|d| !d.is_empty())
            .map_or_else(|| root().join("target/mail-outbox"), PathBuf::from);
        eprintln!("==> mail goes to {}", outbox.display());
        Ok(Self {
            vars: vec![
                ("DATABASE_URL", database_url.to_string()),
                ("JWT_PRIVATE_KEY_PEM", key),
                ("MFA_ENCRYPTION_KEY", mfa_key),
                ("MAIL_OUTBOX_DIR", outbox.to_string_lossy().into_owned()),
                ("SQLX_OFFLINE", "true".into()),
            ],
        })
    }

    pub(crate) fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        for (name, value) in &self.vars {
            cmd.env(name, value);
        }
        cmd
    }
}

fn dev_key_path() -> PathBuf {
    target_dir().join("lambda-dev/jwt-dev-key.pem")
}

/// The development key sealing TOTP secrets (`MFA_ENCRYPTION_KEY` unset):
/// made once per checkout from the system's random source, mode 0600, never
/// printed, so factors enrolled under `cargo xtask watch` survive restarts.
fn dev_mfa_key() -> Result<String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = target_dir().join("lambda-dev/mfa-dev-key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        return Ok(key.trim().to_string());
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("dev:{key}");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(key.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "warning: MFA_ENCRYPTION_KEY is not set: TOTP secrets are sealed with the development \
         key in {} (made for this checkout; never deploy it)",
        path.display()
    );
    Ok(key)
}

/// `cargo xtask watch [-P port]`: `cargo lambda watch` on 127.0.0.1 with
/// every route at its real path, until Ctrl-C.
pub fn watch(args: &[String]) -> Result<()> {
    ctrlc::set_handler(|| eprintln!("\nstopping…")).context("installing the Ctrl-C handler")?;
    let port = crate::perf::flag(args, "-P").unwrap_or("9000");
    ensure_cargo_lambda()?;
    let (url, pg) = dev_database()?;
    let outcome = DevEnv::prepare(&url).and_then(|env| {
        eprintln!(
            "==> cargo lambda watch on http://127.0.0.1:{port} (DATABASE_URL={url}); \
             try: curl -i http://127.0.0.1:{port}/v1/health"
        );
        let status = env
            .apply(&mut watch_command(port))
            .status()
            .context("running cargo lambda watch")?;
        // 130 or a signal: stopped with Ctrl-C, the normal way.
        if !status.success() && status.code().is_some_and(|c| c != 130) {
            bail!("cargo lambda watch exited with {status}");
        }
        Ok(())
    });
    if let Some(pg) = pg {
        pg.stop();
    }
    outcome
}

pub(crate) fn watch_command(port: &str) -> Command {
    let mut cmd = cargo();
    cmd.args(["lambda", "watch", "-A", "127.0.0.1", "-P", port]);
    cmd
}

/// `cargo xtask invoke <function> <event.json>`: the function's release
/// binary, once, under the Runtime API emulator; prints its answer.
pub fn invoke(args: &[String]) -> Result<()> {
    let [function, event] = args else {
        bail!("usage: cargo xtask invoke <auth|users|admin|cleanup> <event.json>");
    };
    let (url, pg) = dev_database()?;
    let outcome = DevEnv::prepare(&url).and_then(|env| invoke_with(&env, function, event.as_ref()));
    if let Some(pg) = pg {
        pg.stop();
    }
    outcome.map(|answer| println!("{}", answer.trim_end()))
}

/// Runs `event` through `function`; the function's answer (JSON).
pub(crate) fn invoke_with(env: &DevEnv, function: &str, event: &Path) -> Result<String> {
    if !FUNCTIONS.contains(&function) {
        bail!("unknown function `{function}` (expected one of {FUNCTIONS:?})");
    }
    let event = std::fs::canonicalize(event)
        .with_context(|| format!("reading the event file {}", event.display()))?;
    build_functions(&[function])?;
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "tests", "--bin", "invoke", "--"])
        .arg(function)
        .arg(&event)
        .env("LAMBDA_BIN_DIR", release_dir())
        .stderr(Stdio::inherit());
    crate::perf::output(
        env.apply(&mut cmd),
        &format!("invoking {function} with {}", event.display()),
    )
}

/// `sam build --parameter-overrides Architecture=x86_64` (the template's
/// default, arm64, needs an aarch64 toolchain these machines lack); then
/// each function's `bootstrap` must be in `.aws-sam/build`, executable.
pub fn sam_build() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    run(
        crate::tool("sam")
            .args(["build", "--parameter-overrides", "Architecture=x86_64"])
            .env("SAM_CLI_TELEMETRY", "0")
            .env("SQLX_OFFLINE", "true"),
        "sam build (x86_64)",
    )?;
    for function in FUNCTIONS {
        let logical_id = format!("{}{}Function", function[..1].to_uppercase(), &function[1..]);
        let bootstrap = root()
            .join(".aws-sam/build")
            .join(&logical_id)
            .join("bootstrap");
        let meta = std::fs::metadata(&bootstrap)
            .with_context(|| format!("sam build left no {}", bootstrap.display()))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            bail!("{} is not an executable file", bootstrap.display());
        }
        eprintln!("    {logical_id}/bootstrap: {} bytes", meta.len());
    }
    Ok(())
}
