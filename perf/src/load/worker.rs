//! One worker of the load harness: its account, its requests and what it saw.

use super::*;

/// Counts and samples of one worker, merged at the end.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) statuses: BTreeMap<&'static str, BTreeMap<u16, u64>>,
    pub(super) samples: BTreeMap<&'static str, Vec<Duration>>,
    pub(super) unexpected: Vec<String>,
    pub(super) missing_request_id: u64,
    pub(super) transport_errors: u64,
}

/// An account a worker drives.
pub(super) struct Account {
    pub(super) id: Uuid,
    pub(super) username: String,
    pub(super) access: String,
    pub(super) refresh: String,
    /// Wrong passwords since the last successful login, as the server must count them.
    pub(super) failures: i32,
}

pub(super) struct Worker {
    pub(super) client: Client,
    pub(super) run_id: String,
    pub(super) index: usize,
    pub(super) serial: u64,
    pub(super) tally: Tally,
    pub(super) accounts: Arc<Mutex<Vec<(Uuid, i32)>>>,
}

impl Worker {
    /// Sends one request, records status, latency and request id; `None` on
    /// a transport error.
    pub(super) async fn call(
        &mut self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
        expect: &[u16],
    ) -> Option<Reply> {
        let started = Instant::now();
        let reply = self.client.call(method, path, body, bearer).await;
        let took = started.elapsed();
        match reply {
            Ok(reply) => {
                self.record(op, &reply, took, expect);
                Some(reply)
            }
            Err(err) => {
                self.tally.transport_errors += 1;
                self.tally
                    .unexpected
                    .push(format!("{op}: transport error {err}"));
                None
            }
        }
    }

    pub(super) fn record(
        &mut self,
        op: &'static str,
        reply: &Reply,
        took: Duration,
        expect: &[u16],
    ) {
        *self
            .tally
            .statuses
            .entry(op)
            .or_default()
            .entry(reply.status)
            .or_default() += 1;
        self.tally.samples.entry(op).or_default().push(took);
        if reply.request_id.is_none() {
            self.tally.missing_request_id += 1;
        }
        if !expect.contains(&reply.status) {
            self.tally.unexpected.push(format!(
                "{op}: {} {}",
                reply.status,
                reply.code().unwrap_or("")
            ));
        }
    }

    pub(super) fn next_name(&mut self) -> String {
        self.serial += 1;
        format!("ld{}w{}n{}", self.run_id, self.index, self.serial)
    }

    /// Registers and logs in a new account.
    pub(super) async fn new_account(&mut self) -> Option<Account> {
        let username = self.next_name();
        let body = json!({
            "username": username,
            "email": format!("{username}@load.example.com"),
            "password": LOAD_PASSWORD,
        });
        let reply = self
            .call(
                "register",
                Method::POST,
                "/v1/auth/register",
                Some(&body),
                None,
                &[201],
            )
            .await?;
        let id: Uuid = reply.str("id")?.parse().ok()?;
        let mut account = Account {
            id,
            username,
            access: String::new(),
            refresh: String::new(),
            failures: 0,
        };
        self.login(&mut account).await?;
        Some(account)
    }

    pub(super) async fn login(&mut self, account: &mut Account) -> Option<()> {
        let body = json!({"login": account.username, "password": LOAD_PASSWORD});
        let reply = self
            .call(
                "login",
                Method::POST,
                "/v1/auth/login",
                Some(&body),
                None,
                &[200],
            )
            .await?;
        account.access = reply.str("access_token")?.to_string();
        account.refresh = reply.str("refresh_token")?.to_string();
        account.failures = 0;
        Some(())
    }

    pub(super) async fn refresh(&mut self, account: &mut Account) -> Option<()> {
        let body = json!({"refresh_token": account.refresh});
        let reply = self
            .call(
                "refresh",
                Method::POST,
                "/v1/auth/refresh",
                Some(&body),
                None,
                &[200],
            )
            .await?;
        account.access = reply.str("access_token")?.to_string();
        account.refresh = reply.str("refresh_token")?.to_string();
        Some(())
    }

    /// Two refreshes of the same token at once: exactly one may win.
    pub(super) async fn refresh_race(&mut self, account: &mut Account) -> Option<()> {
        let body = json!({"refresh_token": account.refresh});
        let started = Instant::now();
        let (a, b) = tokio::join!(
            self.client
                .call(Method::POST, "/v1/auth/refresh", Some(&body), None),
            self.client
                .call(Method::POST, "/v1/auth/refresh", Some(&body), None),
        );
        let took = started.elapsed();
        let mut winner = None;
        for reply in [a, b] {
            match reply {
                Ok(reply) => {
                    self.record("refresh_race", &reply, took, &[200, 401]);
                    if reply.status == 200 {
                        if winner.is_some() {
                            self.tally
                                .unexpected
                                .push("refresh_race: both refreshes of one token won".into());
                        }
                        winner = Some(reply);
                    }
                }
                Err(err) => {
                    self.tally.transport_errors += 1;
                    self.tally
                        .unexpected
                        .push(format!("refresh_race: transport error {err}"));
                }
            }
        }
        match winner {
            Some(reply) => {
                account.access = reply.str("access_token")?.to_string();
                account.refresh = reply.str("refresh_token")?.to_string();
                Some(())
            }
            None => {
                self.tally
                    .unexpected
                    .push("refresh_race: neither refresh won".into());
                None
            }
        }
    }

    /// One step of the mix for `account`; `admin` is the admin's access token.
    pub(super) async fn step(&mut self, account: &mut Account, admin: &str) -> Option<()> {
        let roll = rand::thread_rng().gen_range(0..100);
        match roll {
            0..=34 => {
                self.call(
                    "me",
                    Method::GET,
                    "/v1/users/me",
                    None,
                    Some(&account.access.clone()),
                    &[200],
                )
                .await?;
            }
            35..=52 => self.refresh(account).await?,
            53..=54 => self.refresh_race(account).await?,
            55..=64 => {
                self.serial += 1;
                let body = json!({"first_name": format!("Name{}", self.serial)});
                self.call(
                    "profile_update",
                    Method::PATCH,
                    "/v1/users/me",
                    Some(&body),
                    Some(&account.access.clone()),
                    &[200],
                )
                .await?;
            }
            65..=72 => {
                if account.failures >= MAX_FAILURES {
                    return self.login(account).await;
                }
                let body = json!({"login": account.username, "password": "Not-The-Password-123"});
                self.call(
                    "login_wrong_password",
                    Method::POST,
                    "/v1/auth/login",
                    Some(&body),
                    None,
                    &[401],
                )
                .await?;
                account.failures += 1;
            }
            73..=80 => self.login(account).await?,
            81..=85 => {
                let body = json!({"refresh_token": account.refresh});
                self.call(
                    "logout",
                    Method::POST,
                    "/v1/auth/logout",
                    Some(&body),
                    None,
                    &[204],
                )
                .await?;
                self.login(account).await?;
            }
            86..=91 => {
                self.call(
                    "admin_list",
                    Method::GET,
                    "/v1/admin/users?limit=20",
                    None,
                    Some(admin),
                    &[200],
                )
                .await?;
            }
            _ => {
                self.retire(account);
                *account = self.new_account().await?;
            }
        }
        Some(())
    }

    /// A registered account given the built-in admin role, logged in again
    /// so its token carries the role.
    pub(super) async fn make_admin(&mut self, pool: &PgPool) -> anyhow::Result<Account> {
        let mut admin = self.new_account().await.ok_or_else(|| {
            anyhow::anyhow!(
                "registering the admin account failed: {:?}",
                self.tally.unexpected
            )
        })?;
        sqlx::query(
            "INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = 'admin'
             ON CONFLICT DO NOTHING",
        )
        .bind(admin.id)
        .execute(pool)
        .await?;
        self.login(&mut admin)
            .await
            .ok_or_else(|| anyhow::anyhow!("the admin's login failed"))?;
        Ok(admin)
    }

    /// Remembers an account's final failure count for the audit.
    pub(super) fn retire(&self, account: &Account) {
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.push((account.id, account.failures));
        }
    }
}
