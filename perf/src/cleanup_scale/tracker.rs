//! Timing the job's transactions from samples of `pg_stat_activity`: exact
//! when a backend is seen idle afterwards, else bounded by the next one.

use super::*;

/// A statement's text, whitespace collapsed, at most 140 characters.
pub(super) fn statement_key(query: &str) -> String {
    let collapsed = query.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(140) {
        Some((at, _)) => format!("{}…", &collapsed[..at]),
        None => collapsed,
    }
}

/// A row of `pg_stat_activity` for one of the job's backends: pid, state,
/// xact_start, query_start, state_change, query.
pub(super) type Activity = (
    i32,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    String,
);

/// The transaction a backend was last seen running.
#[derive(Debug, Clone)]
struct Open {
    /// `xact_start`: when it began (its locks are held from then on).
    start: DateTime<Utc>,
    /// `query_start` of its statement as last seen (a bound statement is
    /// reported once at Bind and again at Execute, in one transaction).
    query_start: DateTime<Utc>,
    query: String,
}

#[derive(Debug, Default)]
pub(super) struct Tracker {
    /// Per backend: the transaction seen running, not yet timed.
    open: HashMap<i32, Open>,
    /// Per backend: `query_start` of the last statement timed from an idle
    /// row (an idle backend shows the same one sample after sample).
    last_idle: HashMap<i32, DateTime<Utc>>,
    pub(super) longest: Longest,
    pub(super) statements: HashMap<String, StatementTimes>,
    pub(super) seen: usize,
    pub(super) exact: usize,
    pub(super) samples: usize,
}

pub(super) fn span(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

impl Tracker {
    /// Ends every transaction still open at the last sample, by `ended` at
    /// the latest (the job had returned then): bounded, not exact.
    pub(super) fn finish_open(&mut self, ended: DateTime<Utc>) {
        for (_, open) in std::mem::take(&mut self.open) {
            self.finish(span(open.start, ended), false, &open.query);
        }
    }

    pub(super) fn finish(&mut self, d: Duration, exact: bool, query: &str) {
        self.seen += 1;
        if exact {
            self.exact += 1;
        }
        let key = statement_key(query);
        let st = self.statements.entry(key.clone()).or_default();
        st.statement = key;
        st.transactions += 1;
        st.longest = st.longest.max(d);
        st.total += d;
        if d > self.longest.duration {
            self.longest = Longest {
                duration: d,
                exact,
                query: query.chars().take(160).collect(),
            };
        }
    }

    /// One sample of the job's backends. Each statement of the job runs in a
    /// transaction of its own.
    pub(super) fn observe(&mut self, rows: &[Activity]) {
        self.samples += 1;
        for (pid, state, xact_start, query_start, state_change, query) in rows {
            let pid = *pid;
            if state.as_deref() == Some("idle") {
                // The last statement ended at state_change.
                let (Some(started), Some(ended)) = (*query_start, *state_change) else {
                    continue;
                };
                if self.last_idle.get(&pid) == Some(&started) {
                    continue; // timed already
                }
                self.last_idle.insert(pid, started);
                match self.open.remove(&pid) {
                    // The transaction seen running: exact, from its start.
                    Some(open) if open.query_start == started => {
                        self.finish(span(open.start, ended), true, query);
                    }
                    // Another one, which ended before this statement began.
                    Some(open) => {
                        self.finish(span(open.start, started), false, &open.query);
                        self.finish(span(started, ended), true, query);
                    }
                    None => self.finish(span(started, ended), true, query),
                }
                continue;
            }
            let (Some(start), Some(query_start)) = (xact_start.or(*query_start), *query_start)
            else {
                continue;
            };
            match self.open.get_mut(&pid) {
                Some(open) if open.start == start => open.query_start = query_start,
                Some(open) => {
                    // A new transaction: the previous one ended before it began.
                    let previous = std::mem::replace(
                        open,
                        Open {
                            start,
                            query_start,
                            query: query.clone(),
                        },
                    );
                    self.finish(span(previous.start, start), false, &previous.query);
                }
                None => {
                    self.open.insert(
                        pid,
                        Open {
                            start,
                            query_start,
                            query: query.clone(),
                        },
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms)
    }

    fn row(state: &str, xact: Option<i64>, query: i64, change: i64, sql: &str) -> Activity {
        (
            7,
            Some(state.to_string()),
            xact.and_then(at),
            at(query),
            at(change),
            sql.to_string(),
        )
    }

    #[test]
    fn transactions_are_timed_exactly_or_bounded_by_the_next() {
        let mut t = Tracker::default();
        // Bind, then Execute, of one transaction; then it ends (idle).
        t.observe(&[row("active", Some(0), 0, 0, "DELETE a")]);
        t.observe(&[row("active", Some(0), 1, 1, "DELETE a")]);
        t.observe(&[row("idle", None, 1, 300, "DELETE a")]);
        t.observe(&[row("idle", None, 1, 300, "DELETE a")]);
        assert_eq!((t.seen, t.exact), (1, 1));
        assert_eq!(t.longest.duration, Duration::from_millis(300));
        assert!(t.longest.exact);
        // Seen running, then the next one already running: bounded.
        t.observe(&[row("active", Some(1000), 1000, 1000, "DELETE b")]);
        t.observe(&[row("active", Some(1500), 1500, 1500, "DELETE b")]);
        assert_eq!((t.seen, t.exact), (2, 1));
        assert_eq!(t.longest.duration, Duration::from_millis(500));
        assert!(!t.longest.exact);
        // Its end missed, the one after ended: bounded, then exact.
        t.observe(&[row("idle", None, 2000, 2100, "UPDATE c")]);
        assert_eq!((t.seen, t.exact), (4, 2));
        let b = &t.statements[&statement_key("DELETE b")];
        assert_eq!(b.transactions, 2);
        assert_eq!(b.longest, Duration::from_millis(500));
        assert_eq!(b.total, Duration::from_millis(1000));
    }
}
