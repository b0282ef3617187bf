//! CORS for browser clients on other origins (`CORS_ALLOWED_ORIGINS`).
//!
//! Only the listed origins, exactly, and never `*`: credentials (the refresh
//! cookie) are allowed, and a wildcard with credentials would hand every
//! site a signed-in user's session. A request from any other origin passes
//! through untouched: no CORS header at all, so the browser blocks the page
//! from reading the answer, and a preflight gets the router's own 405.
//! tower-http's layer does the header work for the allowed ones.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::token_transport::TOKEN_TRANSPORT;
use crate::config::ConfigError;

/// The methods the routes use (a test holds this to openapi.json).
pub const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The request headers the routes read.
pub fn allowed_headers() -> [HeaderName; 3] {
    [
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        TOKEN_TRANSPORT.clone(),
    ]
}

/// The response headers a page may read besides the simple ones.
fn exposed_headers() -> [HeaderName; 4] {
    [
        HeaderName::from_static("x-request-id"),
        header::RETRY_AFTER,
        header::LOCATION,
        header::WWW_AUTHENTICATE,
    ]
}

/// How long a browser may reuse a preflight's answer (10 minutes).
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// The allowed origins, parsed once per cold start.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Arc<[HeaderValue]>,
    /// Echoes the request's origin: run only after [`Cors::allows`].
    layer: CorsLayer,
}

impl Cors {
    /// `CORS_ALLOWED_ORIGINS`: comma-separated `scheme://host[:port]`
    /// origins; empty or unset is no CORS (None).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(raw) = get("CORS_ALLOWED_ORIGINS") else {
            return Ok(None);
        };
        let mut origins = Vec::new();
        for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            origins.push(parse_origin(origin).map_err(|why| ConfigError::Invalid {
                name: "CORS_ALLOWED_ORIGINS",
                why,
            })?);
        }
        if origins.is_empty() {
            return Ok(None);
        }
        // The middleware has matched the origin against the list before the
        // layer runs, so the layer only echoes it (no second check, and
        // nothing to copy per request). Private: never used without that
        // check.
        let layer = CorsLayer::new()
            .allow_origin(AllowOrigin::mirror_request())
            .allow_credentials(true)
            .allow_methods(METHODS.to_vec())
            .allow_headers(allowed_headers().to_vec())
            .expose_headers(exposed_headers().to_vec())
            .max_age(MAX_AGE);
        Ok(Some(Self {
            origins: origins.into(),
            layer,
        }))
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.origins.iter().any(|allowed| allowed == origin)
    }
}

/// One origin exactly as a browser sends it (compared byte for byte):
/// lowercase, no default port, no trailing dot or slash; `https`, or `http`
/// for a loopback host only (a page on plain HTTP elsewhere could be
/// rewritten in transit and then act with the user's credentials).
fn parse_origin(origin: &str) -> Result<HeaderValue, String> {
    if origin == "*" || origin == "null" {
        return Err(format!(
            "`{origin}` is not allowed: list exact origins (credentials are allowed)"
        ));
    }
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| format!("`{origin}`: an origin starts with https:// or http://"))?;
    let host_ok = !rest.is_empty()
        && rest.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | ':' | '[' | ']')
        });
    if !host_ok || rest.ends_with('.') {
        return Err(format!(
            "`{origin}`: an origin is scheme://host[:port] as browsers send it: lowercase, \
             without path, slash, wildcard or trailing dot"
        ));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => {
            return Err(format!(
                "`{origin}`: an origin starts with https:// or http://"
            ));
        }
    };
    if port == Some(default_port) {
        return Err(format!(
            "`{origin}`: browsers leave the default port out of an origin; so must this"
        ));
    }
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    if scheme == "http" && !loopback {
        return Err(format!(
            "`{origin}`: only https origins, or http on a loopback host (localhost, 127.0.0.1)"
        ));
    }
    HeaderValue::from_str(origin).map_err(|e| format!("`{origin}`: {e}"))
}

/// Middleware: the CORS layer for allowed origins, nothing for the rest.
pub async fn middleware(State(cors): State<Cors>, req: Request, next: Next) -> Response {
    let allowed = req
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|origin| cors.allows(origin));
    if !allowed {
        return next.run(req).await;
    }
    let inner = tower::service_fn(move |req: Request| {
        let next = next.clone();
        async move { Ok::<_, std::convert::Infallible>(next.run(req).await) }
    });
    match tower::Layer::layer(&cors.layer, inner).oneshot(req).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(value: &str) -> Result<Option<Cors>, ConfigError> {
        Cors::from_lookup(&|name: &str| (name == "CORS_ALLOWED_ORIGINS").then(|| value.to_string()))
    }

    #[test]
    fn exact_origins_only() {
        let parsed = cors("https://app.example.com, http://127.0.0.1:3001, https://a.example:8443")
            .unwrap()
            .unwrap();
        assert!(parsed.allows(&HeaderValue::from_static("https://app.example.com")));
        assert!(parsed.allows(&HeaderValue::from_static("http://127.0.0.1:3001")));
        assert!(!parsed.allows(&HeaderValue::from_static("https://evil.example.com")));
        assert!(!parsed.allows(&HeaderValue::from_static("http://app.example.com")));
        assert!(cors("").unwrap().is_none());
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://app.example.com/",
            "https://*.example.com",
            "https://App.example.com",
            "https://app.example.com:443",
            "http://127.0.0.1:80",
            "https://app.example.com.",
            "http://app.example.com",
            "ftp://app.example.com",
        ] {
            let error = cors(bad).unwrap_err().to_string();
            assert!(error.contains("CORS_ALLOWED_ORIGINS"), "{bad}: {error}");
        }
    }
}
