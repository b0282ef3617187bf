//! HTTP plumbing shared by every router: request context (id, client IP),
//! security headers, the JSON body extractor and the problem+json fallbacks.

pub mod cors;
pub mod json;
pub mod pagination;
pub mod query;
pub mod request_id;
pub mod token_transport;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::request::RequestContext;
use tracing::Instrument;
use uuid::Uuid;

pub use json::ApiJson;
pub use pagination::Page;
pub use query::ApiQuery;

use crate::error::Error;

/// Who sent the request, as far as the transport tells: put in the request's
/// extensions by [`context`] for handlers, rate limits and audit rows.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub request_id: String,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl RequestMeta {
    /// The audit context of this request; `actor` is the acting user when
    /// it differs from the subject of the change (an admin).
    pub fn audit(&self, actor: Option<Uuid>) -> crate::db::audit::AuditContext {
        crate::db::audit::AuditContext {
            request_id: Some(self.request_id.clone()),
            ip: self.ip,
            user_agent: self.user_agent.clone(),
            actor,
        }
    }
}

/// The user a request's bearer token names, once the token's signature was
/// verified: set by `AuthUser`, read by [`context`] to log refusals.
#[derive(Debug, Clone, Default)]
pub struct Subject(Arc<OnceLock<Uuid>>);

impl Subject {
    pub fn set(&self, user_id: Uuid) {
        let _ = self.0.set(user_id);
    }

    pub fn get(&self) -> Option<Uuid> {
        self.0.get().copied()
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Middleware on every router: assigns the request id (API Gateway's, or a new
/// UUID locally), records the client, opens the log span and sets the
/// response headers every answer carries.
pub async fn context(mut req: Request, next: Next) -> Response {
    // A NUL (`%00`) names nothing: PostgreSQL text cannot hold it, so a
    // path parameter carrying one would fail in the database (a 500).
    if req.uri().path().to_ascii_lowercase().contains("%00") {
        let mut response = axum::response::IntoResponse::into_response(Error::NotFound);
        if let Ok(value) = HeaderValue::from_str(&Uuid::new_v4().to_string()) {
            response.headers_mut().insert(X_REQUEST_ID.clone(), value);
        }
        return response;
    }
    let lambda = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(ctx)) => Some((
            ctx.request_id.clone(),
            ctx.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()),
        )),
        _ => None,
    };
    let (request_id, ip) = match lambda {
        Some((id, ip)) => (id.unwrap_or_else(|| Uuid::new_v4().to_string()), ip),
        None => (
            Uuid::new_v4().to_string(),
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ),
    };
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(512).collect());
    req.extensions_mut().insert(RequestMeta {
        request_id: request_id.clone(),
        ip,
        user_agent,
    });
    let subject = Subject::default();
    req.extensions_mut().insert(subject.clone());

    let route = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("unmatched", |p| p.as_str())
    );
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        status = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut response =
        request_id::scope(request_id.clone(), next.run(req).instrument(span.clone())).await;
    span.record("status", response.status().as_u16());
    crate::metrics::request(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0,
    );
    span.in_scope(|| {
        let status = response.status().as_u16();
        if matches!(status, 401 | 403) {
            // Refusals are security events (ASVS 16.3.2): who, where, which
            // request; never the token.
            tracing::info!(
                status,
                subject = subject.get().map(|id| id.to_string()),
                route = %route,
                request_id = %request_id,
                "access refused"
            );
        }
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "served"
        );
    });

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID.clone(), value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=63072000; includeSubDomains"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A route's path parameters, parsed: a value that does not parse (an id
/// that is not a UUID) names nothing, so 404 `not_found` as for any
/// unknown resource, never a 400 that would tell the two apart.
#[derive(Debug)]
pub struct PathOf<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for PathOf<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|_| Error::NotFound)
    }
}

/// Fallback for paths no router knows.
pub async fn not_found() -> Error {
    Error::NotFound
}

/// Fallback for known paths called with the wrong method.
pub async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}
