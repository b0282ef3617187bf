//! Integration tests: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod auth;
mod aws;
mod bench_smoke;
mod cleanup;
mod docs;
mod faults;
mod hostile;
mod http;
mod lambda;
mod load;
mod logs;
mod openapi;
mod perf_smoke;
mod plans;
mod privileges;
mod races;
mod schema;
mod session;
mod stepup;
mod supersede;
mod template;
mod timing;
mod tokens;
mod users;
