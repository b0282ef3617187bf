//! The HTTP benchmark's report: each figure with its ratio to the floor,
//! the floors, the bounds of refresh and login, and the targets.

use std::fmt::Write as _;

use crate::floor::Pgbench;
use crate::http_bench::HttpReport;
use crate::stats::ms;

/// The cores the server, the database and the load generator share.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

impl HttpReport {
    fn floor_at(&self, connections: usize) -> Option<&Pgbench> {
        self.floors.iter().find(|f| f.clients == connections)
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        if !self.label.is_empty() {
            let _ = writeln!(out, "### {}\n", self.label);
        }
        let _ = writeln!(
            out,
            "| route | generator | conns | requests | req/s | / read floor | p50 ms | p99 ms | errors | CPU µs/req: server | database | generator |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let ratio = self.floor_at(r.connections).map_or("?".to_string(), |f| {
                format!("{:.1} %", 100.0 * r.rps / f.tps.max(f64::EPSILON))
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
                r.route,
                r.generator,
                r.connections,
                r.requests,
                r.rps,
                ratio,
                ms(r.latency.p50),
                ms(r.latency.p99),
                r.errors,
                r.cpu.server_us,
                r.cpu.database_us,
                r.cpu.generator_us,
            );
        }
        let _ = writeln!(
            out,
            "\n| floor (same cluster, same run) | clients | tx/s | latency avg ms |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for f in &self.floors {
            let _ = writeln!(
                out,
                "| read: `pgbench -M prepared`, one users primary-key lookup | {} | {:.0} | {:.2} |",
                f.clients, f.tps, f.latency_avg_ms
            );
        }
        if let Some(f) = &self.write_floor {
            let _ = writeln!(
                out,
                "| write: `pgbench -M prepared -N` (scale 1) | {} | {:.0} | {:.2} |",
                f.clients, f.tps, f.latency_avg_ms
            );
        }
        let cores = cores();
        let _ = writeln!(
            out,
            "\nRS256 signature: {:.0} µs on one core. Argon2id verification: {:.1} ms on one core, \
             so logins are bound by {:.0} req/s on {cores:.0} cores.",
            self.rs256_sign_us,
            self.argon2_verify_ms,
            cores * 1e3 / self.argon2_verify_ms.max(f64::EPSILON)
        );
        for r in self
            .rows
            .iter()
            .filter(|r| r.route == "POST /v1/auth/refresh")
        {
            let bound = cores * 1e6 / (self.rs256_sign_us + r.cpu.database_us).max(f64::EPSILON);
            let _ = writeln!(
                out,
                "Refresh at {} connections: bound {:.0} req/s = {cores:.0} cores ÷ ({:.0} µs signing + {:.0} µs database CPU per refresh); measured {:.0} ({:.0} % of the bound).",
                r.connections,
                bound,
                self.rs256_sign_us,
                r.cpu.database_us,
                r.rps,
                100.0 * r.rps / bound
            );
        }
        for r in self
            .rows
            .iter()
            .filter(|r| r.route == "POST /v1/auth/login")
        {
            let bound = cores * 1e3 / self.argon2_verify_ms.max(f64::EPSILON);
            let _ = writeln!(
                out,
                "Login at {} connections: {:.0} req/s, {:.0} % of the Argon2id bound.",
                r.connections,
                r.rps,
                100.0 * r.rps / bound
            );
        }
        out
    }
}
