//! `ApiJson<T>`: the JSON body extractor with the API's rejections (docs/api.md)
//! (415 without `application/json`, 413 over 16 KiB, 400 for broken JSON,
//! 422 naming the field for a wrong shape or an unknown field).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, FieldError};

/// The largest accepted request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// A JSON request body (and, as a response, a JSON body).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned + utoipa::PartialSchema,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(Error::UnsupportedMediaType);
        }
        let declared_too_large = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|len| len > MAX_BODY_BYTES);
        if declared_too_large {
            return Err(Error::PayloadTooLarge);
        }
        let limited = req
            .map(|body| axum::body::Body::new(http_body_util::Limited::new(body, MAX_BODY_BYTES)));
        let bytes = Bytes::from_request(limited, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
                    || rejection.body_text().contains("length limit")
                {
                    Error::PayloadTooLarge
                } else {
                    Error::MalformedJson("The body could not be read.".into())
                }
            })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Deserialises `bytes`, telling broken JSON (400) from a wrong shape (422).
/// A NUL character (`\u0000`) is refused in any string: PostgreSQL text
/// cannot hold it, and no field of the API needs it.
pub fn parse<T: DeserializeOwned + utoipa::PartialSchema>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
        return Err(Error::field(
            "body",
            "strings must not contain NUL characters",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(de) {
        // Every body of the API is an object; serde would also take a
        // struct written as an array (`[null, null]`).
        Ok(_) if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') => Err(
            Error::Validation(vec![FieldError::new("body", "must be a JSON object")]),
        ),
        Ok(value) => Ok(value),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => {
                    let message = inner.to_string();
                    let message = message
                        .split(" at line ")
                        .next()
                        .unwrap_or(&message)
                        .to_string();
                    let field = match (unknown_field_name(&message), path.as_str()) {
                        (Some(name), ".") => name,
                        (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => {
                            p.to_string()
                        }
                        (Some(name), p) => format!("{p}.{name}"),
                        (None, ".") => "body".into(),
                        (None, p) => p.to_string(),
                    };
                    if message.starts_with("missing field") && path == "." {
                        // serde stops at the first missing field; name them all.
                        return Err(Error::Validation(missing_fields::<T>(bytes)));
                    }
                    Err(Error::Validation(vec![FieldError::new(field, message)]))
                }
                _ => Err(Error::MalformedJson(format!(
                    "The body is not valid JSON (line {}, column {}).",
                    inner.line(),
                    inner.column()
                ))),
            }
        }
    }
}

/// Every required field of `T`'s schema that the body's object lacks.
fn missing_fields<T: utoipa::PartialSchema>(bytes: &[u8]) -> Vec<FieldError> {
    use utoipa::openapi::{RefOr, schema::Schema};
    let present: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).unwrap_or_default();
    let RefOr::T(Schema::Object(object)) = T::schema() else {
        return Vec::new();
    };
    object
        .required
        .iter()
        .filter(|name| !present.contains_key(name.as_str()))
        .map(|name| FieldError::new(name.as_str(), format!("missing field `{name}`")))
        .collect()
}

/// serde names a missing or unknown field only in its message: "unknown field `x`".
fn unknown_field_name(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    (message.starts_with("unknown field") || message.starts_with("missing field"))
        .then(|| message[start..start + len].to_string())
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        login: String,
        password: String,
    }

    fn field_of(err: Error) -> Option<String> {
        match err {
            Error::Validation(errors) => errors.first().map(|e| e.field.clone()),
            _ => None,
        }
    }

    #[test]
    fn nul_characters_are_refused() {
        let err = parse::<Login>(br#"{"login": "a\u0000b", "password": "b"}"#).err();
        assert!(matches!(err, Some(Error::Validation(_))));
    }

    #[test]
    fn a_struct_written_as_an_array_is_refused() {
        // serde accepts `["a", "b"]` for a struct; the API's bodies are objects.
        let err = parse::<Login>(br#"["a", "b"]"#).err().and_then(field_of);
        assert_eq!(err.as_deref(), Some("body"));
        assert!(parse::<Login>(br#" {"login": "a", "password": "b"}"#).is_ok());
    }

    #[test]
    fn every_missing_field_is_named() {
        let Err(Error::Validation(errors)) = parse::<Login>(b"{}") else {
            panic!("{{}} must fail validation");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["login", "password"]);
    }

    #[test]
    fn broken_json_is_malformed() {
        assert!(matches!(
            parse::<Login>(b"{\"login\": "),
            Err(Error::MalformedJson(_))
        ));
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        let missing = parse::<Login>(br#"{"login": "a"}"#)
            .err()
            .and_then(field_of);
        assert_eq!(missing.as_deref(), Some("password"));
        let unknown = parse::<Login>(br#"{"login": "a", "password": "b", "pasword": "c"}"#)
            .err()
            .and_then(field_of);
        assert_eq!(unknown.as_deref(), Some("pasword"));
        let wrong_type = parse::<Login>(br#"{"login": 1, "password": "b"}"#)
            .err()
            .and_then(field_of);
        assert_eq!(wrong_type.as_deref(), Some("login"));
    }
}
