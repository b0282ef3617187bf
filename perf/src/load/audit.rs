//! The consistency audit after a load run: the database against what the
//! clients were told.

use super::*;

/// Compares the database with what the clients were told.
pub async fn audit(pool: &PgPool, report: &LoadReport) -> anyhow::Result<Vec<Check>> {
    let pattern = format!("ld{}w%", report.run_id);
    let count = |op: &str, status: u16| report.count(op, status) as i64;
    let race_wins = count("refresh_race", 200);
    let logins = count("login", 200);
    let mut checks = Vec::new();
    let scalar = |sql: &'static str| {
        let pattern = pattern.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(pattern)
                .fetch_one(pool)
                .await
        }
    };

    checks.push(Check {
        name: "users created = 201s",
        expected: count("register", 201),
        found: scalar("SELECT count(*) FROM users WHERE username LIKE $1").await?,
    });
    checks.push(Check {
        name: "rotated tokens = successful refreshes",
        expected: count("refresh", 200) + race_wins,
        found: scalar(
            "SELECT count(*) FROM refresh_tokens t JOIN users u ON u.id = t.user_id
             WHERE u.username LIKE $1 AND t.replaced_by IS NOT NULL",
        )
        .await?,
    });
    checks.push(Check {
        name: "rotations whose successor is missing or in another session",
        expected: 0,
        found: scalar(
            "SELECT count(*) FROM refresh_tokens t JOIN users u ON u.id = t.user_id
             LEFT JOIN refresh_tokens s ON s.id = t.replaced_by
             WHERE u.username LIKE $1 AND t.replaced_by IS NOT NULL
               AND (s.id IS NULL OR s.session_id <> t.session_id)",
        )
        .await?,
    });
    checks.push(Check {
        name: "sessions with two live tokens",
        expected: 0,
        found: scalar(
            "SELECT count(*) FROM (
                 SELECT t.session_id FROM refresh_tokens t JOIN users u ON u.id = t.user_id
                 WHERE u.username LIKE $1 AND t.revoked_at IS NULL
                 GROUP BY t.session_id HAVING count(*) > 1) s",
        )
        .await?,
    });
    checks.push(Check {
        name: "live sessions = logins - logouts",
        expected: logins - count("logout", 204),
        found: scalar(
            "SELECT count(*) FROM refresh_tokens t JOIN users u ON u.id = t.user_id
             WHERE u.username LIKE $1 AND t.revoked_at IS NULL AND t.expires_at > now()",
        )
        .await?,
    });
    let mut mismatched = 0;
    for (id, failures) in &report.accounts {
        let stored: Option<i32> =
            sqlx::query_scalar("SELECT failed_login_attempts FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
        if stored != Some(*failures) {
            mismatched += 1;
        }
    }
    checks.push(Check {
        name: "accounts whose failed_login_attempts differs from the failures counted",
        expected: 0,
        found: mismatched,
    });
    for (action, expected) in [
        ("user_registered", count("register", 201)),
        ("login_succeeded", logins),
        ("login_failed", count("login_wrong_password", 401)),
        ("token_refreshed", count("refresh", 200) + race_wins),
        ("logout", count("logout", 204)),
        ("profile_updated", count("profile_update", 200)),
    ] {
        let found: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_logs a JOIN users u ON u.id = a.user_id
             WHERE u.username LIKE $1 AND a.action = $2::audit_action",
        )
        .bind(&pattern)
        .bind(action)
        .fetch_one(pool)
        .await?;
        checks.push(Check {
            name: match action {
                "user_registered" => "audit rows user_registered = 201s",
                "login_succeeded" => "audit rows login_succeeded = logins",
                "login_failed" => "audit rows login_failed = wrong passwords",
                "token_refreshed" => "audit rows token_refreshed = refreshes",
                "logout" => "audit rows logout = logouts",
                _ => "audit rows profile_updated = profile updates",
            },
            expected,
            found,
        });
    }
    Ok(checks)
}
