//! The cache's AUTH token from Secrets Manager (`CACHE_SECRET_ARN`, through
//! moto) against a real Redis that requires it: the right token connects, a
//! wrong one is an init error naming the secret and never quoting it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::aws::{create_secret, sdk};

/// A Redis on a free loopback port that requires `password`; stopped on drop.
struct GuardedRedis {
    child: Child,
    port: u16,
}

impl GuardedRedis {
    async fn start(password: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--requirepass",
                password,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (the test command installs it)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, port }
    }
}

impl Drop for GuardedRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_cache_token_comes_from_its_secret_and_a_wrong_one_stops_the_start() {
    let token = "Cache-Token-0123456789abcdefABCDEF";
    let redis = GuardedRedis::start(token).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let sdk = sdk().await;

    let right = create_secret(&sdk, token).await;
    let mut config = tests::test_config(&[
        ("REDIS_URL", url.as_str()),
        ("CACHE_SECRET_ARN", right.as_str()),
    ]);
    shared::aws::resolve(&mut config, &sdk)
        .await
        .expect("the right token");
    let cache = shared::cache::Cache::new(config.redis_url.as_ref().unwrap()).unwrap();
    assert!(cache.ping().await, "authenticated");

    // Without the token the cache refuses every command.
    let bare = shared::cache::Cache::new(&secrecy::SecretString::from(url.clone())).unwrap();
    assert!(!bare.ping().await);

    let wrong = create_secret(&sdk, "Not-The-Token-0123456789abcdef").await;
    let mut config = tests::test_config(&[
        ("REDIS_URL", url.as_str()),
        ("CACHE_SECRET_ARN", wrong.as_str()),
    ]);
    let err = format!(
        "{:#}",
        shared::aws::resolve(&mut config, &sdk).await.unwrap_err()
    );
    assert!(
        err.contains("CACHE_SECRET_ARN") && err.contains(&wrong),
        "{err}"
    );
    assert!(
        !err.contains("Not-The-Token"),
        "the token is never quoted: {err}"
    );
    assert!(
        config
            .redis_url
            .as_ref()
            .is_some_and(|u| !u.expose_secret().contains('@'))
    );

    // A secret that cannot be read is an init error naming it too.
    let missing = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cache-AbCdEf";
    let mut config =
        tests::test_config(&[("REDIS_URL", url.as_str()), ("CACHE_SECRET_ARN", missing)]);
    let err = format!(
        "{:#}",
        shared::aws::resolve(&mut config, &sdk).await.unwrap_err()
    );
    assert!(
        err.contains("CACHE_SECRET_ARN") && err.contains(missing),
        "{err}"
    );
}
