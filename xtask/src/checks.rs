//! The checks of the test command besides the suite: tools installed on
//! demand, the sqlx offline data, the SAM template, the README's commands.

use std::process::Command;

use anyhow::Result;

use crate::{answers, cargo, pip_install, root, run, step, tool};
use xtask::services::Postgres;

/// The README's shell commands against their tools' `--help`.
pub(crate) fn readme_commands() -> Result<()> {
    step("README commands against their tools' --help", || {
        let checked = xtask::readme::check(&root())?;
        eprintln!("    {checked} commands checked");
        Ok(())
    })
}

/// Does `cargo <subcommand> --version` run?
pub(crate) fn cargo_runs(subcommand: &str) -> bool {
    cargo()
        .args([subcommand, "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `cargo install <install>` (the crate first) unless `cargo <subcommand>` runs.
pub(crate) fn install_cargo_tool(subcommand: &str, install: &[&str]) -> Result<()> {
    if cargo_runs(subcommand) {
        return Ok(());
    }
    run(
        cargo().arg("install").args(install),
        &format!("installing {}", install.first().unwrap_or(&subcommand)),
    )
}

/// `cargo sqlx prepare --workspace --check`: the committed `.sqlx/` matches
/// the queries, checked against a freshly migrated database.
pub(crate) fn sqlx_offline_check(postgres: &Postgres) -> Result<()> {
    install_cargo_tool(
        "sqlx",
        &[
            "sqlx-cli",
            "--version",
            "0.9.0",
            "--no-default-features",
            "--features",
            "postgres,rustls",
            "--locked",
        ],
    )?;
    let url = postgres.url("um_sqlx_check");
    run(
        cargo()
            .args(["sqlx", "database", "reset", "-y", "--source", "migrations"])
            .env("DATABASE_URL", &url),
        "migrating the sqlx check database",
    )?;
    run(
        cargo()
            .args([
                "sqlx",
                "prepare",
                "--workspace",
                "--check",
                "--",
                "--all-targets",
            ])
            .env("DATABASE_URL", &url),
        "cargo sqlx prepare --check",
    )
}

/// `cfn-lint` and `sam validate --lint` on template.yaml (installed from PyPI if missing).
pub(crate) fn lint_template() -> Result<()> {
    if !answers("cfn-lint") || !answers("sam") {
        pip_install(&["cfn-lint", "aws-sam-cli"])?;
    }
    run(
        tool("cfn-lint").arg("template.yaml"),
        "cfn-lint template.yaml",
    )?;
    run(
        tool("sam")
            .args(["validate", "--lint", "--template-file", "template.yaml"])
            .env("SAM_CLI_TELEMETRY", "0")
            .env("AWS_DEFAULT_REGION", "eu-west-1"),
        "sam validate --lint",
    )?;
    policy_scan()
}

/// The policy scanner the issue set the bar with, pinned, in its own venv
/// (its dependencies clash with aws-sam-cli's): zero failed checks, every
/// skip reasoned beside its resource in the template.
fn policy_scan() -> Result<()> {
    let venv = venv_with("checkov", "checkov==3.3.30")?;
    let checkov = venv.join("bin/checkov");
    // --skip-download: no calls home (CI has no internet); the checks ship
    // with the package.
    run(
        tool(&checkov).args([
            "-f",
            "template.yaml",
            "--framework",
            "cloudformation",
            "--compact",
            "--quiet",
            "--skip-download",
        ]),
        "checkov template.yaml",
    )
}

/// A venv under `target/tools/<name>` holding `package` (pinned), made once:
/// for Python tools whose dependencies clash with the others'.
pub(crate) fn venv_with(name: &str, package: &str) -> Result<std::path::PathBuf> {
    let venv = crate::perf::target_dir().join("tools").join(name);
    let marker = venv.join(format!(".installed-{package}"));
    if !marker.exists() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            &format!("creating the {name} venv"),
        )?;
        run(
            Command::new(venv.join("bin/pip")).args(["install", "--quiet", package]),
            &format!("installing {package} (PyPI)"),
        )?;
        std::fs::write(&marker, b"")?;
    }
    Ok(venv)
}
