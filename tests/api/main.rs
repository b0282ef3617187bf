//! Integration tests: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod cleanup;
mod http;
mod schema;
