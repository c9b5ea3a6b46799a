//! The Redis adapters against the contract suites every adapter of a port passes, and the
//! Redis-specific promises: key layout, size bound, TTLs, defensive reads.

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::{connected, inspector, redis_url};
use fred::prelude::{ClientLike, Expiration, KeysInterface, SortedSetsInterface};
use fred::types::{ClusterHash, CustomCommand};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vrs_adapter_redis::{HISTORY_CAP, RedisAdapters, RedisConfig, SERVED_TTL, WATCHED_TTL};
use vrs_application::contract::{feed_cache, history};
use vrs_application::ports::{FeedCache, HealthProbe, PortError, ViewHistory};
use vrs_domain::{FeedSession, SessionId, UserId, VideoId, Weights};

fn user() -> UserId {
    UserId(Uuid::new_v4())
}

fn video() -> VideoId {
    VideoId(Uuid::new_v4())
}

fn session(user: UserId) -> FeedSession {
    let now = Utc::now();
    FeedSession {
        experiments: Vec::new(),
        id: SessionId(Uuid::new_v4()),
        user_id: user,
        created_at: now,
        expires_at: now + ChronoDuration::minutes(10),
        weights: Weights::DEFAULT,
        items: Vec::new(),
    }
}

#[tokio::test]
async fn feed_cache_contract() {
    let Some(url) = redis_url("feed_cache_contract") else {
        return;
    };
    feed_cache::feed_cache_contract(|| async {
        connected(&url).await.feed_cache as Arc<dyn FeedCache>
    })
    .await;
}

#[tokio::test]
async fn history_contract() {
    let Some(url) = redis_url("history_contract") else {
        return;
    };
    history::history_contract(|| async { connected(&url).await.history as Arc<dyn ViewHistory> })
        .await;
}

#[tokio::test]
async fn event_ledger_contract() {
    let Some(url) = redis_url("event_ledger_contract") else {
        return;
    };
    vrs_application::contract::event_ledger::event_ledger_contract(|| async {
        connected(&url).await.event_ledger as Arc<dyn vrs_application::ports::EventLedger>
    })
    .await;
}

#[tokio::test]
async fn every_key_of_a_user_starts_with_its_hash_tag() {
    let Some(url) = redis_url("every_key_of_a_user_starts_with_its_hash_tag") else {
        return;
    };
    let redis = connected(&url).await;
    let u = user();
    let s = session(u);
    redis
        .feed_cache
        .store_session(&s, Duration::from_secs(60))
        .await
        .unwrap();
    redis
        .history
        .record_served(u, &[video()], Utc::now())
        .await
        .unwrap();
    redis
        .history
        .record_watched(u, &[video()], Utc::now())
        .await
        .unwrap();

    let inspect = inspector(&url).await;
    let keys = CustomCommand::new_static("KEYS", ClusterHash::Random, false);
    let mut found: Vec<String> = inspect.custom(keys, vec![format!("*{u}*")]).await.unwrap();
    found.sort();
    let tag = format!("feed:u:{{{u}}}");
    let mut expected = vec![
        format!("{tag}:cur"),
        format!("{tag}:s:{}", s.id),
        format!("{tag}:served"),
        format!("{tag}:watched"),
    ];
    expected.sort();
    assert_eq!(
        found, expected,
        "exactly these keys, all under the user's hash tag"
    );
}

#[tokio::test]
async fn history_keeps_the_newest_videos_up_to_the_cap() {
    let Some(url) = redis_url("history_keeps_the_newest_videos_up_to_the_cap") else {
        return;
    };
    let redis = connected(&url).await;
    let u = user();
    let now = Utc::now();
    let old: Vec<VideoId> = (0..10).map(|_| video()).collect();
    let new: Vec<VideoId> = (0..HISTORY_CAP).map(|_| video()).collect();
    redis
        .history
        .record_served(u, &old, now - ChronoDuration::hours(2))
        .await
        .unwrap();
    redis
        .history
        .record_served(u, &new, now - ChronoDuration::hours(1))
        .await
        .unwrap();

    let inspect = inspector(&url).await;
    let size: usize = inspect
        .zcard(format!("feed:u:{{{u}}}:served"))
        .await
        .unwrap();
    assert_eq!(size, HISTORY_CAP, "bounded to the cap");
    let mut kept = redis
        .history
        .served_since(u, now - ChronoDuration::days(1))
        .await
        .unwrap();
    kept.sort();
    let mut newest = new.clone();
    newest.sort();
    assert_eq!(kept, newest, "the oldest videos went first");
}

#[tokio::test]
async fn keys_expire_and_writes_refresh_history_ttls() {
    let Some(url) = redis_url("keys_expire_and_writes_refresh_history_ttls") else {
        return;
    };
    let redis = connected(&url).await;
    let inspect = inspector(&url).await;
    let u = user();
    let tag = format!("feed:u:{{{u}}}");
    let pttl = |key: String| {
        let inspect = inspect.clone();
        async move { inspect.pttl::<i64, _>(key).await.unwrap() }
    };
    let within = |ms: i64, ttl: Duration| {
        let ttl = ttl.as_millis() as i64;
        ms > ttl - 60_000 && ms <= ttl
    };

    let s = session(u);
    let ttl = Duration::from_secs(600);
    redis.feed_cache.store_session(&s, ttl).await.unwrap();
    assert!(
        within(pttl(format!("{tag}:s:{}", s.id)).await, ttl),
        "session TTL"
    );
    assert!(
        within(pttl(format!("{tag}:cur")).await, ttl),
        "current pointer TTL"
    );

    redis
        .history
        .record_served(u, &[video()], Utc::now())
        .await
        .unwrap();
    redis
        .history
        .record_watched(u, &[video()], Utc::now())
        .await
        .unwrap();
    assert!(
        within(pttl(format!("{tag}:served")).await, SERVED_TTL),
        "served: 48 h"
    );
    assert!(
        within(pttl(format!("{tag}:watched")).await, WATCHED_TTL),
        "watched: 31 days"
    );

    let _: bool = inspect
        .expire(format!("{tag}:served"), 10, None)
        .await
        .unwrap();
    redis
        .history
        .record_served(u, &[video()], Utc::now())
        .await
        .unwrap();
    assert!(
        within(pttl(format!("{tag}:served")).await, SERVED_TTL),
        "refreshed on write"
    );
}

#[tokio::test]
async fn recording_nothing_writes_nothing() {
    let Some(url) = redis_url("recording_nothing_writes_nothing") else {
        return;
    };
    let redis = connected(&url).await;
    let u = user();
    redis
        .history
        .record_served(u, &[], Utc::now())
        .await
        .unwrap();
    redis
        .history
        .record_watched(u, &[], Utc::now())
        .await
        .unwrap();
    let inspect = inspector(&url).await;
    let tag = format!("feed:u:{{{u}}}");
    let existing: u32 = inspect
        .exists(vec![format!("{tag}:served"), format!("{tag}:watched")])
        .await
        .unwrap();
    assert_eq!(existing, 0);
}

#[tokio::test]
async fn corrupt_stored_data_reads_as_invalid_data() {
    let Some(url) = redis_url("corrupt_stored_data_reads_as_invalid_data") else {
        return;
    };
    let redis = connected(&url).await;
    let inspect = inspector(&url).await;
    let u = user();
    let tag = format!("feed:u:{{{u}}}");
    let id = SessionId(Uuid::new_v4());
    let expiry = Some(Expiration::EX(60));
    let set = |key: String, value: &'static [u8]| {
        let (inspect, expiry) = (inspect.clone(), expiry.clone());
        async move {
            let _: () = inspect.set(key, value, expiry, None, false).await.unwrap();
        }
    };

    set(format!("{tag}:s:{id}"), b"\x01garbage").await;
    let read = redis.feed_cache.session(u, id).await;
    assert!(matches!(read, Err(PortError::InvalidData(_))), "{read:?}");

    set(format!("{tag}:s:{id}"), b"\x09future version").await;
    let read = redis.feed_cache.session(u, id).await;
    assert!(matches!(read, Err(PortError::InvalidData(_))), "{read:?}");

    set(format!("{tag}:cur"), b"not a uuid").await;
    let read = redis.feed_cache.current_session(u).await;
    assert!(matches!(read, Err(PortError::InvalidData(_))), "{read:?}");

    // A valid session copied under another user's key is refused, not served to that user.
    let other = session(user());
    redis
        .feed_cache
        .store_session(&other, Duration::from_secs(60))
        .await
        .unwrap();
    let bytes: fred::bytes::Bytes = inspect
        .get(format!("feed:u:{{{}}}:s:{}", other.user_id, other.id))
        .await
        .unwrap();
    let _: () = inspect
        .set(
            format!("{tag}:s:{}", other.id),
            bytes,
            expiry.clone(),
            None,
            false,
        )
        .await
        .unwrap();
    let read = redis.feed_cache.session(u, other.id).await;
    assert!(matches!(read, Err(PortError::InvalidData(_))), "{read:?}");

    let _: () = inspect
        .zadd(
            format!("{tag}:watched"),
            None,
            None,
            false,
            false,
            (1.0, "not a uuid"),
        )
        .await
        .unwrap();
    let read = redis
        .history
        .watched_since(u, Utc::now() - ChronoDuration::days(1))
        .await;
    assert!(
        matches!(read, Ok(ref v) if v.is_empty()),
        "older entries are not read: {read:?}"
    );
    let read = redis
        .history
        .watched_since(u, chrono::DateTime::UNIX_EPOCH)
        .await;
    assert!(matches!(read, Err(PortError::InvalidData(_))), "{read:?}");
}

#[tokio::test]
async fn the_health_probe_pings() {
    let Some(url) = redis_url("the_health_probe_pings") else {
        return;
    };
    let redis = connected(&url).await;
    assert_eq!(redis.probe.name(), "redis");
    redis.probe.check().await.expect("PONG");
}

/// Needs no server: nothing listens on the port. The command timeout is long, so failing fast
/// comes from not queueing while disconnected, not from the timeout.
#[tokio::test]
async fn starting_while_redis_is_down_returns_at_once_and_calls_fail_fast() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = std::time::Instant::now();
    let config = RedisConfig {
        command_timeout: Duration::from_secs(5),
        ..RedisConfig::new(format!("redis://127.0.0.1:{port}"))
    };
    let redis = RedisAdapters::connect(&config).unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "construction does not wait"
    );
    assert!(
        !redis
            .connection
            .wait_connected(Duration::from_millis(300))
            .await
    );

    let u = user();
    for _ in 0..3 {
        let call = std::time::Instant::now();
        let read = redis.feed_cache.current_session(u).await;
        assert!(matches!(read, Err(PortError::Unavailable(_))), "{read:?}");
        let write = redis
            .history
            .record_watched(u, &[video()], Utc::now())
            .await;
        assert!(matches!(write, Err(PortError::Unavailable(_))), "{write:?}");
        let health = redis.probe.check().await;
        assert!(health.is_err(), "{health:?}");
        assert!(
            call.elapsed() < Duration::from_millis(50),
            "three calls failed fast: {:?}",
            call.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn scripts_are_loaded_again_after_redis_forgets_them_and_a_pointer_without_its_session_is_none()
 {
    let Some(url) = redis_url("scripts_are_loaded_again_after_redis_forgets_them") else {
        return;
    };
    let redis = connected(&url).await;
    let inspect = inspector(&url).await;
    let u = user();
    let s = session(u);
    redis
        .feed_cache
        .store_session(&s, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        redis
            .feed_cache
            .current_session(u)
            .await
            .unwrap()
            .map(|c| c.id),
        Some(s.id)
    );

    // Redis forgets every script (a restart does the same): the next calls load them again.
    let flush = CustomCommand::new_static("SCRIPT", ClusterHash::Random, false);
    let _: String = inspect.custom(flush, vec!["FLUSH"]).await.unwrap();
    let v = video();
    let at = Utc::now();
    redis.history.record_served(u, &[v], at).await.unwrap();
    redis
        .history
        .record_served(u, &[v], at + ChronoDuration::seconds(1))
        .await
        .unwrap();
    let served: Vec<(String, f64)> = inspect
        .zrange(
            format!("feed:u:{{{u}}}:served"),
            0,
            -1,
            None,
            false,
            None,
            true,
        )
        .await
        .unwrap();
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(
        served[0].1 as i64,
        (at + ChronoDuration::seconds(1)).timestamp_millis(),
        "the later serve counts"
    );
    assert_eq!(
        redis
            .feed_cache
            .current_session(u)
            .await
            .unwrap()
            .map(|c| c.id),
        Some(s.id),
        "the current session's script is loaded again too"
    );

    // The pointer outlives its session (evicted): no session, not an error.
    let _: i64 = inspect
        .del(format!("feed:u:{{{u}}}:s:{}", s.id))
        .await
        .unwrap();
    assert!(redis.feed_cache.current_session(u).await.unwrap().is_none());
}
