//! The browser sample (`examples/browser/`): served on a second origin by
//! `cargo xtask dev`, and driven end to end in headless Chromium by the
//! test command (Debian's chromium and chromium-driver, Selenium from PyPI;
//! nothing is downloaded at run time).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::perf::{LIFTED_LIMITS, LocalServer, fresh_database, target_dir};
use crate::{root, run};
use xtask::services::Postgres;

/// Serves `examples/browser/` on 127.0.0.1:`port` from a background thread
/// for as long as the process lives: its files by name, nothing else.
pub fn serve_page(port: u16) -> Result<String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("binding 127.0.0.1:{port} for the sample page"))?;
    let dir = root().join("examples/browser");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &dir);
            });
        }
    });
    Ok(format!("http://127.0.0.1:{port}"))
}

fn answer(mut stream: std::net::TcpStream, dir: &std::path::Path) -> std::io::Result<()> {
    let mut request_line = String::new();
    BufReader::new((&stream).take(8192)).read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or("/");
    let name = match path.strip_prefix('/') {
        Some("") => "index.html",
        Some(name) => name,
        None => "",
    };
    // Only a plain file name of the directory: no traversal, no listing.
    let known = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !name.is_empty()
        && !name.starts_with('.');
    let file = if known {
        std::fs::read(dir.join(name)).ok()
    } else {
        None
    };
    let (status, kind, body) = match file {
        Some(body) => {
            let kind = match name.rsplit('.').next() {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                _ => "application/octet-stream",
            };
            ("200 OK", kind, body)
        }
        None => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nContent-Security-Policy: frame-ancestors 'none'\r\nX-Frame-Options: DENY\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)
}

const SELENIUM: &str = "selenium==4.51.0";

/// Chromium and its driver from Debian, Selenium in its own venv.
fn ensure_browser() -> Result<PathBuf> {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromedriver"];
    if chromium.iter().any(|p| !std::path::Path::new(p).exists()) {
        let install = || {
            let mut cmd = Command::new("apt-get");
            cmd.args([
                "install",
                "-y",
                "--no-install-recommends",
                "chromium",
                "chromium-driver",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive");
            cmd
        };
        // A machine whose package lists are stale or absent needs them
        // fetched first (from Debian's mirror, the one registry allowed);
        // the retry is the step the summary shows.
        let installed = install().status().is_ok_and(|status| status.success());
        if !installed {
            run(
                Command::new("apt-get")
                    .arg("update")
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                "apt-get update",
            )?;
            run(
                &mut install(),
                "installing chromium and chromium-driver (Debian)",
            )?;
        }
    }
    let python = crate::checks::venv_with("selenium", SELENIUM)?.join("bin/python");
    Ok(python)
}

/// The sample page in headless Chromium against the release local server,
/// on two origins as in `cargo xtask dev`; the screenshot of the signed-in
/// page lands in `target/browser/signed-in.png`.
pub fn end_to_end(pg: &Postgres, redis_url: &str) -> Result<()> {
    let python = ensure_browser()?;
    let url = fresh_database(pg, "um_browser")?;
    let page = serve_page(3911)?;
    let mut env = LIFTED_LIMITS.to_vec();
    env.push(("REDIS_URL", redis_url));
    env.push(("CORS_ALLOWED_ORIGINS", page.as_str()));
    let server = LocalServer::start(&url, 3910, &env)?;
    let out = target_dir().join("browser");
    std::fs::create_dir_all(&out).context("creating target/browser")?;
    let screenshot = out.join("signed-in.png");
    let status = Command::new(&python)
        .arg(root().join("tests/browser/e2e.py"))
        .args(["--page", &format!("{page}/?api={}", server.url)])
        .arg("--screenshot")
        .arg(&screenshot)
        .current_dir(root())
        .status()
        .context("running tests/browser/e2e.py")?;
    if !status.success() {
        bail!("the browser test failed ({status}); the server log is in target/local-3910.log");
    }
    eprintln!("    screenshot: {}", screenshot.display());
    Ok(())
}
