//! The reusable part of the developer commands: finding or starting
//! PostgreSQL, Redis and moto (also used by the fault tests, which stop and
//! restart a PostgreSQL cluster of their own), and the routing table read
//! from openapi.json (also used by the tests), and the README command check.

pub mod readme;
pub mod routes;
pub mod services;
