//! The batched caller statements (`db::callers`): one statement answers
//! many requests' callers, each exactly as its own statement would, and the
//! coalescer hands each request its own caller.

use shared::db::MIGRATOR;
use shared::db::callers::{self, CallerKey, Lookups};
use shared::domain::UserStatus;
use sqlx::PgPool;
use tests::TestApp;
use uuid::Uuid;

async fn session_of(pool: &PgPool, user: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT session_id FROM refresh_tokens WHERE user_id = $1 LIMIT 1")
        .bind(user)
        .fetch_one(pool)
        .await
        .expect("a session")
}

/// Users in every state a caller can be in, and the keys that name them:
/// live, suspended (session revoked), deleted, a live user with a session
/// that is not theirs, an unknown user, and the live one twice.
async fn every_kind_of_caller(app: &TestApp) -> Vec<CallerKey> {
    let mut keys = Vec::new();
    let mut sessions = Vec::new();
    for name in ["live", "suspended", "deleted", "stranger"] {
        let (user, _) = app.signed_in(&format!("batch_{name}")).await;
        let session = session_of(&app.pool, user.id).await;
        keys.push((user.id, session));
        sessions.push(session);
    }
    let set = |sql: &'static str, id: Uuid| {
        let pool = app.pool.clone();
        async move {
            sqlx::query(sql)
                .bind(id)
                .execute(&pool)
                .await
                .expect("update");
        }
    };
    set(
        "UPDATE users SET status = 'suspended' WHERE id = $1",
        keys[1].0,
    )
    .await;
    set(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1",
        keys[1].0,
    )
    .await;
    set(
        "UPDATE users SET status = 'deleted', deleted_at = now() WHERE id = $1",
        keys[2].0,
    )
    .await;
    // The stranger presents the live user's session.
    keys[3].1 = sessions[0];
    keys.push((Uuid::new_v4(), sessions[0]));
    keys.push(keys[0]);
    keys
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_answers_each_caller_as_its_own_statement_would(pool: PgPool) {
    let app = TestApp::new(pool);
    let keys = every_kind_of_caller(&app).await;
    let batch = callers::callers(&app.pool, &keys).await.expect("batch");
    let rows = callers::caller_rows(&app.pool, &keys).await.expect("batch");
    assert_eq!(batch.len(), keys.len());
    assert_eq!(rows.len(), keys.len());
    for (i, (id, session)) in keys.iter().enumerate() {
        let alone = callers::caller(&app.pool, *id, *session)
            .await
            .expect("single");
        let (got, row) = (&batch[i], &rows[i]);
        assert_eq!(got.is_some(), alone.is_some(), "key {i}");
        assert_eq!(row.is_some(), alone.is_some(), "key {i}");
        let (Some(got), Some(row), Some(alone)) = (got, row, alone) else {
            continue;
        };
        assert_eq!(
            (got.status, got.deleted, got.session_live, &got.role_ids),
            (
                alone.status,
                alone.deleted,
                alone.session_live,
                &alone.role_ids
            ),
            "key {i}"
        );
        assert_eq!(row.user.id, *id, "key {i}: another user's row");
        assert_eq!(
            (row.user.status, row.session_live, &row.role_ids),
            (alone.status, alone.session_live, &alone.role_ids),
            "key {i}"
        );
    }
    // What each key must say, not only that both statements agree.
    let live = |i: usize| {
        batch[i]
            .as_ref()
            .map(|c| (c.status, c.deleted, c.session_live))
    };
    assert_eq!(live(0), Some((UserStatus::Active, false, true)));
    assert_eq!(live(1), Some((UserStatus::Suspended, false, false)));
    assert_eq!(live(2).map(|(_, deleted, _)| deleted), Some(true));
    assert_eq!(
        live(3),
        Some((UserStatus::Active, false, false)),
        "a borrowed session"
    );
    assert!(batch[4].is_none(), "an unknown user has no caller");
    assert_eq!(live(5), live(0), "a repeated key");
}

/// Many requests at once through one coalescer that runs a single batch at
/// a time: they queue, share statements, and each gets its own caller.
#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_look_ups_each_get_their_own_caller(pool: PgPool) {
    let app = TestApp::new(pool);
    let mut keys = Vec::new();
    for i in 0..12 {
        let (user, _) = app.signed_in(&format!("crowd_{i}")).await;
        keys.push((user.id, session_of(&app.pool, user.id).await, user.username));
    }
    let lookups = Lookups::new(&app.pool, 1, std::time::Duration::from_secs(5));
    let answers = futures::future::join_all(keys.iter().cycle().take(60).map(|(id, sid, _)| {
        let lookups = lookups.clone();
        async move { lookups.caller_row(*id, *sid).await }
    }))
    .await;
    for ((id, _, username), answer) in keys.iter().cycle().zip(answers) {
        let row = answer.expect("answer").expect("a caller");
        assert_eq!((row.user.id, &row.user.username), (*id, username));
        assert!(row.session_live);
    }
}
