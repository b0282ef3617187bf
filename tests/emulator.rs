//! A small Lambda Runtime API emulator: the endpoints a function binary
//! calls (`invocation/next`, `invocation/{id}/response`,
//! `invocation/{id}/error`, `init/error`), so tests can run the compiled
//! functions the way Lambda does, without Docker.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::{Notify, oneshot};

type Outcome = Result<Value, Value>;

#[derive(Default)]
struct Inner {
    queue: Mutex<VecDeque<(String, Value)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<Value>>,
    event_ready: Notify,
    init_failed: Notify,
}

/// The emulator's HTTP server.
#[derive(Clone)]
pub struct RuntimeApi {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
}

async fn next(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    loop {
        let notified = inner.event_ready.notified();
        if let Some((id, event)) = inner.queue.lock().ok().and_then(|mut q| q.pop_front()) {
            let mut headers = HeaderMap::new();
            let deadline = (chrono::Utc::now().timestamp_millis() + 30_000).to_string();
            for (name, value) in [
                ("lambda-runtime-aws-request-id", id.as_str()),
                ("lambda-runtime-deadline-ms", deadline.as_str()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:eu-west-1:123456789012:function:test",
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000",
                ),
            ] {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.insert(name, value);
                }
            }
            return (headers, Json(event));
        }
        notified.await;
    }
}

/// The runtime does not always send a JSON content type: parse the bytes.
fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

async fn respond(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let body = json_of(&body);
    if let Some(tx) = inner.waiting.lock().ok().and_then(|mut w| w.remove(&id)) {
        let _ = tx.send(Ok(body));
    }
    StatusCode::ACCEPTED
}

async fn error(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let body = json_of(&body);
    if let Some(tx) = inner.waiting.lock().ok().and_then(|mut w| w.remove(&id)) {
        let _ = tx.send(Err(body));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(inner): State<Arc<Inner>>, body: axum::body::Bytes) -> StatusCode {
    let body = json_of(&body);
    if let Ok(mut slot) = inner.init_error.lock() {
        *slot = Some(body);
    }
    inner.init_failed.notify_waiters();
    StatusCode::ACCEPTED
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the emulator");
        let addr = listener.local_addr().expect("emulator address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { inner, addr }
    }

    /// Queues `event` and waits for the function's answer.
    pub async fn invoke(&self, event: Value) -> Outcome {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.inner
            .waiting
            .lock()
            .expect("lock")
            .insert(id.clone(), tx);
        self.inner
            .queue
            .lock()
            .expect("lock")
            .push_back((id, event));
        self.inner.event_ready.notify_waiters();
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => panic!("the function did not answer within 30 s"),
        }
    }

    /// Waits for a report on `/init/error`.
    pub async fn init_error(&self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.inner.init_failed.notified();
            if let Some(report) = self.inner.init_error.lock().ok().and_then(|s| s.clone()) {
                return Some(report);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

/// Function binary `name`: `<dir>/<name>` (cargo's layout) or
/// `<dir>/<name>/bootstrap` (cargo-lambda's `target/lambda`) under [`bin_dir`].
pub fn binary(name: &str) -> PathBuf {
    let flat = bin_dir().join(name);
    if flat.is_file() {
        flat
    } else {
        flat.join("bootstrap")
    }
}

/// Where the function binaries are: `LAMBDA_BIN_DIR` (`cargo xtask test`
/// sets `target/lambda` after `cargo lambda build --release`), else built
/// here with `cargo build --release`.
fn bin_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("LAMBDA_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "-p",
                "auth",
                "-p",
                "users",
                "-p",
                "admin",
                "-p",
                "cleanup",
            ])
            .env("SQLX_OFFLINE", "true")
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the function binaries failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("release")
    })
    .clone()
}

/// A function binary running against the emulator.
pub struct Function {
    pub api: RuntimeApi,
    child: Child,
    pub started: Instant,
    stdout: PathBuf,
}

impl Function {
    /// Starts binary `name` with the Lambda environment plus `env`.
    pub async fn start(name: &str, env: &[(&str, String)]) -> Self {
        let api = RuntimeApi::start().await;
        let started = Instant::now();
        let stdout = std::env::temp_dir().join(format!("um-{name}-{}.out", uuid::Uuid::new_v4()));
        let out_file = std::fs::File::create(&stdout).expect("creating the stdout file");
        let mut cmd = Command::new(binary(name));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_REGION", "eu-west-1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::piped());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            api,
            child,
            started,
            stdout,
        }
    }

    /// What the function wrote to stdout so far (its log and EMF lines).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub async fn invoke(&self, event: Value) -> Outcome {
        self.api.invoke(event).await
    }

    /// CPU time the process has used so far (user + system).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name (which may hold spaces) : state is 3rd.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // Linux reports in USER_HZ, 100 on every mainstream configuration.
        Some(Duration::from_millis(ticks * 10))
    }

    /// The process's peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Waits for the process to exit; its exit status and standard error.
    pub fn wait_exit(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return (status.code(), stderr);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return (None, String::new());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API Gateway HTTP API (payload 2.0) event.
pub fn apigw_event(method: &str, path: &str, body: Option<Value>, bearer: Option<&str>) -> Value {
    let mut headers = serde_json::json!({"user-agent": "emulator-test", "host": "api.example.com"});
    if body.is_some() {
        headers["content-type"] = "application/json".into();
    }
    if let Some(token) = bearer {
        headers["authorization"] = format!("Bearer {token}").into();
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "domainName": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "emulator-test"},
            "requestId": format!("{}=", &uuid::Uuid::new_v4().simple().to_string()[..15]),
            "routeKey": "$default",
            "stage": "$default",
            "time": "28/Nov/2026:02:00:00 +0000",
            "timeEpoch": 1_795_000_000_000_i64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

/// The sample events under `events/` (names without `.json`).
pub const SAMPLE_EVENTS: [&str; 5] = [
    "auth-register",
    "auth-login",
    "users-me",
    "cleanup-scheduled",
    "cleanup-dry-run",
];

/// The sample event `events/<name>.json`, as committed.
pub fn sample_event(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The JSON body of an API Gateway response.
pub fn response_body(response: &Value) -> Value {
    response["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

/// A stand-in for CloudFormation's pre-signed response URL: the custom
/// resource PUTs its result document there. Returns the URL and the document.
pub async fn cloudformation_receiver() -> (String, oneshot::Receiver<Value>) {
    let (tx, rx) = oneshot::channel::<Value>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let receiver = Router::new().route(
        "/response",
        axum::routing::put(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding an ephemeral port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, receiver).await;
    });
    (format!("http://{addr}/response"), rx)
}

/// A `Custom::Migrations` Create request answering to `response_url`.
pub fn migrations_event(response_url: &str) -> Value {
    serde_json::json!({
        "RequestType": "Create",
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:cleanup",
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/users/1",
        "RequestId": "req-1",
        "ResourceType": "Custom::Migrations",
        "LogicalResourceId": "SchemaMigrations",
        "ResourceProperties": {"SchemaVersion": "20261128000001"}
    })
}
