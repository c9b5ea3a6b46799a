//! Redis goes away and comes back: calls fail fast meanwhile, errors are counted, and the adapters
//! recover by themselves. Runs its own `redis-server` on a free port.

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::{connected, skip_or_fail};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use uuid::Uuid;
use vrs_adapter_redis::{CONNECTION_ERRORS_METRIC, RedisAdapters};
use vrs_application::ports::{FeedCache, HealthProbe, ViewHistory};
use vrs_domain::{FeedSession, SessionId, UserId, VideoId, Weights};

/// The whole scenario must finish within this.
const TEST_BUDGET: Duration = Duration::from_secs(60);
/// A call while Redis is down must fail within this (the command timeout is 50 ms).
const FAIL_FAST: Duration = Duration::from_millis(250);
/// The adapters must work again within this after Redis is back.
const RECOVER_WITHIN: Duration = Duration::from_secs(5);

/// Counts `redis_connection_errors_total`, whatever its labels; ignores every other metric.
#[derive(Debug, Default)]
struct ErrorCounter(Arc<AtomicU64>);

impl Recorder for ErrorCounter {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        if key.name() == CONNECTION_ERRORS_METRIC {
            Counter::from_arc(self.0.clone())
        } else {
            Counter::noop()
        }
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// `TEST_REDIS_SERVER_BIN`, else `redis-server` from `PATH`.
fn redis_server_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("TEST_REDIS_SERVER_BIN").filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A throwaway `redis-server` without persistence; killed when dropped.
async fn start_server(bin: &Path, port: u16, dir: &Path) -> Child {
    let child = Command::new(bin)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn redis-server");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "redis-server listening on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

fn session(user: UserId) -> FeedSession {
    // Sessions keep whole microseconds, like every adapter's (see the contract suites).
    let now = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    FeedSession {
        id: SessionId(Uuid::new_v4()),
        user_id: user,
        created_at: now,
        expires_at: now + ChronoDuration::minutes(10),
        weights: Weights::DEFAULT,
        items: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_by_itself_when_redis_returns() {
    let test = "recovers_by_itself_when_redis_returns";
    let Some(bin) = redis_server_bin() else {
        skip_or_fail(
            test,
            "no redis-server (set TEST_REDIS_SERVER_BIN or put it on PATH)",
        );
        return;
    };
    let errors = Arc::new(AtomicU64::new(0));
    metrics::set_global_recorder(ErrorCounter(errors.clone())).expect("the only recorder");

    let port = free_port();
    let dir =
        std::env::temp_dir().join(format!("vrs-redis-recovery-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let outcome = tokio::time::timeout(TEST_BUDGET, scenario(&bin, port, &dir, &errors)).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome.expect("the scenario finishes in time");
}

async fn scenario(bin: &Path, port: u16, dir: &Path, errors: &AtomicU64) {
    let mut server = start_server(bin, port, dir).await;
    let redis = connected(&format!("redis://127.0.0.1:{port}")).await;
    let u = UserId(Uuid::new_v4());
    let before = session(u);
    redis
        .feed_cache
        .store_session(&before, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        redis.feed_cache.current_session(u).await.unwrap(),
        Some(before)
    );
    let errors_before = errors.load(Ordering::Relaxed);

    server.kill().await.expect("kill redis-server");
    // Calls spread over the reconnection backoff (100 ms doubling to 1 s) all fail, and fast.
    let down_since = Instant::now();
    let mut refused = Vec::new();
    while down_since.elapsed() < Duration::from_millis(2_500) {
        refused.push(assert_all_fail_fast(&redis, u).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        errors.load(Ordering::Relaxed) > errors_before,
        "{CONNECTION_ERRORS_METRIC} counted the outage"
    );

    let _server = start_server(bin, port, dir).await;
    let back = Instant::now();
    let after = session(u);
    loop {
        match redis
            .feed_cache
            .store_session(&after, Duration::from_secs(60))
            .await
        {
            Ok(()) => break,
            Err(e) => assert!(back.elapsed() < RECOVER_WITHIN, "not recovered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("recovered {:?} after Redis came back", back.elapsed());
    assert_eq!(
        redis.feed_cache.current_session(u).await.unwrap(),
        Some(after)
    );
    redis.probe.check().await.expect("healthy again");
    for id in refused {
        assert_eq!(
            redis.feed_cache.session(u, id).await.unwrap(),
            None,
            "a write that failed while Redis was down is not replayed when it returns"
        );
    }
    let video = VideoId(Uuid::new_v4());
    redis
        .history
        .record_watched(u, &[video], Utc::now())
        .await
        .unwrap();
    let watched = redis
        .history
        .watched_since(u, Utc::now() - ChronoDuration::hours(1))
        .await
        .unwrap();
    assert_eq!(watched, vec![video]);
}

/// Every kind of call fails, each well under a second. Returns the id of the refused session.
async fn assert_all_fail_fast(redis: &RedisAdapters, u: UserId) -> SessionId {
    let timed = |what: &'static str, started: Instant, failed: bool| {
        let took = started.elapsed();
        assert!(failed, "{what} fails while Redis is down");
        assert!(took < FAIL_FAST, "{what} failed fast: {took:?}");
    };
    let t = Instant::now();
    timed(
        "current_session",
        t,
        redis.feed_cache.current_session(u).await.is_err(),
    );
    let t = Instant::now();
    let refused = session(u);
    let store = redis
        .feed_cache
        .store_session(&refused, Duration::from_secs(60))
        .await;
    timed("store_session", t, store.is_err());
    let t = Instant::now();
    let record = redis
        .history
        .record_served(u, &[VideoId(Uuid::new_v4())], Utc::now())
        .await;
    timed("record_served", t, record.is_err());
    let t = Instant::now();
    let since = Utc::now() - ChronoDuration::hours(1);
    timed(
        "served_since",
        t,
        redis.history.served_since(u, since).await.is_err(),
    );
    let t = Instant::now();
    timed("health check", t, redis.probe.check().await.is_err());
    refused.id
}
