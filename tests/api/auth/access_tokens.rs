//! The auth group: access tokens.

#[allow(unused_imports)]
use super::*;

#[sqlx::test(migrator = "MIGRATOR")]
async fn tampered_tokens_are_refused(pool: PgPool) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    let token = bearer(&pair);
    let parts: Vec<&str> = token.split('.').collect();
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();

    let with_claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        edit(&mut c);
        format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2])
    };
    let other_user = with_claims(&|c| c["sub"] = json!(Uuid::new_v4()));
    let alg_none = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        parts[1]
    );
    // HS256 signed with the public key as the HMAC secret.
    let jwks = app.get("/.well-known/jwks.json").await.body;
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    // (Signed by hand: the server's jsonwebtoken knows no HMAC at all.)
    let hs256 = {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let message = format!("{}.{}", B64.encode(header.to_string()), parts[1]);
        let secret = jwks["keys"][0]["n"].as_str().unwrap().as_bytes();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&key, message.as_bytes());
        format!("{message}.{}", B64.encode(tag.as_ref()))
    };
    let sign = |c: Value, kid: Option<&str>| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(tests::test_key_pem().as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &c, &key).unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 3600);
    expired["exp"] = json!(now - 1800);
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("another-api");
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("https://evil.example.com");

    let cases = [
        ("payload edited", other_user),
        ("alg none", alg_none),
        ("HS256 with the public key", hs256),
        ("expired", sign(expired, Some(&kid))),
        ("wrong aud", sign(wrong_aud, Some(&kid))),
        ("wrong iss", sign(wrong_iss, Some(&kid))),
        ("unknown kid", sign(claims.clone(), Some("unknown"))),
        ("no kid", sign(claims.clone(), None)),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (name, token) in cases {
        let response = app
            .call(Method::POST, "/v1/auth/email/resend", None, Some(&token))
            .await;
        assert_eq!(response.status, 401, "{name}: {}", response.body);
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{name}"
        );
    }
    // The untampered token still works, re-signed by the same key.
    assert_eq!(me_status(&app, &sign(claims, Some(&kid))).await, 202);
    let _ = user;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_suspended_users_tokens_are_refused_at_once(pool: PgPool) {
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("alice").await;
    sqlx::query("UPDATE users SET status = 'suspended' WHERE id = $1")
        .bind(user.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let response = app
        .call(
            Method::POST,
            "/v1/auth/email/resend",
            None,
            Some(&bearer(&pair)),
        )
        .await;
    assert_problem(&response, 403, "account_disabled");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn rotated_keys_keep_old_tokens_valid_and_sign_with_the_newest(pool: PgPool) {
    let old_app = TestApp::new(pool.clone());
    let (_, pair) = old_app.signed_in("alice").await;
    let new_key = shared::security::jwt::generate_private_key_pem().unwrap();
    let both = format!(
        "{}{}",
        tests::test_key_pem(),
        secrecy::ExposeSecret::expose_secret(&new_key)
    );
    let app = TestApp::with_config(pool, &[("JWT_PRIVATE_KEY_PEM", &both)]);
    let jwks = app.get("/.well-known/jwks.json").await.body;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(
        me_status(&app, &bearer(&pair)).await,
        202,
        "old key still accepted"
    );
    let fresh = app
        .post(
            "/v1/auth/login",
            json!({"login": "alice", "password": STRONG_PASSWORD}),
        )
        .await
        .body;
    let header = jsonwebtoken::decode_header(bearer(&fresh)).unwrap();
    assert_eq!(header.kid.as_deref(), Some(kids[1]));
    // A key that is no longer published no longer verifies.
    let only_new = secrecy::ExposeSecret::expose_secret(&new_key).to_string();
    let rotated = TestApp::with_config(old_app.pool.clone(), &[("JWT_PRIVATE_KEY_PEM", &only_new)]);
    assert_eq!(me_status(&rotated, &bearer(&pair)).await, 401);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn discovery_documents_publish_the_keys(pool: PgPool) {
    let app = TestApp::new(pool);
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status, 200);
    let key = &jwks.body["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert!(key["kid"].is_string() && key["n"].is_string() && key["e"] == "AQAB");
    assert!(key.get("d").is_none(), "no private part is published");
    let oidc = app.get("/.well-known/openid-configuration").await;
    assert_eq!(oidc.body["issuer"], "http://127.0.0.1:3000");
    assert_eq!(
        oidc.body["jwks_uri"],
        "http://127.0.0.1:3000/.well-known/jwks.json"
    );
}

/// The routes about the caller themself read the caller's row, permissions
/// and session in one statement (`users::caller_row`, the `Me` extractor):
/// each keeps the refusals of every authenticated route, in their order.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_self_routes_refuse_a_dead_caller_in_order(pool: PgPool) {
    const SELF_ROUTES: [(Method, &str); 6] = [
        (Method::GET, "/v1/users/me"),
        (Method::GET, "/v1/users/me/export"),
        (Method::POST, "/v1/users/me/password"),
        (Method::POST, "/v1/users/me/email"),
        (Method::DELETE, "/v1/users/me"),
        (Method::POST, "/v1/auth/email/resend"),
    ];
    let app = TestApp::new(pool);
    let (user, pair) = app.signed_in("selfish").await;
    let me = app
        .call(Method::GET, "/v1/users/me", None, Some(&bearer(&pair)))
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["username"], "selfish");
    assert_eq!(me.body["id"], user.id.to_string());

    let set = |sql: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query(sql).bind(user.id).execute(&pool).await.unwrap();
        }
    };
    let refused = |status: u16, code: &'static str, pair: Value| {
        let app = &app;
        async move {
            for (method, path) in SELF_ROUTES {
                let response = app
                    .call(method.clone(), path, None, Some(&bearer(&pair)))
                    .await;
                assert_eq!(
                    response.status.as_u16(),
                    status,
                    "{method} {path}: {}",
                    response.body
                );
                assert_problem(&response, status, code);
            }
        }
    };
    // Suspended: 403, although the suspension revoked the session.
    set("UPDATE users SET status = 'suspended' WHERE id = $1").await;
    set("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1").await;
    refused(403, "account_disabled", pair.clone()).await;
    // Active again, the session still revoked: 401.
    set("UPDATE users SET status = 'active' WHERE id = $1").await;
    refused(401, "unauthorized", pair.clone()).await;
    // A live session of a deleted user: 401.
    let login = app.login_as(&user).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let fresh = login.body;
    set("UPDATE users SET status = 'deleted', deleted_at = now() WHERE id = $1").await;
    refused(401, "unauthorized", fresh).await;
}
