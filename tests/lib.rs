//! Test helpers: `TestApp` drives the real routers against a fresh database
//! per test (`#[sqlx::test]`), with typed calls and problem+json assertions.

pub mod emulator;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use shared::db::Db;
use shared::{AppState, Config};
use sqlx::PgPool;
use tower::ServiceExt;

/// One RSA signing key per test process (generating one takes a moment).
pub fn test_key_pem() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| match shared::security::jwt::generate_private_key_pem() {
        Ok(pem) => secrecy::ExposeSecret::expose_secret(&pem).to_string(),
        Err(err) => panic!("generating a test key failed: {err}"),
    })
}

/// The key sealing TOTP secrets in tests (`MFA_ENCRYPTION_KEY`).
pub const TEST_MFA_KEY: &str = "test:0123456789abcdef0123456789abcdef-tests";

/// The URL of the test database behind `pool` (for processes and tools
/// that connect on their own).
pub fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("postgres")
    )
}

/// Configuration for tests: the API's defaults, a private outbox.
pub fn test_config(overrides: &[(&str, &str)]) -> Config {
    let outbox = std::env::temp_dir().join(format!("um-outbox-{}", uuid::Uuid::new_v4()));
    let outbox = outbox.to_string_lossy().into_owned();
    let mut vars: Vec<(String, String)> = vec![
        ("SMS_OUTBOX_DIR".into(), format!("{outbox}-sms")),
        ("MAIL_OUTBOX_DIR".into(), outbox),
        ("JWT_PRIVATE_KEY_PEM".into(), test_key_pem().to_string()),
        ("MFA_ENCRYPTION_KEY".into(), TEST_MFA_KEY.to_string()),
        // Cheap Argon2 parameters keep the suite fast; the production
        // parameters are exercised by their own test.
        ("ARGON2_MEMORY_KIB".into(), "1024".into()),
        ("ARGON2_ITERATIONS".into(), "1".into()),
    ];
    vars.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    match Config::from_lookup(|name| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }) {
        Ok(config) => config,
        Err(err) => panic!("test configuration is invalid: {err}"),
    }
}

/// One answer of the API, body parsed as JSON when there is one.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl TestResponse {
    /// The problem+json `code`, if the body has one.
    pub fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The whole API (every router on one, like the local server) on a test database.
pub struct TestApp {
    pub pool: PgPool,
    pub state: AppState,
    pub router: Router,
    /// The client address every request comes from (distinct per app, so
    /// rate limits kept in the shared Redis do not cross tests).
    pub client: std::net::SocketAddr,
}

pub use shared::db::APP_ROLE;

/// A pool on `pool`'s database whose connections act as [`APP_ROLE`].
pub fn app_pool(pool: &PgPool) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                let set_role = format!("SET ROLE {APP_ROLE}");
                sqlx::Executor::execute(&mut *conn, sqlx::AssertSqlSafe(set_role)).await?;
                Ok(())
            })
        })
        .connect_lazy_with((*pool.connect_options()).clone())
}

fn random_client() -> std::net::SocketAddr {
    let b = uuid::Uuid::new_v4().into_bytes();
    std::net::SocketAddr::from(([10, b[0], b[1], b[2]], 40000))
}

impl TestApp {
    pub fn new(pool: PgPool) -> Self {
        Self::with_config(pool, &[])
    }

    /// The app runs as the API functions do in AWS: connected as the
    /// `user_management_app` role, which cannot alter the audit trail; so
    /// every test also proves that role's grants suffice. `pool` (the
    /// owner's) stays for the tests' own setup and checks.
    pub fn with_config(pool: PgPool, overrides: &[(&str, &str)]) -> Self {
        let state = match AppState::with_db(test_config(overrides), Db::from_pool(app_pool(&pool)))
        {
            Ok(state) => state,
            Err(err) => panic!("building the test state failed: {err:#}"),
        };
        let router = shared::api::app(state.clone());
        Self {
            pool,
            state,
            router,
            client: random_client(),
        }
    }

    /// Serves the app on an ephemeral 127.0.0.1 port (with the client
    /// address taken from the connection, as the local server does); the
    /// server lives as long as the test's runtime. Returns the base URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding an ephemeral port");
        let addr = listener.local_addr().expect("local address");
        let app = self
            .router
            .clone()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    /// Wraps a router built elsewhere (no test database).
    pub fn from_router(router: Router) -> Self {
        let config = test_config(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")]);
        let state = match AppState::from_config(config) {
            Ok(state) => state,
            Err(err) => panic!("building the test state failed: {err:#}"),
        };
        Self {
            pool: state.db.write.clone(),
            state,
            router,
            client: random_client(),
        }
    }

    /// Sends a raw request through the router.
    pub async fn send(&self, mut request: Request<Body>) -> TestResponse {
        if request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_none()
        {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(self.client));
        }
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => panic!("reading the body failed: {err}"),
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// A request with an optional JSON body and bearer token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = bearer {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        match builder.body(body) {
            Ok(request) => self.send(request).await,
            Err(err) => panic!("bad test request: {err}"),
        }
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.call(Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> TestResponse {
        self.call(Method::POST, path, Some(body), None).await
    }
}

/// Asserts a problem+json answer with `status` and `code`, and that its
/// `request_id` equals the `x-request-id` header.
#[track_caller]
pub fn assert_problem(response: &TestResponse, status: u16, code: &str) {
    assert_eq!(
        response.status.as_u16(),
        status,
        "unexpected status, body: {}",
        response.body
    );
    assert_eq!(response.code(), Some(code), "body: {}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    let header_id = response.header("x-request-id");
    assert!(header_id.is_some_and(|id| !id.is_empty()));
    assert_eq!(
        response.body.get("request_id").and_then(Value::as_str),
        header_id
    );
}

/// A registered user's credentials.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: uuid::Uuid,
    pub username: String,
    pub email: String,
    pub password: String,
}

/// A password that passes every strength rule.
pub const STRONG_PASSWORD: &str = "Correct-Horse-Battery-9!";

impl TestApp {
    /// Registers `username` with `<username>@example.com` and the strong password.
    pub async fn register(&self, username: &str) -> TestUser {
        let email = format!("{username}@example.com");
        let response = self
            .post(
                "/v1/auth/register",
                serde_json::json!({"username": username, "email": email, "password": STRONG_PASSWORD}),
            )
            .await;
        assert_eq!(response.status, 201, "register failed: {}", response.body);
        let id = response.body["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("register returns the id");
        TestUser {
            id,
            username: username.into(),
            email,
            password: STRONG_PASSWORD.into(),
        }
    }

    pub async fn login_as(&self, user: &TestUser) -> TestResponse {
        self.post(
            "/v1/auth/login",
            serde_json::json!({"login": user.username, "password": user.password}),
        )
        .await
    }

    /// Registers and logs in; returns the user and the token pair body.
    pub async fn signed_in(&self, username: &str) -> (TestUser, Value) {
        let user = self.register(username).await;
        let response = self.login_as(&user).await;
        assert_eq!(response.status, 200, "login failed: {}", response.body);
        (user, response.body)
    }

    /// Every mail in the outbox addressed to `to`, oldest first.
    pub fn mails_to(&self, to: &str) -> Vec<Value> {
        let shared::config::MailTransport::Outbox(dir) = &self.state.config.mail_transport else {
            return Vec::new();
        };
        outbox(dir, to)
    }

    /// Every text message in the SMS outbox sent to `number`, oldest first.
    pub fn texts_to(&self, number: &str) -> Vec<Value> {
        let shared::sms::SmsTransport::Outbox(dir) = &self.state.config.sms.transport else {
            return Vec::new();
        };
        outbox(dir, number)
    }
}

/// The messages (JSON files) in the outbox folder `dir` addressed to `to`,
/// oldest first.
fn outbox(dir: &std::path::Path, to: &str) -> Vec<Value> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .filter(|message| message["to"] == to)
        .collect()
}

impl TestApp {
    /// The token of the newest mail to `to` whose link path contains `path`.
    pub fn token_from_mail(&self, to: &str, path: &str) -> Option<String> {
        self.mails_to(to).iter().rev().find_map(|mail| {
            let text = mail["text"].as_str()?;
            let start = text.find(&format!("{path}?token="))? + path.len() + "?token=".len();
            Some(
                text[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect(),
            )
        })
    }
}

impl TestApp {
    /// Gives `user` a role holding exactly `permissions` (created if need be).
    pub async fn grant(&self, user: uuid::Uuid, permissions: &[&str]) {
        let name = format!("test-{}", permissions.join("+").replace([':', '*'], "_"));
        sqlx::query(
            "INSERT INTO roles (name, permissions) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&name)
        .bind(serde_json::json!(permissions))
        .execute(&self.pool)
        .await
        .expect("creating a test role");
        sqlx::query(
            "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = $2
             ON CONFLICT DO NOTHING",
        )
        .bind(user)
        .bind(&name)
        .execute(&self.pool)
        .await
        .expect("assigning a test role");
    }

    /// A signed-in user holding `permissions`; returns the user and an access token.
    pub async fn user_with(&self, username: &str, permissions: &[&str]) -> (TestUser, String) {
        let user = self.register(username).await;
        if !permissions.is_empty() {
            self.grant(user.id, permissions).await;
        }
        let pair = self.login_as(&user).await;
        assert_eq!(pair.status, 200, "{}", pair.body);
        let token = pair.body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (user, token)
    }

    pub async fn get_as(&self, path: &str, token: &str) -> TestResponse {
        self.call(Method::GET, path, None, Some(token)).await
    }
}
