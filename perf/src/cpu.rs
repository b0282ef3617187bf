//! Where a benchmark's cycles went: the CPU time of processes by name, read
//! from `/proc` (Linux), sampled before and after each measured route.

/// `/proc/<pid>/stat` counts in USER_HZ, which is 100 on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// The command name of one `/proc/<pid>/stat` line and the fields after it
/// ("pid (comm) state ppid ...": comm may hold spaces and parentheses).
fn stat_fields(line: &str) -> Option<(&str, Vec<&str>)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line.get(open + 1..close)?;
    Some((comm, line.get(close + 2..)?.split_whitespace().collect()))
}

/// The sum of the tick counts at `at` (after comm: state is field 0), in seconds.
fn seconds(fields: &[&str], at: [usize; 2]) -> Option<f64> {
    let a: f64 = fields.get(at[0])?.parse().ok()?;
    let b: f64 = fields.get(at[1])?.parse().ok()?;
    Some((a + b) / TICKS_PER_SECOND)
}

/// User + system CPU (utime, stime) of one `/proc/<pid>/stat` line, and its command name.
fn parse_stat(line: &str) -> Option<(&str, f64)> {
    let (comm, fields) = stat_fields(line)?;
    Some((comm, seconds(&fields, [11, 12])?))
}

/// Own CPU plus that of reaped children (utime, stime, cutime, cstime), and
/// the command name. A process that exits moves its time into its parent's
/// children counts, so a family of processes (PostgreSQL's postmaster and
/// its backends) is summed without dropping when a backend ends.
fn parse_stat_with_children(line: &str) -> Option<(&str, f64)> {
    let (comm, fields) = stat_fields(line)?;
    Some((
        comm,
        seconds(&fields, [11, 12])? + seconds(&fields, [13, 14])?,
    ))
}

/// The CPU seconds used so far by every process named `comm` (all threads)
/// and by their exited children.
pub fn seconds_of(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|line| {
            parse_stat_with_children(&line)
                .filter(|(c, _)| *c == comm)
                .map(|(_, s)| s)
        })
        .sum()
}

/// The CPU seconds this process used so far.
pub fn own_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|line| parse_stat(&line).map(|(_, s)| s))
        .unwrap_or(0.0)
}

/// The CPU seconds of this process's children that have exited and been
/// waited for (`cutime` + `cstime`).
pub fn children_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|line| seconds(&stat_fields(&line)?.1, [13, 14]))
        .unwrap_or(0.0)
}

/// Whose CPU is the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// The server runs inside this process (tests): its CPU is this
    /// process's. A name would also count any other process of that name,
    /// such as another test binary's, running or exiting meanwhile.
    ThisProcess,
    /// Every process of this command name (`local`, a Lambda binary).
    Named(String),
}

impl Server {
    fn seconds(&self) -> f64 {
        match self {
            Server::ThisProcess => own_seconds(),
            Server::Named(name) => seconds_of(name),
        }
    }
}

/// CPU of the server, the database and the load generator, at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    server: f64,
    database: f64,
    generator: f64,
}

/// CPU per request over a measured interval, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerRequest {
    pub server_us: f64,
    pub database_us: f64,
    pub generator_us: f64,
}

impl Sample {
    /// Now, with the server's CPU read from `server`.
    pub fn take(server: &Server) -> Self {
        Self {
            server: server.seconds(),
            database: seconds_of("postgres"),
            generator: own_seconds(),
        }
    }

    /// The CPU per request between `self` and `later`.
    pub fn per_request(&self, later: &Sample, requests: u64) -> PerRequest {
        let per = |a: f64, b: f64| (b - a).max(0.0) * 1e6 / requests.max(1) as f64;
        PerRequest {
            server_us: per(self.server, later.server),
            database_us: per(self.database, later.database),
            generator_us: per(self.generator, later.generator),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_stat_line_gives_its_name_and_cpu() {
        let line = "4242 (tokio (rt) 1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100 0 0";
        let (comm, secs) = parse_stat(line).unwrap();
        assert_eq!(comm, "tokio (rt) 1");
        assert!((secs - 3.0).abs() < 1e-9, "{secs}");
    }

    #[test]
    fn this_process_is_found_by_name() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(own_seconds() > 0.0);
        let name = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(seconds_of(name.trim()) >= own_seconds() * 0.5);
        // Read in order, so only a clock tick (10 ms) may fall between them.
        let (server, own) = (Server::ThisProcess.seconds(), own_seconds());
        assert!(server <= own && own - server <= 0.011, "{server} vs {own}");
    }

    #[test]
    fn exited_children_count_with_their_parent() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime
        let line = "7 (postgres) S 1 7 7 0 -1 0 0 0 0 0 100 50 200 25 20 0 1 0";
        let (comm, secs) = parse_stat_with_children(line).unwrap();
        assert_eq!(comm, "postgres");
        assert!((secs - 3.75).abs() < 1e-9, "{secs}");
    }
}
