//! Scheduled jobs (not HTTP): the nightly cleanup.

pub mod cleanup;
pub mod migrate;
