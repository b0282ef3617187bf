//! The auth group of the API (docs/api.md) through the router, on real PostgreSQL
//! (and Redis where a test says so): one file per sub-resource, as the routes.

use axum::http::Method;
use serde_json::{Value, json};
use shared::db::MIGRATOR;
use sqlx::PgPool;
use tests::{STRONG_PASSWORD, TestApp, assert_problem};
use uuid::Uuid;

mod access_tokens;
mod bodies;
mod email;
mod login;
mod logout;
mod password;
mod rate_limits;
mod refresh;
mod register;

pub(super) const REDIS: (&str, &str) = ("REDIS_URL", "redis://127.0.0.1:6379");

pub(super) fn bearer(pair: &Value) -> String {
    pair["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub(super) fn refresh_token(pair: &Value) -> String {
    pair["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub(super) async fn me_status(app: &TestApp, token: &str) -> u16 {
    // email/resend is the auth group's bearer-protected route.
    app.call(Method::POST, "/v1/auth/email/resend", None, Some(token))
        .await
        .status
        .as_u16()
}

/// A Redis server of the test's own, on a free port, that it can stop and start.
pub(super) struct OwnRedis {
    pub(super) port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub(super) fn start_on(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self {
            port,
            child: Some(child),
        }
    }

    pub(super) fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        Self::start_on(port)
    }

    pub(super) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
