//! Keyset pagination: `?limit=` (1–100, default 20) and an opaque `?cursor=`
//! naming the last row of the previous page, so page 500 costs what page 1 costs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// A list answer: `{"items": [...], "next_cursor": "…" | null}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Checks `limit` (1–100, default 20).
pub fn limit(raw: Option<i64>) -> Result<i64, Error> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(Error::field("limit", "must be between 1 and 100")),
    }
}

/// Decodes an opaque cursor into its position type.
pub fn decode<C: DeserializeOwned>(raw: Option<&str>) -> Result<Option<C>, Error> {
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| Error::field("cursor", "is not a cursor this API issued"))
}

/// Encodes a position as an opaque cursor.
pub fn encode<C: Serialize>(position: &C) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

/// Builds a page from `limit + 1` fetched rows: the extra row only says
/// that another page exists; the cursor names the last row kept.
pub fn page<R, T, C: Serialize>(
    mut rows: Vec<R>,
    limit: i64,
    position: impl Fn(&R) -> C,
    view: impl Fn(&R) -> T,
) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|last| encode(&position(last))))
        .flatten();
    Page {
        items: rows.iter().map(view).collect(),
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).ok(), Some(20));
        assert_eq!(limit(Some(100)).ok(), Some(100));
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(101)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = encode(&(5, "x".to_string()));
        assert_eq!(
            decode::<(i32, String)>(Some(&c)).ok().flatten(),
            Some((5, "x".to_string()))
        );
        assert!(decode::<(i32, String)>(Some("%%%")).is_err());
        assert!(decode::<(i32, String)>(Some("e30")).is_err());
    }
}
