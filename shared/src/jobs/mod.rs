//! Scheduled jobs (not HTTP): the nightly cleanup.

pub mod bootstrap;
pub mod cleanup;
pub mod migrate;
