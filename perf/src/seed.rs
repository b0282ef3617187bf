//! Fills a migrated database with realistic data through binary `COPY`.
//!
//! What one run adds, for `--users N`:
//!
//! - `N` seeded users (minus those already there): varied names, usernames
//!   and e-mail addresses, mostly `active` with some `pending_verification`,
//!   `inactive`, `suspended` and ~2 % soft-deleted (recently: not yet due for
//!   anonymisation), created over the last three years, all with one
//!   precomputed Argon2id hash of [`SEED_PASSWORD`] so that any seeded live
//!   user can log in;
//! - about 2 refresh tokens per user (sessions of one or two rotated tokens;
//!   part expired within the last week, part revoked);
//! - about 10 audit rows per user, spread over the monthly partitions of the
//!   last three years (the partitions are created first);
//! - role assignments for ~2 % of the users (roles `support`, `moderator`,
//!   `auditor` are created if absent, `admin` is the migration's).
//!
//! With `cleanup_backlog`, it also tops up what the nightly cleanup would
//! find: `N` refresh tokens expired more than 7 days ago and `N / 50` extra
//! users due for anonymisation (half soft-deleted more than 90 days ago, half
//! past `data_retention_until`); both are counted with the cleanup's own
//! predicates first, so a second run adds only what is missing.
//!
//! Seeded users are recognised by their id (a UUIDv7 whose random bits carry
//! a marker and the user's sequence number), so a run with a larger `N` tops
//! up with new sequence numbers (unique names) and a run with the same `N`
//! adds nothing, also after the cleanup has anonymised some of them.
//!
//! Speed: the rows are generated on other threads while PostgreSQL ingests
//! them, in time order (as a real table grows), through binary `COPY` in one
//! transaction with `session_replication_role = replica` (no per-row audit
//! or foreign-key triggers; the generator keeps every reference valid
//! itself). A table that is empty before the run has its secondary indexes
//! (all but those a foreign key depends on) dropped in that transaction and
//! recorded, with every index and constraint definition, in a journal table
//! that commits with the data; after the commit they are recreated from
//! their catalog definitions on two connections at once, checked identical
//! to the originals, the tables analyzed and the journal dropped. A run
//! interrupted before the commit leaves nothing; one interrupted after it is
//! finished by the next run.

use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::SinkExt as _;
use futures::StreamExt as _;
use futures::channel::mpsc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, PgPool};
use uuid::Uuid;

/// The password of every seeded user (passes the app's strength rules).
pub const SEED_PASSWORD: &str = "Seeded-Passw0rd-Lantern-42";

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Seeded users wanted in total (not counting the backlog users).
    pub users: u64,
    /// Also top up an expired-token and anonymisation backlog for the cleanup.
    pub cleanup_backlog: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    /// Seeded users (not backlog) before the run.
    pub users_before: u64,
    /// Seeded users (not backlog) after the run.
    pub users_after: u64,
    /// Rows added per table (`users` includes the backlog users).
    pub rows: Vec<(&'static str, u64)>,
    /// Of those: backlog users and backlog (long expired) refresh tokens.
    pub backlog_users: u64,
    pub backlog_tokens: u64,
    /// Secondary indexes dropped before and recreated after the load.
    pub indexes_rebuilt: usize,
    /// Wall time per phase, in order.
    pub phases: Vec<(&'static str, Duration)>,
    pub total: Duration,
}

impl SeedReport {
    /// Rows added to `table` by this run.
    pub fn added(&self, table: &str) -> u64 {
        self.rows
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    }

    /// Rows added to all tables.
    pub fn added_total(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seeded users: {} before, {} after",
            self.users_before, self.users_after
        )?;
        writeln!(f, "rows added:")?;
        for (table, n) in &self.rows {
            writeln!(f, "  {table:<16} {n:>12}")?;
        }
        writeln!(
            f,
            "  (of which cleanup backlog: {} users, {} refresh tokens)",
            self.backlog_users, self.backlog_tokens
        )?;
        writeln!(
            f,
            "secondary indexes dropped and rebuilt: {}",
            self.indexes_rebuilt
        )?;
        writeln!(f, "phases:")?;
        for (phase, d) in &self.phases {
            writeln!(f, "  {phase:<22} {:>8.2} s", d.as_secs_f64())?;
        }
        write!(f, "total: {:.2} s", self.total.as_secs_f64())
    }
}

// ------------------------------------------------------------------ times

const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3_600 * SECOND;
const DAY: i64 = 24 * HOUR;
/// 2000-01-01 (PostgreSQL's epoch) in Unix microseconds and days.
const PG_EPOCH_US: i64 = 946_684_800 * SECOND;
const PG_EPOCH_DAYS: i64 = 10_957;
/// How far back users were created.
const HISTORY: i64 = 3 * 365 * DAY;

/// The cleanup's thresholds (shared::jobs::cleanup).
const TOKEN_GRACE: i64 = 7 * DAY;
const ANONYMISE_AFTER: i64 = 90 * DAY;

/// Token lifetimes (the Config defaults: 14 days, sessions 30 days).
const REFRESH_TTL: i64 = 14 * DAY;
const SESSION_TTL: i64 = 30 * DAY;
/// Live sessions start at most this long ago, so that no seeded token is
/// already past the cleanup's 7-day grace (14 + 7 > 20, one day of margin).
const RECENT_SESSIONS: i64 = 20 * DAY;

// ------------------------------------------------------------------ names

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Christopher", "Lisa", "Daniel", "Nancy", "Matthew", "Betty", "Anthony",
    "Margaret", "Mark", "Sandra", "Donald", "Ashley", "Steven", "Kimberly", "Paul", "Emily",
    "Andrew", "Donna", "Joshua", "Michelle", "Kenneth", "Carol", "Kevin", "Amanda", "Brian",
    "Dorothy", "George", "Melissa", "Timothy", "Deborah", "Ada", "Grace", "Alan", "Edsger",
    "Linus", "Katherine", "Radia", "Frances", "Dennis", "Bjarne", "Guido", "Yukihiro", "Anders",
    "Sophie", "Lukas", "Mia", "Leon", "Hannah", "Finn", "Emma", "Noah", "Lea", "Elias", "Amélie",
    "Chloé", "Zoë", "José", "María", "Lucía", "Mateo", "Sofía", "Diego", "Valentina", "Camila",
    "Joaquín", "Søren", "Åsa", "Björn", "Ingrid", "Łukasz", "Zofia", "Jakub", "Agnieszka", "Jiří",
    "Tereza", "Aiko", "Haruto", "Yui", "Sakura", "Wei", "Min-jun", "Seo-yeon", "Priya", "Arjun",
    "Aanya", "Rohan", "Fatima", "Omar", "Amina", "Yusuf", "Chidi", "Ngozi", "Kwame", "Ama", "Olga",
    "Ivan", "Dmitri", "Anastasia", "Niamh", "Siobhán", "Seán", "Aoife", "Giulia", "Marco",
    "Francesca", "Luca", "Beatriz", "João", "Ana", "Pedro", "Daan", "Sanne", "Lars", "Freya",
];

#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott",
    "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera",
    "Campbell", "Mitchell", "Carter", "Roberts", "Lovelace", "Hopper", "Turing", "Dijkstra",
    "Liskov", "Torvalds", "Hamilton", "Berners-Lee", "Perlman", "Ritchie", "Stroustrup", "van
    Rossum", "Matsumoto", "Hejlsberg", "Müller", "Schmidt", "Schneider", "Fischer", "Weber",
    "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann", "Dubois", "Lefèvre", "Moreau", "Laurent",
    "Fernández", "Díaz", "Álvarez", "Romero", "Jiménez", "Nielsen", "Jensen", "Hansen",
    "Andersson", "Johansson", "Karlsson", "Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Novák",
    "Svoboda", "Dvořák", "Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Wang", "Zhang",
    "Liu", "Chen", "Yang", "Kim", "Park", "Choi", "Patel", "Sharma", "Singh", "Gupta", "Kumar",
    "Khan", "Ali", "Hassan", "Okafor", "Adeyemi", "Mensah", "Owusu", "Ivanov", "Petrov", "Smirnov",
    "Volkov", "O'Brien", "O'Connor", "Murphy", "Kelly", "Byrne", "Rossi", "Russo", "Ferrari",
    "Esposito", "Bianchi", "Silva", "Santos", "Oliveira", "Pereira", "Costa", "de Jong", "Jansen",
    "de Vries", "Bakker", "Visser", "Okonkwo", "Haddad", "Cohen", "Levi", "Yilmaz", "Kaya",
    "Demir", "Papadopoulos", "Nakamura", "Kobayashi", "Lindqvist", "Virtanen", "Korhonen",
];

const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example",
    "inbox.example",
    "corp.example",
    "uni.example.edu",
];

const BIOS: &[&str] = &[
    "Coffee first, then code.",
    "Product designer. Cyclist. Occasional baker.",
    "Building things for the web since the dial-up days.",
    "Data nerd who likes clean schemas and long walks.",
    "Support lead; ask me anything about the admin console.",
    "Parent, gardener, and weekend photographer.",
    "Learning Rust one borrow at a time.",
    "Traveller with a soft spot for night trains.",
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 15; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
    "MyApp/4.2.1 (iOS 18.1; iPhone15,2)",
    "MyApp/4.2.0 (Android 14; SM-S918B)",
    "curl/8.5.0",
];

/// The ASCII form of a name for usernames and e-mail addresses.
fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let mapped = match c {
            'a'..='z' | 'A'..='Z' => Some(c.to_ascii_lowercase()),
            'á' | 'à' | 'ä' | 'å' | 'Å' | 'Á' | 'â' | 'ã' => Some('a'),
            'é' | 'è' | 'ë' | 'ê' | 'É' => Some('e'),
            'í' | 'ì' | 'ï' | 'î' => Some('i'),
            'ó' | 'ò' | 'ö' | 'ø' | 'ô' | 'õ' => Some('o'),
            'ú' | 'ù' | 'ü' | 'û' => Some('u'),
            'ñ' => Some('n'),
            'ç' | 'č' => Some('c'),
            'ł' | 'Ł' => Some('l'),
            'ř' => Some('r'),
            'ś' | 'š' => Some('s'),
            'ž' => Some('z'),
            _ => None, // apostrophes, hyphens, spaces
        };
        out.extend(mapped);
    }
    out
}

fn capitalised(slug: &str) -> String {
    let mut c = slug.chars();
    match c.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

struct Names {
    first: Vec<(&'static str, String, String)>,
    last: Vec<(&'static str, String, String)>,
}

impl Names {
    fn new() -> Self {
        let table = |list: &[&'static str]| {
            list.iter()
                .map(|n| {
                    let s = slug(n);
                    let cap = capitalised(&s);
                    (*n, s, cap)
                })
                .collect()
        };
        Self {
            first: table(FIRST_NAMES),
            last: table(LAST_NAMES),
        }
    }
}

// -------------------------------------------------------------- the rows

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    PendingVerification,
    Active,
    Inactive,
    Suspended,
    Deleted,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::PendingVerification => "pending_verification",
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regular,
    /// Soft-deleted more than 90 days ago.
    BacklogDeleted,
    /// Past `data_retention_until`.
    BacklogRetention,
}

/// The id marker bytes (6, 7, 8, 9) of seeded users: a UUIDv7 whose random
/// bits read `75ed-a5ed` (regular) or `75ed-b5ed` (backlog), then the
/// sequence number in the last 48 bits.
const MARK_REGULAR: &str = "75ed-a5ed";
const MARK_BACKLOG: &str = "75ed-b5ed";

fn seeded_id(created_us: i64, kind: Kind, seq: u64) -> Uuid {
    let ms = (created_us / 1_000) as u64;
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x75;
    b[7] = 0xed;
    b[8] = if kind == Kind::Regular { 0xa5 } else { 0xb5 };
    b[9] = 0xed;
    b[10..].copy_from_slice(&seq.to_be_bytes()[2..]);
    Uuid::from_bytes(b)
}

/// A UUIDv7 for time `at_us` with random bits.
fn v7(at_us: i64, rng: &mut StdRng) -> Uuid {
    let ms = (at_us / 1_000) as u64;
    let r: u128 = rng.r#gen();
    let mut b = r.to_be_bytes();
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    Uuid::from_bytes(b)
}

#[derive(Debug, Clone)]
struct SeedUser {
    id: Uuid,
    seq: u64,
    kind: Kind,
    status: Status,
    created: i64,
    updated: i64,
    password_changed: i64,
    last_login: Option<i64>,
    deleted: Option<i64>,
    locked_until: Option<i64>,
    failed: i32,
    retention_days: Option<i64>,
    birth_days: Option<i64>,
    first: u16,
    last: u16,
    has_name: bool,
    username_style: u8,
    email_style: u8,
    domain: u8,
    phone: Option<(u16, u64)>,
    picture: bool,
    bio: Option<u8>,
    email_verified: bool,
    phone_verified: bool,
    gdpr: bool,
    /// Index into [`SEED_ROLES`].
    role: Option<u8>,
    /// Start times of the user's sessions (live refresh-token chains).
    sessions: [i64; 3],
    session_count: u8,
}

/// Roles the seed assigns, with the permissions of those it creates.
const SEED_ROLES: &[(&str, &str, &str)] = &[
    ("admin", "Every permission", r#"["*"]"#),
    (
        "support",
        "Reads users and their audit trail",
        r#"["users:read", "audit:read"]"#,
    ),
    (
        "moderator",
        "Reads and edits users",
        r#"["users:read", "users:write"]"#,
    ),
    (
        "auditor",
        "Reads the audit log and statistics",
        r#"["audit:read", "stats:read"]"#,
    ),
];

/// Picks `lo + (hi - lo) * u` for a uniform `u` (`lo` when the span is empty).
fn between(rng: &mut StdRng, lo: i64, hi: i64) -> i64 {
    if hi <= lo { lo } else { rng.gen_range(lo..hi) }
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    first_seq: u64,
    regular: u64,
    backlog_deleted: u64,
    backlog_retention: u64,
    now: i64,
}

fn generate_users(plan: &Plan, names: &Names, rng: &mut StdRng) -> Vec<SeedUser> {
    let total = plan.regular + plan.backlog_deleted + plan.backlog_retention;
    let now = plan.now;
    let today = now.div_euclid(DAY);
    let mut users = Vec::with_capacity(total as usize);
    for i in 0..total {
        let seq = plan.first_seq + i;
        let kind = if i < plan.regular {
            Kind::Regular
        } else if i < plan.regular + plan.backlog_deleted {
            Kind::BacklogDeleted
        } else {
            Kind::BacklogRetention
        };
        let (created, status, deleted, retention_days) = match kind {
            Kind::Regular => {
                let created = now - between(rng, HOUR, HISTORY);
                let r: f64 = rng.r#gen();
                let status = match r {
                    r if r < 0.02 => Status::Deleted,
                    r if r < 0.05 => Status::PendingVerification,
                    r if r < 0.07 => Status::Inactive,
                    r if r < 0.10 => Status::Suspended,
                    _ => Status::Active,
                };
                // Soft-deleted recently: not yet due for anonymisation.
                let deleted = (status == Status::Deleted).then(|| {
                    let lo = created.max(now - 80 * DAY);
                    between(rng, lo, now - SECOND).max(created)
                });
                let retention = (rng.gen_bool(0.02) && deleted.is_none())
                    .then(|| today + rng.gen_range(30..1_500));
                (created, status, deleted, retention)
            }
            Kind::BacklogDeleted => {
                let deleted = now - between(rng, ANONYMISE_AFTER + DAY, 400 * DAY);
                let created = deleted - between(rng, DAY, 600 * DAY);
                (created, Status::Deleted, Some(deleted), None)
            }
            Kind::BacklogRetention => {
                let created = now - between(rng, 400 * DAY, HISTORY - DAY);
                let status = if rng.gen_bool(0.5) {
                    Status::Inactive
                } else {
                    Status::Active
                };
                (created, status, None, Some(today - rng.gen_range(1..365)))
            }
        };

        // Sessions: live refresh-token chains of the last 20 days.
        let mut sessions = [0i64; 3];
        let mut session_count = 0u8;
        if kind == Kind::Regular && deleted.is_none() {
            let n = match rng.gen_range(0..100) {
                0..15 => 0,
                15..60 => 1,
                60..85 => 2,
                _ => 3,
            };
            let n = if status == Status::PendingVerification {
                n.min(1)
            } else {
                n
            };
            for slot in sessions.iter_mut().take(n) {
                *slot = now - between(rng, 0, RECENT_SESSIONS.min(now - created));
            }
            sessions[..n].sort_unstable();
            session_count = n as u8;
        }
        let last_login = if session_count > 0 {
            Some(sessions[usize::from(session_count) - 1])
        } else if status != Status::PendingVerification && rng.gen_bool(0.7) {
            let end = deleted.unwrap_or(now);
            // Skewed towards recent.
            let u: f64 = rng.r#gen();
            Some(end - ((end - created) as f64 * u * u) as i64)
        } else {
            None
        };
        let password_changed = if rng.gen_bool(0.2) {
            between(rng, created, deleted.unwrap_or(now))
        } else {
            created
        };
        let (failed, locked_until) = match rng.gen_range(0..1000) {
            0..2 => (5, Some(now - between(rng, DAY, 60 * DAY))),
            2..40 => (rng.gen_range(1..5), None),
            _ => (0, None),
        };
        let updated = [Some(created), Some(password_changed), last_login, deleted]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(created);
        let phone = rng.gen_bool(0.35).then(|| {
            const CC: [u16; 10] = [1, 44, 49, 33, 34, 39, 81, 91, 61, 55];
            (
                CC[rng.gen_range(0..CC.len())],
                rng.gen_range(100_000_000..10_000_000_000u64),
            )
        });
        let role = if kind != Kind::Regular || deleted.is_some() {
            None
        } else if seq.is_multiple_of(2_000) {
            Some(0)
        } else {
            match rng.gen_range(0..1000) {
                0..10 => Some(1),
                10..15 => Some(2),
                15..18 => Some(3),
                _ => None,
            }
        };
        let created_status_ok = status != Status::PendingVerification;
        users.push(SeedUser {
            id: seeded_id(created, kind, seq),
            seq,
            kind,
            status,
            created,
            updated,
            password_changed,
            last_login,
            deleted,
            locked_until,
            failed,
            retention_days,
            birth_days: rng.gen_bool(0.45).then(|| rng.gen_range(-7_305..13_878)),
            first: rng.gen_range(0..names.first.len()) as u16,
            last: rng.gen_range(0..names.last.len()) as u16,
            has_name: rng.gen_bool(0.97),
            username_style: rng.gen_range(0..6),
            email_style: rng.gen_range(0..5),
            domain: rng.gen_range(0..DOMAINS.len()) as u8,
            phone,
            picture: rng.gen_bool(0.25),
            bio: rng
                .gen_bool(0.08)
                .then(|| rng.gen_range(0..BIOS.len()) as u8),
            email_verified: created_status_ok && rng.gen_bool(0.96),
            phone_verified: phone.is_some() && rng.gen_bool(0.6),
            gdpr: rng.gen_bool(0.92),
            role,
            sessions,
            session_count,
        });
    }
    // Time order, as a table grows (and as UUIDv7 primary keys arrive).
    users.sort_unstable_by_key(|u| (u.created, u.seq));
    users
}

/// The seeded user's username: an ASCII name prefix (no digits) followed by
/// the sequence number, so it is unique case-insensitively.
fn write_username(out: &mut Vec<u8>, u: &SeedUser, names: &Names) {
    let (_, f, fc) = &names.first[usize::from(u.first)];
    let (_, l, lc) = &names.last[usize::from(u.last)];
    let seq = u.seq;
    let _ = match u.username_style {
        0 => write!(out, "{f}.{l}{seq}"),
        1 => write!(out, "{fc}{lc}{seq}"),
        2 => write!(out, "{f}_{l}{seq}"),
        3 => write!(out, "{}{l}{seq}", &f[..1]),
        4 => write!(out, "{f}{seq}"),
        _ => write!(out, "{lc}.{fc}{seq}"),
    };
}

/// The seeded user's e-mail address (local part: name prefix + sequence number).
fn write_email(out: &mut Vec<u8>, u: &SeedUser, names: &Names) {
    let (_, f, _) = &names.first[usize::from(u.first)];
    let (_, l, _) = &names.last[usize::from(u.last)];
    let seq = u.seq;
    let domain = DOMAINS[usize::from(u.domain)];
    let _ = match u.email_style {
        0 => write!(out, "{f}.{l}{seq}@{domain}"),
        1 => write!(out, "{f}{l}{seq}@{domain}"),
        2 => write!(out, "{}.{l}{seq}@{domain}", &f[..1]),
        3 => write!(out, "{l}.{f}{seq}@{domain}"),
        _ => write!(out, "{f}_{l}{seq}@{domain}"),
    };
}

#[derive(Debug, Clone)]
struct SeedToken {
    id: Uuid,
    user: Uuid,
    session: Uuid,
    created: i64,
    expires: i64,
    session_expires: i64,
    revoked: Option<i64>,
    replaced_by: Option<Uuid>,
    rnd: u64,
}

/// The refresh tokens of the users' sessions: one token, or a rotated pair
/// (the first revoked and replaced by the second); some sessions logged out.
fn generate_session_tokens(users: &[SeedUser], now: i64, rng: &mut StdRng) -> Vec<SeedToken> {
    let mut tokens = Vec::with_capacity(users.len() * 2);
    for u in users {
        for &start in &u.sessions[..usize::from(u.session_count)] {
            let session = v7(start, rng);
            let session_expires = start + SESSION_TTL;
            let first = SeedToken {
                id: v7(start, rng),
                user: u.id,
                session,
                created: start,
                expires: (start + REFRESH_TTL).min(session_expires),
                session_expires,
                revoked: None,
                replaced_by: None,
                rnd: rng.r#gen(),
            };
            let mut last = if rng.gen_bool(0.4) && now - start > 2 * SECOND {
                let at = between(rng, start + SECOND, now.min(start + REFRESH_TTL - SECOND));
                let second = SeedToken {
                    id: v7(at, rng),
                    created: at,
                    expires: (at + REFRESH_TTL).min(session_expires),
                    rnd: rng.r#gen(),
                    ..first.clone()
                };
                tokens.push(SeedToken {
                    revoked: Some(at),
                    replaced_by: Some(second.id),
                    ..first
                });
                second
            } else {
                first
            };
            if rng.gen_bool(0.1) {
                // Logged out.
                last.revoked = Some(between(rng, last.created, now.min(last.expires)));
            }
            tokens.push(last);
        }
    }
    tokens
}

/// `count` refresh tokens expired more than 7 days ago (the cleanup's
/// backlog), some in rotated pairs, for users drawn from `owners`.
fn generate_backlog_tokens(
    owners: &[Uuid],
    count: u64,
    now: i64,
    rng: &mut StdRng,
) -> Vec<SeedToken> {
    let mut tokens = Vec::with_capacity(count as usize);
    while (tokens.len() as u64) < count && !owners.is_empty() {
        let user = owners[rng.gen_range(0..owners.len())];
        // Expired 9 to ~186 days ago.
        let start = now - between(rng, TOKEN_GRACE + REFRESH_TTL + 2 * DAY, 200 * DAY);
        let session = v7(start, rng);
        let first = SeedToken {
            id: v7(start, rng),
            user,
            session,
            created: start,
            expires: start + REFRESH_TTL,
            session_expires: start + SESSION_TTL,
            revoked: rng
                .gen_bool(0.5)
                .then(|| start + between(rng, 0, REFRESH_TTL)),
            replaced_by: None,
            rnd: rng.r#gen(),
        };
        if (tokens.len() as u64) + 2 <= count && rng.gen_bool(0.3) {
            // A rotated pair whose successor also expired long ago.
            let at = start + between(rng, SECOND, DAY);
            let second = SeedToken {
                id: v7(at, rng),
                created: at,
                expires: at + REFRESH_TTL,
                revoked: None,
                rnd: rng.r#gen(),
                ..first.clone()
            };
            tokens.push(SeedToken {
                revoked: Some(at),
                replaced_by: Some(second.id),
                ..first
            });
            tokens.push(second);
        } else {
            tokens.push(first);
        }
    }
    tokens
}

/// Audit actions the seed writes, with relative weights for the events
/// after registration.
const EVENT_MIX: &[(&str, u32)] = &[
    ("login_succeeded", 450),
    ("token_refreshed", 200),
    ("login_failed", 100),
    ("logout", 80),
    ("profile_updated", 50),
    ("password_changed", 20),
    ("password_reset_requested", 20),
    ("email_verification_sent", 20),
    ("password_reset_completed", 10),
    ("email_verified", 10),
    ("sessions_revoked", 10),
    ("data_exported", 10),
    ("email_change_requested", 10),
    ("account_locked", 5),
    ("account_unlocked", 5),
];
/// Index of the extra actions (after [`EVENT_MIX`]).
const A_REGISTERED: u8 = EVENT_MIX.len() as u8;
const A_SOFT_DELETED: u8 = A_REGISTERED + 1;
const A_STATUS_CHANGED: u8 = A_REGISTERED + 2;
const A_ROLE_ASSIGNED: u8 = A_REGISTERED + 3;

fn action_label(a: u8) -> &'static str {
    match a {
        A_REGISTERED => "user_registered",
        A_SOFT_DELETED => "user_soft_deleted",
        A_STATUS_CHANGED => "status_changed",
        A_ROLE_ASSIGNED => "role_assigned",
        _ => EVENT_MIX[usize::from(a)].0,
    }
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: i64,
    rnd: u64,
    user: u32,
    action: u8,
}

/// About 10 audit events per user, in time order.
fn generate_events(users: &[SeedUser], now: i64, rng: &mut StdRng) -> Vec<Event> {
    let weight_total: u32 = EVENT_MIX.iter().map(|(_, w)| w).sum();
    let mut events = Vec::with_capacity(users.len() * 10);
    for (i, u) in users.iter().enumerate() {
        let user = i as u32;
        let end = u.deleted.unwrap_or(now);
        let mut push = |at: i64, action: u8, rng: &mut StdRng| {
            events.push(Event {
                at,
                rnd: rng.r#gen(),
                user,
                action,
            });
        };
        push(u.created, A_REGISTERED, rng);
        let mut extra = rng.gen_range(4..=14);
        if let Some(deleted) = u.deleted {
            push(deleted, A_SOFT_DELETED, rng);
            extra -= 1;
        }
        if u.status == Status::Suspended || u.status == Status::Inactive {
            push(between(rng, u.created, end), A_STATUS_CHANGED, rng);
            extra -= 1;
        }
        if u.role.is_some() {
            push(between(rng, u.created, end), A_ROLE_ASSIGNED, rng);
            extra -= 1;
        }
        for _ in 0..extra {
            let mut pick = rng.gen_range(0..weight_total);
            let mut action = 0u8;
            for (k, (_, w)) in EVENT_MIX.iter().enumerate() {
                if pick < *w {
                    action = k as u8;
                    break;
                }
                pick -= w;
            }
            push(between(rng, u.created, end), action, rng);
        }
    }
    events.sort_unstable_by_key(|e| (e.at, e.user));
    events
}

// ----------------------------------------------------------- binary COPY

/// Writers of PostgreSQL's binary COPY format.
mod bin {
    use super::{DAY, PG_EPOCH_DAYS, PG_EPOCH_US};
    use uuid::Uuid;

    pub fn header(b: &mut Vec<u8>) {
        b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
    }

    pub fn trailer(b: &mut Vec<u8>) {
        b.extend_from_slice(&(-1i16).to_be_bytes());
    }

    pub fn row(b: &mut Vec<u8>, fields: i16) {
        b.extend_from_slice(&fields.to_be_bytes());
    }

    pub fn null(b: &mut Vec<u8>) {
        b.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn len(b: &mut Vec<u8>, n: usize) {
        b.extend_from_slice(&(n as i32).to_be_bytes());
    }

    pub fn text(b: &mut Vec<u8>, s: &str) {
        len(b, s.len());
        b.extend_from_slice(s.as_bytes());
    }

    pub fn opt_text(b: &mut Vec<u8>, s: Option<&str>) {
        match s {
            Some(s) => text(b, s),
            None => null(b),
        }
    }

    /// A text field written by `f` (its length is patched in afterwards).
    pub fn text_with(b: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
        let at = b.len();
        b.extend_from_slice(&[0; 4]);
        f(b);
        let n = (b.len() - at - 4) as i32;
        b[at..at + 4].copy_from_slice(&n.to_be_bytes());
    }

    /// A `jsonb` field written by `f` (version 1, then the JSON text).
    pub fn jsonb_with(b: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
        text_with(b, |b| {
            b.push(1);
            f(b);
        });
    }

    pub fn uuid(b: &mut Vec<u8>, id: &Uuid) {
        len(b, 16);
        b.extend_from_slice(id.as_bytes());
    }

    pub fn opt_uuid(b: &mut Vec<u8>, id: Option<&Uuid>) {
        match id {
            Some(id) => uuid(b, id),
            None => null(b),
        }
    }

    /// `timestamptz` from Unix microseconds.
    pub fn ts(b: &mut Vec<u8>, unix_us: i64) {
        len(b, 8);
        b.extend_from_slice(&(unix_us - PG_EPOCH_US).to_be_bytes());
    }

    pub fn opt_ts(b: &mut Vec<u8>, unix_us: Option<i64>) {
        match unix_us {
            Some(t) => ts(b, t),
            None => null(b),
        }
    }

    /// `date` from days since the Unix epoch.
    pub fn date(b: &mut Vec<u8>, unix_days: i64) {
        len(b, 4);
        b.extend_from_slice(&((unix_days - PG_EPOCH_DAYS) as i32).to_be_bytes());
    }

    pub fn opt_date(b: &mut Vec<u8>, unix_days: Option<i64>) {
        match unix_days {
            Some(d) => date(b, d),
            None => null(b),
        }
    }

    /// The UTC date of a Unix-microsecond time, as a `date`.
    pub fn date_of(b: &mut Vec<u8>, unix_us: i64) {
        date(b, unix_us.div_euclid(DAY));
    }

    pub fn int4(b: &mut Vec<u8>, v: i32) {
        len(b, 4);
        b.extend_from_slice(&v.to_be_bytes());
    }

    pub fn boolean(b: &mut Vec<u8>, v: bool) {
        len(b, 1);
        b.push(u8::from(v));
    }

    /// An IPv4 `inet` (family PGSQL_AF_INET = 2, /32, not CIDR).
    pub fn inet4(b: &mut Vec<u8>, ip: [u8; 4]) {
        len(b, 8);
        b.extend_from_slice(&[2, 32, 0, 4]);
        b.extend_from_slice(&ip);
    }
}

/// A public-looking IPv4 address from random bits.
fn ipv4(rnd: u64) -> [u8; 4] {
    let mut ip = (rnd as u32).to_be_bytes();
    // Keep clear of 0/8, 10/8, 127/8 and multicast.
    ip[0] = 11 + ip[0] % 112;
    if ip[0] == 127 {
        ip[0] = 128;
    }
    ip
}

/// Bytes per COPY message.
const CHUNK: usize = 2 << 20;

/// Encodes `items` on a blocking thread into COPY chunks (header first,
/// trailer last); the receiver yields them as they are ready.
fn encode_in_background<T, F>(items: Arc<Vec<T>>, mut encode: F) -> mpsc::Receiver<Vec<u8>>
where
    T: Send + Sync + 'static,
    F: FnMut(&mut Vec<u8>, &T) + Send + 'static,
{
    let (mut tx, rx) = mpsc::channel::<Vec<u8>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(CHUNK + 64 * 1024);
        bin::header(&mut buf);
        for item in items.iter() {
            encode(&mut buf, item);
            if buf.len() >= CHUNK {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK + 64 * 1024));
                if futures::executor::block_on(tx.send(full)).is_err() {
                    return; // the COPY gave up
                }
            }
        }
        bin::trailer(&mut buf);
        let _ = futures::executor::block_on(tx.send(buf));
    });
    rx
}

/// Runs `statement` (a `COPY … FROM STDIN (FORMAT binary)`) with the chunks
/// of `chunks`; returns the rows copied.
async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    mut chunks: mpsc::Receiver<Vec<u8>>,
) -> Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await?;
    while let Some(chunk) = chunks.next().await {
        if let Err(err) = copy.send(chunk).await {
            let _ = copy.abort("seed: sending failed").await;
            return Err(err).context(statement.to_string());
        }
    }
    copy.finish().await.with_context(|| statement.to_string())
}

const COPY_USERS: &str = "COPY users (id, username, email, password_hash, password_changed_at, \
     failed_login_attempts, locked_until, first_name, last_name, phone_number, date_of_birth, \
     profile_picture_url, bio, status, is_email_verified, is_phone_verified, created_at, \
     updated_at, last_login_at, deleted_at, gdpr_consent_at, data_retention_until) \
     FROM STDIN (FORMAT binary)";

const COPY_TOKENS: &str = "COPY refresh_tokens (id, user_id, session_id, token_hash, created_at, \
     expires_at, session_expires_at, revoked_at, replaced_by, created_by_ip, user_agent, \
     device_fingerprint) FROM STDIN (FORMAT binary)";

const COPY_USER_ROLES: &str =
    "COPY user_roles (user_id, role_id, assigned_at, assigned_by) FROM STDIN (FORMAT binary)";

const COPY_AUDIT: &str = "COPY audit_logs (user_id, performed_by, action, entity_type, entity_id, \
     old_values, new_values, ip_address, user_agent, request_id, created_at, log_date, severity) \
     FROM STDIN (FORMAT binary)";

fn encode_user(b: &mut Vec<u8>, u: &SeedUser, names: &Names, hash: &str) {
    let (first, _, _) = names.first[usize::from(u.first)];
    let (last, _, _) = names.last[usize::from(u.last)];
    bin::row(b, 22);
    bin::uuid(b, &u.id);
    bin::text_with(b, |b| write_username(b, u, names));
    bin::text_with(b, |b| write_email(b, u, names));
    bin::text(b, hash);
    bin::ts(b, u.password_changed);
    bin::int4(b, u.failed);
    bin::opt_ts(b, u.locked_until);
    bin::opt_text(b, u.has_name.then_some(first));
    bin::opt_text(b, u.has_name.then_some(last));
    match u.phone {
        Some((cc, n)) => bin::text_with(b, |b| {
            let _ = write!(b, "+{cc}{n}");
        }),
        None => bin::null(b),
    }
    bin::opt_date(b, u.birth_days);
    if u.picture {
        bin::text_with(b, |b| {
            let _ = write!(b, "https://cdn.example.com/avatars/{}.jpg", u.id);
        });
    } else {
        bin::null(b);
    }
    bin::opt_text(b, u.bio.map(|i| BIOS[usize::from(i)]));
    bin::text(b, u.status.label());
    bin::boolean(b, u.email_verified);
    bin::boolean(b, u.phone_verified);
    bin::ts(b, u.created);
    bin::ts(b, u.updated);
    bin::opt_ts(b, u.last_login);
    bin::opt_ts(b, u.deleted);
    bin::opt_ts(b, u.gdpr.then_some(u.created));
    bin::opt_date(b, u.retention_days);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(b: &mut Vec<u8>, mut x: u64, digits: usize) {
    for _ in 0..digits {
        b.push(HEX[(x & 0xf) as usize]);
        x >>= 4;
    }
}

/// A 64-character lower-case hex "SHA-256" from random bits (the stored form
/// of an opaque token; the raw token is never needed).
fn token_hash(b: &mut Vec<u8>, rnd: u64, id: &Uuid) {
    let (hi, lo) = id.as_u64_pair();
    for word in [
        rnd,
        hi ^ rnd.rotate_left(17),
        lo ^ rnd.rotate_left(41),
        rnd ^ lo.rotate_left(7),
    ] {
        hex_into(b, splitmix(word), 16);
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn encode_token(b: &mut Vec<u8>, t: &SeedToken) {
    bin::row(b, 12);
    bin::uuid(b, &t.id);
    bin::uuid(b, &t.user);
    bin::uuid(b, &t.session);
    bin::text_with(b, |b| token_hash(b, t.rnd, &t.id));
    bin::ts(b, t.created);
    bin::ts(b, t.expires);
    bin::ts(b, t.session_expires);
    bin::opt_ts(b, t.revoked);
    bin::opt_uuid(b, t.replaced_by.as_ref());
    let [a, b2, c, d] = ipv4(t.rnd >> 7);
    bin::text_with(b, |b| {
        let _ = write!(b, "{a}.{b2}.{c}.{d}");
    });
    bin::text(b, USER_AGENTS[(t.rnd >> 40) as usize % USER_AGENTS.len()]);
    if t.rnd & 1 == 0 {
        bin::text_with(b, |b| hex_into(b, splitmix(t.rnd ^ 0x5eed), 16));
    } else {
        bin::null(b);
    }
}

struct AuditCtx {
    users: Arc<Vec<SeedUser>>,
    admin: Option<Uuid>,
}

fn encode_event(b: &mut Vec<u8>, e: &Event, ctx: &AuditCtx) {
    let u = &ctx.users[e.user as usize];
    let action = action_label(e.action);
    let by_admin = matches!(e.action, A_STATUS_CHANGED | A_ROLE_ASSIGNED);
    bin::row(b, 13);
    bin::uuid(b, &u.id);
    bin::opt_uuid(b, if by_admin { ctx.admin.as_ref() } else { None });
    bin::text(b, action);
    bin::text(b, "user");
    bin::uuid(b, &u.id);
    // old_values
    if e.action == A_STATUS_CHANGED {
        bin::jsonb_with(b, |b| b.extend_from_slice(br#"{"status": "active"}"#));
    } else {
        bin::null(b);
    }
    // new_values
    match action {
        "user_registered" => bin::jsonb_with(b, |b| {
            let _ = write!(
                b,
                r#"{{"bio": "[redacted]", "email": "[redacted]", "status": "{}", "username": "[redacted]", "created_at": "seeded", "is_email_verified": false}}"#,
                if u.status == Status::PendingVerification {
                    "pending_verification"
                } else {
                    "active"
                }
            );
        }),
        "user_soft_deleted" => bin::jsonb_with(b, |b| {
            b.extend_from_slice(br#"{"status": "deleted", "deleted_at": "seeded"}"#);
        }),
        "status_changed" => bin::jsonb_with(b, |b| {
            let _ = write!(b, r#"{{"status": "{}"}}"#, u.status.label());
        }),
        "role_assigned" => bin::jsonb_with(b, |b| {
            let role = u.role.map_or("support", |r| SEED_ROLES[usize::from(r)].0);
            let _ = write!(b, r#"{{"role": "{role}"}}"#);
        }),
        "login_failed" => bin::jsonb_with(b, |b| {
            let _ = write!(
                b,
                r#"{{"reason": "wrong_password", "failed_login_attempts": {}}}"#,
                1 + e.rnd % 4
            );
        }),
        "token_refreshed" | "logout" => bin::jsonb_with(b, |b| {
            b.extend_from_slice(br#"{"session_id": ""#);
            hex_into(b, splitmix(e.rnd), 16);
            b.extend_from_slice(br#""}"#);
        }),
        "profile_updated" => bin::jsonb_with(b, |b| {
            b.extend_from_slice(br#"{"first_name": "[redacted]"}"#);
        }),
        _ => bin::null(b),
    }
    bin::inet4(b, ipv4(e.rnd >> 3));
    bin::text(b, USER_AGENTS[(e.rnd >> 40) as usize % USER_AGENTS.len()]);
    if e.rnd % 10 < 8 {
        bin::text_with(b, |b| hex_into(b, splitmix(e.rnd ^ 0xa0d1), 16));
    } else {
        bin::null(b);
    }
    bin::ts(b, e.at);
    bin::date_of(b, e.at);
    bin::text(
        b,
        if matches!(action, "account_locked" | "refresh_token_reused") {
            "warning"
        } else {
            "info"
        },
    );
}

// ------------------------------------------------------------- indexes

/// A secondary index (or the unique/primary-key constraint it backs).
#[derive(Debug, Clone)]
struct IndexDef {
    table: String,
    index: String,
    definition: String,
    constraint: Option<(String, String)>,
}

/// table, index, index definition, constraint, constraint definition.
type IndexRow = (String, String, String, Option<String>, Option<String>);

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The indexes of `tables` that can be dropped for a bulk load: all but
/// those a foreign key depends on (kept, with their constraint).
async fn droppable_indexes(conn: &mut PgConnection, tables: &[&str]) -> Result<Vec<IndexDef>> {
    let rows: Vec<IndexRow> = sqlx::query_as(
        "SELECT t.relname::text, i.relname::text, pg_get_indexdef(i.oid),
                c.conname::text, pg_get_constraintdef(c.oid)
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class t ON t.oid = x.indrelid
         LEFT JOIN pg_constraint c ON c.conindid = i.oid AND c.conrelid = t.oid
                                  AND c.contype IN ('p', 'u')
         WHERE x.indrelid IN (SELECT to_regclass(n)::oid FROM unnest($1::text[]) n)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint f
                           WHERE f.contype = 'f' AND f.conindid = i.oid)
         ORDER BY 1, 2",
    )
    .bind(tables)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(table, index, definition, con, condef)| IndexDef {
            table,
            index,
            // A partitioned index is shown `ON ONLY` the parent; recreating
            // it must cascade to the partitions as the migration's did.
            definition: definition.replacen(" ON ONLY ", " ON ", 1),
            constraint: con.zip(condef),
        })
        .collect())
}

/// Every index and constraint of `tables` and their partitions, by name,
/// with its definition: compared before and after a rebuild.
async fn schema_fingerprint(
    conn: &mut PgConnection,
    tables: &[&str],
) -> Result<Vec<(String, String)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "WITH rels AS (
             SELECT to_regclass(n)::oid AS oid FROM unnest($1::text[]) n
             UNION
             SELECT inhrelid FROM pg_inherits
             WHERE inhparent IN (SELECT to_regclass(n)::oid FROM unnest($1::text[]) n))
         SELECT 'index ' || i.relname, pg_get_indexdef(i.oid)
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
         WHERE x.indrelid IN (SELECT oid FROM rels)
         UNION ALL
         SELECT 'constraint ' || conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
         FROM pg_constraint WHERE conrelid IN (SELECT oid FROM rels)
         ORDER BY 1, 2",
    )
    .bind(tables)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

async fn drop_index(conn: &mut PgConnection, ix: &IndexDef) -> Result<()> {
    let sql = match &ix.constraint {
        Some((name, _)) => format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            quote_ident(&ix.table),
            quote_ident(name)
        ),
        None => format!("DROP INDEX {}", quote_ident(&ix.index)),
    };
    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&mut *conn)
        .await
        .with_context(|| sql.clone())?;
    Ok(())
}

/// The statement that recreates `ix` as it was.
fn recreate_sql(ix: &IndexDef) -> String {
    match &ix.constraint {
        Some((name, def)) => format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {def}",
            quote_ident(&ix.table),
            quote_ident(name)
        ),
        None => ix.definition.clone(),
    }
}

// ------------------------------------------------------------- journal

/// The journal of a bulk load: the indexes still to rebuild (`index` rows),
/// every index and constraint definition of the loaded tables as they must
/// end up (`expect` rows) and the tables to analyze (`analyze` rows). Written in the loading transaction, so it
/// commits with the data and the dropped indexes; emptied as indexes are
/// rebuilt; dropped once they are checked and the tables analyzed. A run
/// interrupted after the load committed is finished by the next one.
const JOURNAL: &str = "perf_seed_pending";

/// The tables the seed loads.
const TABLES: [&str; 4] = ["users", "user_roles", "refresh_tokens", "audit_logs"];

async fn write_journal(
    conn: &mut PgConnection,
    dropped: &[IndexDef],
    fingerprint: &[(String, String)],
) -> Result<()> {
    sqlx::query(
        "CREATE TABLE perf_seed_pending (
             kind text NOT NULL CHECK (kind IN ('index', 'expect', 'analyze')),
             rank integer NOT NULL DEFAULT 0,
             table_name text,
             name text NOT NULL,
             sql text NOT NULL,
             is_constraint boolean NOT NULL DEFAULT false)",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO perf_seed_pending (kind, table_name, name, sql, is_constraint)
         SELECT 'index', * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[])",
    )
    .bind(
        dropped
            .iter()
            .map(|ix| ix.table.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        dropped
            .iter()
            .map(|ix| ix.index.clone())
            .collect::<Vec<_>>(),
    )
    .bind(dropped.iter().map(recreate_sql).collect::<Vec<_>>())
    .bind(
        dropped
            .iter()
            .map(|ix| ix.constraint.is_some())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO perf_seed_pending (kind, name, sql)
         SELECT 'expect', * FROM unnest($1::text[], $2::text[])",
    )
    .bind(
        fingerprint
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        fingerprint
            .iter()
            .map(|(_, d)| d.clone())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Connections rebuilding indexes (and analyzing) at the same time.
const REBUILD_WORKERS: usize = 2;

/// Takes the journal's next job of `kind` (`index` or `analyze`; claimed
/// with `SKIP LOCKED`), runs it and deletes its row in the same transaction,
/// until none is left; returns how many it ran.
async fn journal_worker(pool: &PgPool, kind: &str) -> Result<usize> {
    let mut rebuilt = 0;
    loop {
        let mut tx = pool.begin().await?;
        let job: Option<(String, String)> = sqlx::query_as(
            "SELECT name, sql FROM perf_seed_pending WHERE kind = $1
             ORDER BY rank LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .bind(kind)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((name, sql)) = job else {
            return Ok(rebuilt);
        };
        for setting in [
            "SET LOCAL maintenance_work_mem = '1GB'",
            "SET LOCAL statement_timeout = 0",
        ] {
            sqlx::query(setting).execute(&mut *tx).await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *tx)
            .await
            .with_context(|| sql.clone())?;
        sqlx::query("DELETE FROM perf_seed_pending WHERE kind = $1 AND name = $2")
            .bind(kind)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rebuilt += 1;
    }
}

/// Finishes a committed load, if there is one: rebuilds the dropped indexes
/// on [`REBUILD_WORKERS`] connections (constraints first, as they lock their
/// table exclusively, then the most expensive first), checks that every
/// index and constraint is back as it was, analyzes, drops the journal.
/// Returns the indexes rebuilt.
async fn finish_load(pool: &PgPool, phases: &mut Phases, resumed: bool) -> Result<Option<usize>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(JOURNAL)
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(None);
    }
    // Order the jobs: constraints, then by table size (GIN weighs most).
    let jobs: Vec<(String, String, String, bool, i64)> = sqlx::query_as(
        "SELECT name, table_name, sql, is_constraint,
                (SELECT coalesce(sum(pg_relation_size(c.oid)), 0)::bigint FROM pg_class c
                 WHERE c.oid = to_regclass(table_name)
                    OR c.oid IN (SELECT inhrelid FROM pg_inherits
                                 WHERE inhparent = to_regclass(table_name)))
         FROM perf_seed_pending WHERE kind = 'index'",
    )
    .fetch_all(pool)
    .await?;
    let mut order: Vec<(bool, i64, String)> = jobs
        .into_iter()
        .map(|(name, _, sql, is_constraint, bytes)| {
            let weight = if sql.contains("USING gin") { 10 } else { 1 };
            (!is_constraint, -(bytes.saturating_mul(weight)), name)
        })
        .collect();
    order.sort();
    let names: Vec<String> = order.into_iter().map(|(_, _, name)| name).collect();
    sqlx::query(
        "UPDATE perf_seed_pending p SET rank = o.rank
         FROM unnest($1::text[]) WITH ORDINALITY AS o(name, rank)
         WHERE p.kind = 'index' AND p.name = o.name",
    )
    .bind(&names)
    .execute(pool)
    .await?;

    let rebuilt: usize =
        futures::future::try_join_all((0..REBUILD_WORKERS).map(|_| journal_worker(pool, "index")))
            .await?
            .into_iter()
            .sum();
    let expected: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM perf_seed_pending WHERE kind = 'expect' ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let mut conn = pool.acquire().await?;
    let now = schema_fingerprint(&mut conn, &TABLES).await?;
    drop(conn);
    if now != expected {
        let missing: Vec<_> = expected.iter().filter(|e| !now.contains(e)).collect();
        let extra: Vec<_> = now.iter().filter(|e| !expected.contains(e)).collect();
        bail!(
            "the rebuilt indexes differ from the originals (the journal {JOURNAL} is kept):\n\
             missing: {missing:#?}\nunexpected: {extra:#?}"
        );
    }
    phases.end(if resumed {
        "resume: create indexes"
    } else {
        "create indexes"
    });

    futures::future::try_join_all((0..REBUILD_WORKERS).map(|_| journal_worker(pool, "analyze")))
        .await?;
    sqlx::query("DROP TABLE perf_seed_pending")
        .execute(pool)
        .await?;
    phases.end(if resumed {
        "resume: analyze"
    } else {
        "analyze"
    });
    Ok(Some(rebuilt))
}

// ------------------------------------------------------------------ run

/// The precomputed Argon2id hash of [`SEED_PASSWORD`], with the production
/// parameters (the `Config` defaults).
async fn seed_hash() -> Result<String> {
    let config = shared::Config::from_lookup(|_| None).context("default configuration")?;
    let hasher = shared::security::PasswordHasher::new(config.argon2)?;
    let password = shared::domain::Password::parse(SEED_PASSWORD, &[])
        .map_err(|why| anyhow::anyhow!("SEED_PASSWORD {why}"))?;
    hasher
        .hash(&password)
        .await
        .map_err(|e| anyhow::anyhow!("hashing SEED_PASSWORD: {e}"))
}

struct Phases {
    started: Instant,
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            done: Vec::new(),
        }
    }

    fn end(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.done.push((phase, now - self.last));
        self.last = now;
    }
}

/// Seeds (or tops up) the database; see the module documentation.
pub async fn run(pool: &PgPool, opts: &SeedOptions) -> Result<SeedReport> {
    let mut phases = Phases::new();
    let hash = tokio::spawn(seed_hash());
    // A load committed by an interrupted run is finished first.
    finish_load(pool, &mut phases, true).await?;

    let mut conn = pool.acquire().await?;
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut *conn)
            .await?;
    if !superuser {
        bail!(
            "seeding needs a superuser connection (it sets session_replication_role to load \
             without per-row triggers)"
        );
    }
    let mut tx = conn.begin().await?;
    // Concurrent seeds wait for each other.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(0x5345_4544_5045_5246_i64) // "SEEDPERF"
        .execute(&mut *tx)
        .await?;
    for setting in [
        "SET LOCAL session_replication_role = replica",
        "SET LOCAL synchronous_commit = off",
        "SET LOCAL maintenance_work_mem = '1GB'",
        "SET LOCAL work_mem = '256MB'",
        "SET LOCAL max_parallel_maintenance_workers = 2",
        "SET LOCAL statement_timeout = 0",
    ] {
        sqlx::query(setting).execute(&mut *tx).await?;
    }
    let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await?;
    let now = now.timestamp_micros();

    // Audit partitions for the whole history.
    sqlx::query(
        "SELECT create_audit_partitions(
             ((now() AT TIME ZONE 'UTC') - interval '3 years 1 month')::date,
             ((now() AT TIME ZONE 'UTC') + interval '3 months')::date)",
    )
    .execute(&mut *tx)
    .await?;
    // Roles.
    for (name, description, permissions) in SEED_ROLES {
        sqlx::query(
            "INSERT INTO roles (name, description, permissions) VALUES ($1, $2, $3::jsonb)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(description)
        .bind(permissions)
        .execute(&mut *tx)
        .await?;
    }
    let mut role_ids = Vec::with_capacity(SEED_ROLES.len());
    for (name, _, _) in SEED_ROLES {
        let id: Uuid = sqlx::query_scalar("SELECT id FROM roles WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        role_ids.push(id);
    }

    // What is there already.
    let (regular_before, max_seq): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE substr(id::text, 15, 9) = $1),
                coalesce(max(('x' || substr(id::text, 25, 12))::bit(48)::bigint)
                         FILTER (WHERE substr(id::text, 15, 9) IN ($1, $2)), -1)
         FROM users",
    )
    .bind(MARK_REGULAR)
    .bind(MARK_BACKLOG)
    .fetch_one(&mut *tx)
    .await?;
    let regular_before = regular_before as u64;
    let regular = opts.users.saturating_sub(regular_before);
    let (mut backlog_deleted, mut backlog_retention, mut backlog_token_count) = (0, 0, 0);
    if opts.cleanup_backlog {
        let (due, expired): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM users
                     WHERE (deleted_at < now() - interval '90 days'
                            OR data_retention_until < CURRENT_DATE)
                       AND email NOT LIKE 'anonymized.%@deleted.local'),
                    (SELECT count(*) FROM refresh_tokens
                     WHERE expires_at < now() - interval '7 days')",
        )
        .fetch_one(&mut *tx)
        .await?;
        let missing = (opts.users / 50).saturating_sub(due as u64);
        backlog_deleted = missing.div_ceil(2);
        backlog_retention = missing - backlog_deleted;
        backlog_token_count = opts.users.saturating_sub(expired as u64);
    }
    let plan = Plan {
        first_seq: (max_seq + 1) as u64,
        regular,
        backlog_deleted,
        backlog_retention,
        now,
    };
    let mut report = SeedReport {
        users_before: regular_before,
        users_after: regular_before + regular,
        ..SeedReport::default()
    };
    let hash = hash.await??;
    phases.end("prepare");

    let new_users = plan.regular + plan.backlog_deleted + plan.backlog_retention;
    if new_users == 0 && backlog_token_count == 0 {
        tx.commit().await?;
        report.rows = vec![
            ("users", 0),
            ("user_roles", 0),
            ("refresh_tokens", 0),
            ("audit_logs", 0),
        ];
        phases.end("commit");
        report.phases = phases.done;
        report.total = phases.started.elapsed();
        return Ok(report);
    }

    // Generate the users (and, in the background, their audit trail).
    let names = Arc::new(Names::new());
    let seed = 0x5eed_0000 ^ plan.first_seq;
    let users = {
        let names = names.clone();
        let plan_copy = plan;
        tokio::task::spawn_blocking(move || {
            let mut rng = StdRng::seed_from_u64(seed);
            generate_users(&plan_copy, &names, &mut rng)
        })
        .await?
    };
    let users = Arc::new(users);
    let events = {
        let users = users.clone();
        tokio::task::spawn_blocking(move || {
            let mut rng = StdRng::seed_from_u64(seed ^ 0xa0d1);
            generate_events(&users, now, &mut rng)
        })
    };
    let tokens = {
        let users = users.clone();
        tokio::task::spawn_blocking(move || {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x70c5);
            generate_session_tokens(&users, now, &mut rng)
        })
    };
    phases.end("generate users");

    // Bulk-load mode for the tables that are empty.
    let mut empty = Vec::new();
    for table in TABLES {
        let has_rows: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT FROM {table})"
        )))
        .fetch_one(&mut *tx)
        .await?;
        if !has_rows {
            empty.push(table);
        }
    }
    let fingerprint = schema_fingerprint(&mut tx, &TABLES).await?;
    let dropped = droppable_indexes(&mut tx, &empty).await?;
    for ix in &dropped {
        drop_index(&mut tx, ix).await?;
    }
    write_journal(&mut tx, &dropped, &fingerprint).await?;
    // The tables' sizes before (planner estimates), to skip analyzing a table
    // that grew by less than a tenth (autovacuum's default threshold).
    let mut before_estimates = Vec::new();
    for table in TABLES {
        let estimate: f64 = sqlx::query_scalar(
            "SELECT coalesce(sum(reltuples) FILTER (WHERE reltuples >= 0), -1)::float8
             FROM pg_class
             WHERE oid = to_regclass($1)::oid AND relkind = 'r'
                OR oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass($1)::oid)",
        )
        .bind(table)
        .fetch_one(&mut *tx)
        .await?;
        before_estimates.push((table, estimate));
    }
    report.indexes_rebuilt = dropped.len();
    phases.end("drop indexes");

    // users
    let hash = Arc::new(hash);
    let chunks = {
        let (names, hash) = (names.clone(), hash.clone());
        encode_in_background(users.clone(), move |b, u| encode_user(b, u, &names, &hash))
    };
    let n = copy_in(&mut tx, COPY_USERS, chunks).await?;
    report.rows.push(("users", n));
    report.backlog_users = plan.backlog_deleted + plan.backlog_retention;
    phases.end("copy users");

    // user_roles
    let admin = match users.iter().find(|u| u.role == Some(0)) {
        Some(u) => Some(u.id),
        None => {
            sqlx::query_scalar(
                "SELECT ur.user_id FROM user_roles ur JOIN roles r ON r.id = ur.role_id
             WHERE r.name = 'admin' LIMIT 1",
            )
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    let assignments: Vec<(Uuid, Uuid, i64)> = users
        .iter()
        .filter_map(|u| {
            u.role.map(|r| {
                (
                    u.id,
                    role_ids[usize::from(r)],
                    u.created + (now - u.created) / 3,
                )
            })
        })
        .collect();
    let chunks = encode_in_background(Arc::new(assignments), move |b, (user, role, at)| {
        bin::row(b, 4);
        bin::uuid(b, user);
        bin::uuid(b, role);
        bin::ts(b, *at);
        bin::opt_uuid(b, admin.filter(|a| a != user).as_ref());
    });
    let n = copy_in(&mut tx, COPY_USER_ROLES, chunks).await?;
    report.rows.push(("user_roles", n));
    phases.end("copy user_roles");

    // refresh_tokens: the users' sessions, then the backlog.
    let mut tokens = tokens.await?;
    if backlog_token_count > 0 {
        let mut owners: Vec<Uuid> = users
            .iter()
            .filter(|u| u.kind == Kind::Regular && u.deleted.is_none())
            .map(|u| u.id)
            .collect();
        if owners.is_empty() {
            owners =
                sqlx::query_scalar("SELECT id FROM users WHERE deleted_at IS NULL LIMIT 200000")
                    .fetch_all(&mut *tx)
                    .await?;
        }
        let mut rng = StdRng::seed_from_u64(seed ^ 0xb4c1);
        let backlog = generate_backlog_tokens(&owners, backlog_token_count, now, &mut rng);
        report.backlog_tokens = backlog.len() as u64;
        tokens.extend(backlog);
    }
    tokens.sort_unstable_by_key(|t| (t.created, t.id));
    let chunks = encode_in_background(Arc::new(tokens), encode_token);
    let n = copy_in(&mut tx, COPY_TOKENS, chunks).await?;
    report.rows.push(("refresh_tokens", n));
    phases.end("copy refresh_tokens");

    // audit_logs
    let events = Arc::new(events.await?);
    let ctx = AuditCtx {
        users: users.clone(),
        admin,
    };
    let chunks = encode_in_background(events, move |b, e| encode_event(b, e, &ctx));
    let n = copy_in(&mut tx, COPY_AUDIT, chunks).await?;
    report.rows.push(("audit_logs", n));

    // What to analyze once the indexes are back (largest first).
    let mut analyze = vec![("roles", 4)];
    for (rank, (table, before)) in before_estimates.into_iter().rev().enumerate() {
        let added = report.added(table) as f64;
        if added > 0.0 && (before <= 0.0 || added * 10.0 >= before) {
            analyze.push((table, rank as i32));
        }
    }
    sqlx::query(
        "INSERT INTO perf_seed_pending (kind, rank, name, sql)
         SELECT 'analyze', r, t, 'ANALYZE ' || quote_ident(t)
         FROM unnest($1::text[], $2::int[]) AS a(t, r)",
    )
    .bind(analyze.iter().map(|(t, _)| *t).collect::<Vec<_>>())
    .bind(analyze.iter().map(|(_, r)| *r).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    phases.end("copy audit_logs");

    tx.commit().await?;
    phases.end("commit");

    finish_load(pool, &mut phases, false).await?;
    report.phases = phases.done;
    report.total = phases.started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_password_passes_the_apps_rules() {
        assert!(shared::domain::Password::parse(SEED_PASSWORD, &[]).is_ok());
    }

    #[test]
    fn seeded_ids_carry_marker_and_sequence() {
        let id = seeded_id(1_700_000_000_000_000, Kind::Regular, 0x1234_5678_9abc);
        let text = id.to_string();
        assert_eq!(&text[14..23], MARK_REGULAR);
        assert_eq!(&text[24..], "123456789abc");
        assert_eq!(id.get_version_num(), 7);
        let id = seeded_id(1_700_000_000_000_000, Kind::BacklogDeleted, 7);
        assert_eq!(&id.to_string()[14..23], MARK_BACKLOG);
    }

    #[test]
    fn usernames_and_emails_are_valid_and_unique() {
        let names = Names::new();
        let plan = Plan {
            first_seq: 0,
            regular: 3_000,
            backlog_deleted: 30,
            backlog_retention: 30,
            now: 1_800_000_000 * SECOND,
        };
        let users = generate_users(&plan, &names, &mut StdRng::seed_from_u64(1));
        let mut usernames = std::collections::HashSet::new();
        let mut emails = std::collections::HashSet::new();
        for u in &users {
            let mut b = Vec::new();
            write_username(&mut b, u, &names);
            let username = String::from_utf8(b).unwrap();
            shared::domain::Username::parse(&username).unwrap();
            assert!(usernames.insert(username.to_lowercase()), "{username}");
            let mut b = Vec::new();
            write_email(&mut b, u, &names);
            let email = String::from_utf8(b).unwrap();
            let parsed = shared::domain::Email::parse(&email).unwrap();
            assert_eq!(parsed.as_str(), email);
            assert!(emails.insert(email.clone()), "{email}");
            if let Some(d) = u.deleted {
                assert!(d >= u.created);
            }
        }
        assert!(users.windows(2).all(|w| w[0].created <= w[1].created));
    }
}
