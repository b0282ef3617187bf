//! The common crate of the user-management Lambda functions: configuration,
//! the PostgreSQL data layer, domain types, security and the HTTP routers.

pub mod api;
pub mod aws;
pub mod cache;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod jobs;
pub mod lambda;
pub mod local;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod security;
pub mod session;
pub mod sms;
pub mod state;
pub mod telemetry;

pub use config::Config;
pub use error::{Error, Result};
pub use state::AppState;
