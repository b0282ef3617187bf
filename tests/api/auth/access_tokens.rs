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
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(jwks["keys"][0]["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
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
