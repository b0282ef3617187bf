//! Finding or starting the PostgreSQL and Redis the API and its tests need.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A PostgreSQL server reachable over TCP, possibly one this process started.
pub struct Postgres {
    base_url: String,
    /// Set when the cluster is ours to stop: (pg_ctl, data directory).
    owned: Option<(PathBuf, PathBuf)>,
}

impl Postgres {
    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("{}/{db}", self.base_url)
    }

    /// Uses `DATABASE_URL` when set; else the machine's server on 5432,
    /// starting it if it is installed but stopped; else a throwaway cluster
    /// under `target/` (installing PostgreSQL first if it is missing).
    pub fn ensure_running() -> Result<Self> {
        if let Ok(url) = std::env::var("DATABASE_URL")
            && !url.is_empty()
        {
            let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
            return Ok(Self {
                base_url: base.to_string(),
                owned: None,
            });
        }
        let system = Self {
            base_url: "postgres://postgres@127.0.0.1:5432".into(),
            owned: None,
        };
        if reachable(5432) {
            return Ok(system);
        }
        if let Ok(versions) = std::fs::read_dir("/etc/postgresql") {
            for version in versions.flatten() {
                let version = version.file_name().to_string_lossy().into_owned();
                eprintln!("==> starting the PostgreSQL {version} cluster");
                let _ = Command::new("pg_ctlcluster")
                    .args(["--skip-systemctl-redirect", &version, "main", "start"])
                    .status();
            }
            if wait_reachable(5432, Duration::from_secs(10)) {
                return Ok(system);
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-postgres");
        let pg = Self::start_throwaway(&root, 54330)?;
        // The suite's cluster is left running for the next run (it is
        // throwaway data under target/, and starting it costs a second).
        Ok(Self {
            base_url: pg.base_url.clone(),
            owned: None,
        })
    }

    /// Starts (creating on first use) a private cluster in `dir` on `port`.
    pub fn start_throwaway(dir: &Path, port: u16) -> Result<Self> {
        let base_url = format!("postgres://postgres@127.0.0.1:{port}");
        let bin = postgres_bin_dir()?;
        let data = dir.join("data");
        let sock = dir.join("sock");
        std::fs::create_dir_all(&sock).with_context(|| format!("creating {}", sock.display()))?;
        let as_root = is_root();
        if as_root {
            ensure_user("postgres")?;
            // PostgreSQL refuses to run as root: the cluster belongs to postgres.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()?;
            if !status.success() {
                bail!("chown of {} failed", dir.display());
            }
        }
        let as_owner = |program: &Path| {
            if as_root {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", "postgres", "--"]).arg(program);
                cmd
            } else {
                Command::new(program)
            }
        };
        if !data.join("PG_VERSION").exists() {
            eprintln!(
                "==> creating a throwaway PostgreSQL cluster in {}",
                data.display()
            );
            let status = as_owner(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
                .stdout(Stdio::null())
                .status()
                .context("running initdb")?;
            if !status.success() {
                bail!("initdb failed ({status})");
            }
        }
        let pg_ctl = bin.join("pg_ctl");
        if !reachable(port) {
            eprintln!("==> starting PostgreSQL on 127.0.0.1:{port}");
            let status = as_owner(&pg_ctl)
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                    sock.display()
                ))
                .arg("-l")
                .arg(dir.join("postgres.log"))
                .args(["-w", "start"])
                .stdout(Stdio::null())
                .status()
                .context("running pg_ctl start")?;
            if !status.success() {
                bail!(
                    "pg_ctl start failed ({status}); see {}",
                    dir.join("postgres.log").display()
                );
            }
        }
        Ok(Self {
            base_url,
            owned: Some((pg_ctl, data)),
        })
    }

    /// Stops the cluster if this process started it.
    pub fn stop(self) {
        if let Some((pg_ctl, data)) = self.owned {
            eprintln!("==> stopping PostgreSQL");
            let mut cmd = if is_root() {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", "postgres", "--"]).arg(pg_ctl);
                cmd
            } else {
                Command::new(pg_ctl)
            };
            let _ = cmd
                .arg("-D")
                .arg(data)
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// Redis on 127.0.0.1:6379, started (and installed) if need be; its URL.
pub fn ensure_redis() -> Result<String> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    if url != "redis://127.0.0.1:6379" || reachable(6379) {
        return Ok(url);
    }
    if which("redis-server").is_none() {
        install_debian_package("redis-server")?;
    }
    eprintln!("==> starting Redis on 127.0.0.1:6379");
    let status = Command::new("redis-server")
        .args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .status()
        .context("starting redis-server")?;
    if !status.success() || !wait_reachable(6379, Duration::from_secs(10)) {
        bail!("Redis did not start on 127.0.0.1:6379");
    }
    Ok(url)
}

fn reachable(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

fn wait_reachable(port: u16, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if reachable(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The directory holding initdb and pg_ctl: the newest
/// `/usr/lib/postgresql/*/bin`, else PATH; installs PostgreSQL if neither has them.
fn postgres_bin_dir() -> Result<PathBuf> {
    let find = || {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("initdb").is_file())
            .collect();
        versions.sort_by_key(|p| {
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        versions
            .pop()
            .or_else(|| which("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
    };
    if let Some(dir) = find() {
        return Ok(dir);
    }
    install_debian_package("postgresql")?;
    find().context("PostgreSQL binaries (initdb, pg_ctl) not found after installing")
}

fn install_debian_package(package: &str) -> Result<()> {
    if !is_root() {
        bail!("{package} is missing; install it (apt-get install {package}) and rerun");
    }
    eprintln!("==> installing {package} (apt-get)");
    let _ = Command::new("apt-get")
        .arg("update")
        .stdout(Stdio::null())
        .status();
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get install {package} failed");
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn ensure_user(name: &str) -> Result<()> {
    let exists = Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !exists {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", name])
            .status()
            .context("running useradd")?;
        if !status.success() {
            bail!("could not create the user {name}");
        }
    }
    Ok(())
}

/// moto (the local AWS API) on 127.0.0.1:5000, installed from PyPI and
/// started if need be; its URL.
pub fn ensure_moto() -> Result<String> {
    let url = "http://127.0.0.1:5000".to_string();
    if reachable(5000) {
        return Ok(url);
    }
    if which("moto_server").is_none() {
        eprintln!("==> installing moto[server] (PyPI)");
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "moto[server]"])
            .status()
            .context("running pip")?;
        if !status.success() {
            bail!("pip install moto[server] failed");
        }
    }
    eprintln!("==> starting moto on 127.0.0.1:5000");
    let log = std::fs::File::create(std::env::temp_dir().join("moto.log"))?;
    Command::new(which("moto_server").context("moto_server not on PATH after installing")?)
        .args(["-H", "127.0.0.1", "-p", "5000"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting moto_server")?;
    if !wait_reachable(5000, Duration::from_secs(30)) {
        bail!("moto did not start on 127.0.0.1:5000");
    }
    Ok(url)
}
