//! Performance and reliability tooling for the user-management API.
//!
//! - [`seed`]: fills a database with realistic data, generated set-based by
//!   PostgreSQL.
//! - [`queries`]: times the data layer's query classes on a seeded database.
//! - [`load`]: a mixed HTTP workload against a running server, then a
//!   consistency audit of the database it wrote to.
//!
//! The binary (`cargo xtask seed | bench | load`) drives them; the test
//! suite runs each on a small database so this code cannot rot.

pub mod cleanup_scale;
pub mod client;
pub mod cpu;
pub mod floor;
pub mod http_bench;
pub mod http_report;
pub mod indexes;
pub mod load;
pub mod queries;
pub mod seed;
pub mod stats;
pub mod wrk;
