//! `shared::session` without HTTP: logging in, rotation, logout and the
//! lockout, called as the handlers call them.

use shared::Error;
use shared::db::MIGRATOR;
use shared::domain::Password;
use shared::http::RequestMeta;
use shared::session;
use sqlx::PgPool;
use tests::TestApp;

fn meta() -> RequestMeta {
    RequestMeta {
        request_id: uuid::Uuid::new_v4().to_string(),
        ip: Some([10, 9, 8, 7].into()),
        user_agent: Some("session-test".into()),
    }
}

fn password(raw: &str) -> Password {
    Password::candidate(raw).unwrap()
}

/// `session::log_in` of an account without a second factor.
async fn log_in(
    state: &shared::AppState,
    meta: &RequestMeta,
    login: &str,
    password: &Password,
    fingerprint: Option<&str>,
) -> Result<(session::Issued, shared::domain::user::User), Error> {
    match session::log_in(state, meta, login, password, fingerprint).await? {
        session::LoggedIn::Session(issued, user) => Ok((issued, *user)),
        other => panic!("a second factor was asked for: {other:?}"),
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_session_is_started_rotated_and_ended(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("REFRESH_REUSE_GRACE_SECONDS", "0")]);
    let user = app.register("sessions").await;
    let (first, me) = log_in(
        &app.state,
        &meta(),
        "SESSIONS",
        &password(&user.password),
        None,
    )
    .await
    .unwrap();
    assert_eq!(me.id, user.id, "a login names the account in any case");
    assert_eq!(first.refresh_expires_in, 14 * 86_400);

    let (second, _) = session::rotate(&app.state, &meta(), &first.refresh_token, None)
        .await
        .unwrap();
    assert_eq!(
        second.session_id, first.session_id,
        "rotation keeps the session"
    );
    assert_ne!(second.refresh_token, first.refresh_token);

    // The spent token again, past the (zero) grace window: a stolen copy,
    // so the whole session ends, its live successor too.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let reused = session::rotate(&app.state, &meta(), &first.refresh_token, None).await;
    assert!(
        matches!(reused, Err(Error::RefreshTokenReused)),
        "{reused:?}"
    );
    let after = session::rotate(&app.state, &meta(), &second.refresh_token, None).await;
    assert!(
        matches!(after, Err(Error::RefreshTokenInvalid)),
        "{after:?}"
    );

    let (third, _) = log_in(
        &app.state,
        &meta(),
        &user.email,
        &password(&user.password),
        None,
    )
    .await
    .unwrap();
    session::end(&app.state, &meta(), &third.refresh_token, false)
        .await
        .unwrap();
    let ended = session::rotate(&app.state, &meta(), &third.refresh_token, None).await;
    assert!(
        matches!(ended, Err(Error::RefreshTokenInvalid)),
        "{ended:?}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn no_refresh_token_outlives_its_session(pool: PgPool) {
    let app = TestApp::with_config(
        pool,
        &[("SESSION_MAX_DAYS", "1"), ("REFRESH_TOKEN_TTL_DAYS", "14")],
    );
    let user = app.register("capped").await;
    let (first, _) = log_in(
        &app.state,
        &meta(),
        "capped",
        &password(&user.password),
        None,
    )
    .await
    .unwrap();
    assert!(
        first.refresh_expires_in <= 86_400,
        "{}",
        first.refresh_expires_in
    );
    let (second, _) = session::rotate(&app.state, &meta(), &first.refresh_token, None)
        .await
        .unwrap();
    assert!(
        second.refresh_expires_in <= 86_400,
        "{}",
        second.refresh_expires_in
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn wrong_and_unknown_logins_answer_alike_until_the_lockout(pool: PgPool) {
    let app = TestApp::with_config(pool, &[("LOCKOUT_THRESHOLD", "3")]);
    let user = app.register("locked").await;
    let unknown = log_in(&app.state, &meta(), "nobody", &password("x"), None).await;
    assert!(
        matches!(unknown, Err(Error::InvalidCredentials)),
        "{unknown:?}"
    );
    for _ in 0..3 {
        let wrong = log_in(&app.state, &meta(), "locked", &password("wrong"), None).await;
        assert!(matches!(
            wrong,
            Err(Error::InvalidCredentials) | Err(Error::AccountLocked { .. })
        ));
    }
    // Locked now: even the right password is refused.
    let right = log_in(
        &app.state,
        &meta(),
        "locked",
        &password(&user.password),
        None,
    )
    .await;
    assert!(
        matches!(right, Err(Error::AccountLocked { .. })),
        "{right:?}"
    );
}
