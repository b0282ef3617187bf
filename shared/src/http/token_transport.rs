//! How a token pair travels. By default both tokens are in the JSON body.
//! A request with `X-Token-Transport: cookie` (login, MFA verification,
//! passkey login, refresh, logout) moves the refresh token into an HttpOnly
//! cookie instead, out of reach of page JavaScript; the access token stays
//! in the body, for the page to hold in memory.
//!
//! CSRF: the cookie is `SameSite=Strict`, so a browser never sends it on a
//! cross-site request; and it counts only on a request that carries the
//! custom header, which a form cannot send and which makes every
//! cross-origin call a CORS preflight that only `CORS_ALLOWED_ORIGINS` pass
//! (a same-site sibling such as `evil.example.com` included). A request with
//! the cookie but without the header is a body-mode request without a
//! token: a refresh answers 401, a logout ends nothing.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};

use crate::error::{Error, Result};

pub static TOKEN_TRANSPORT: HeaderName = HeaderName::from_static("x-token-transport");

/// Where the refresh token goes: [`TokenTransport::Body`] unless the request
/// says `X-Token-Transport: cookie`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTransport {
    Body,
    Cookie,
}

impl<S: Send + Sync> FromRequestParts<S> for TokenTransport {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        match parts
            .headers
            .get(&TOKEN_TRANSPORT)
            .map(HeaderValue::as_bytes)
        {
            None => Ok(Self::Body),
            Some(v) if v.eq_ignore_ascii_case(b"body") => Ok(Self::Body),
            Some(v) if v.eq_ignore_ascii_case(b"cookie") => Ok(Self::Cookie),
            Some(_) => Err(Error::field(
                "X-Token-Transport",
                "must be `cookie` (or `body`, the default)",
            )),
        }
    }
}

/// The refresh cookie's shape. `secure` is the default and what every
/// function in AWS uses: `__Host-refresh`, `Secure`. The local server,
/// which speaks plain HTTP, uses `refresh` without `Secure` (a browser
/// refuses a `Secure` or `__Host-` cookie from `http://127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshCookie {
    pub secure: bool,
}

impl Default for RefreshCookie {
    fn default() -> Self {
        Self { secure: true }
    }
}

impl RefreshCookie {
    pub fn name(self) -> &'static str {
        if self.secure {
            "__Host-refresh"
        } else {
            "refresh"
        }
    }

    fn build(self, value: String, max_age_seconds: i64) -> HeaderValue {
        let cookie = Cookie::build((self.name(), value))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(cookie::time::Duration::seconds(max_age_seconds.max(0)))
            .build();
        // The token is base64url and the attributes are fixed: always a
        // valid header value.
        HeaderValue::from_str(&cookie.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("refresh=; Max-Age=0; Path=/"))
    }

    /// `Set-Cookie` holding `token` for `max_age_seconds`.
    pub fn set(self, token: String, max_age_seconds: i64) -> HeaderValue {
        self.build(token, max_age_seconds)
    }

    /// `Set-Cookie` that deletes the cookie.
    pub fn clear(self) -> HeaderValue {
        self.build(String::new(), 0)
    }

    /// The cookie's value in the request's `Cookie` headers, if any. Two
    /// cookies of that name mean one was planted (a sibling on the same
    /// site can set `refresh` with a longer path, sent first): neither is
    /// used, lest the victim's page rotate the attacker's session
    /// (fixation), so that counts as none. `__Host-` cookies cannot be
    /// planted that way.
    pub fn read(self, headers: &HeaderMap) -> Option<String> {
        let mut found = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(std::result::Result::ok)
            .filter(|cookie| cookie.name() == self.name() && !cookie.value().is_empty())
            .map(|cookie| cookie.value().to_string());
        match (found.next(), found.next()) {
            (one, None) => one,
            (_, Some(_)) => None,
        }
    }

    /// The refresh token a refresh or logout presents: the body's when it
    /// has one (in either mode), else in cookie mode the cookie's; none
    /// otherwise, which a refresh refuses (401) and a logout ends nothing
    /// with. The cookie is never read without the header.
    pub fn presented(
        self,
        transport: TokenTransport,
        in_body: Option<String>,
        headers: &HeaderMap,
    ) -> Option<String> {
        match (transport, in_body) {
            (_, Some(token)) => Some(token),
            (TokenTransport::Body, None) => None,
            (TokenTransport::Cookie, None) => self.read(headers),
        }
    }

    /// `response` with the cookie deleted when the request was in cookie
    /// mode (an ended or killed session leaves no dead cookie behind).
    pub fn cleared_in(self, transport: TokenTransport, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        if transport == TokenTransport::Cookie {
            response
                .headers_mut()
                .append(header::SET_COOKIE, self.clear());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_host_only_http_only_strict_and_read_back() {
        let cookie = RefreshCookie::default();
        let set = cookie.set("abc_DEF-123".into(), 1_209_600);
        let parsed = Cookie::parse(set.to_str().unwrap().to_string()).unwrap();
        assert_eq!(parsed.name(), "__Host-refresh");
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.same_site(), Some(SameSite::Strict));
        assert_eq!(parsed.path(), Some("/"));
        assert_eq!(
            parsed.max_age(),
            Some(cookie::time::Duration::seconds(1_209_600))
        );
        assert!(parsed.domain().is_none(), "__Host- cookies name no domain");

        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("refresh=plain; __Host-refresh=abc_DEF-123; other=1"),
        );
        assert_eq!(cookie.read(&headers).as_deref(), Some("abc_DEF-123"));
        let local = RefreshCookie { secure: false };
        assert_eq!(local.read(&headers).as_deref(), Some("plain"));
        // A planted second `refresh` (longer path, sent first) voids both.
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("refresh=planted; refresh=victims"),
        );
        assert!(local.read(&headers).is_none());
        assert!(
            !local
                .set("x".into(), 5)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
    }

    #[test]
    fn the_cookie_counts_only_in_cookie_mode() {
        let cookie = RefreshCookie::default();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("__Host-refresh=t"));
        assert_eq!(cookie.presented(TokenTransport::Body, None, &headers), None);
        assert_eq!(
            cookie
                .presented(TokenTransport::Cookie, None, &headers)
                .as_deref(),
            Some("t")
        );
        // A token in the body is the token, whatever the cookie says.
        assert_eq!(
            cookie
                .presented(TokenTransport::Cookie, Some("u".into()), &headers)
                .as_deref(),
            Some("u")
        );
    }
}
