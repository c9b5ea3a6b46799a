//! Helpers shared by the Redis test binaries.

// Each test binary uses a subset of the helpers.
#![allow(dead_code)]

use fred::prelude::{Builder, Client, ClientLike, Config};
use std::time::Duration;
use vrs_adapter_redis::{RedisAdapters, RedisConfig};

/// How long a test waits for a fresh client to connect to a running server.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// `TEST_REDIS_URL`, or `None` (after a notice) to skip. Under `CI=true` a missing URL fails the
/// test instead: CI must never pass by skipping.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip_or_fail(
                test,
                "TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)",
            );
            None
        }
    }
}

/// Panics under `CI=true`, else prints why `test` is skipped.
pub fn skip_or_fail(test: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}; CI=true requires it (scripts/test.sh sets it up)");
    }
    eprintln!("skipping {test}: {why}");
}

/// Adapters on `url`, once connected.
pub async fn connected(url: &str) -> RedisAdapters {
    let adapters = RedisAdapters::connect(&RedisConfig::new(url)).expect("valid config");
    assert!(
        adapters.connection.wait_connected(CONNECT_WITHIN).await,
        "connected to {url} within {CONNECT_WITHIN:?}"
    );
    adapters
}

/// A plain client for looking at the keys the adapters wrote.
pub async fn inspector(url: &str) -> Client {
    let client = Builder::from_config(Config::from_url(url).expect("valid url"))
        .build()
        .expect("client");
    client.init().await.expect("connect the inspector");
    client
}
