//! Redis goes away and comes back: calls fail fast meanwhile, errors are counted, and the adapters
//! recover by themselves. Runs its own `redis-server` on a free port.

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::{connected, skip_or_fail};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use uuid::Uuid;
use vrs_adapter_redis::{CONNECTION_ERRORS_METRIC, MIN_PING_TIMEOUT, RedisAdapters};
use vrs_application::ports::{FeedCache, HealthProbe, PortError, ViewHistory};
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

/// The tests of this binary run one at a time, so that errors counted during one are its own.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The count of `redis_connection_errors_total`, recorded from the first call on.
fn error_count() -> &'static AtomicU64 {
    static COUNT: OnceLock<Arc<AtomicU64>> = OnceLock::new();
    COUNT.get_or_init(|| {
        let count = Arc::new(AtomicU64::new(0));
        metrics::set_global_recorder(ErrorCounter(count.clone())).expect("the only recorder");
        count
    })
}

/// `TEST_REDIS_SERVER_BIN`, else `redis-server` from `PATH`; `Err` says why there is none.
fn redis_server_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("TEST_REDIS_SERVER_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!(
                "TEST_REDIS_SERVER_BIN={} is not a file",
                bin.display()
            ))
        };
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| "no redis-server (set TEST_REDIS_SERVER_BIN or put it on PATH)".into())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
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
    let now = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
        .expect("a representable time");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_by_itself_when_redis_returns() {
    let test = "recovers_by_itself_when_redis_returns";
    let bin = match redis_server_bin() {
        Ok(bin) => bin,
        Err(why) => {
            skip_or_fail(test, &why);
            return;
        }
    };
    let _alone = SERIAL.lock().await;
    let errors = error_count();

    let port = free_port();
    let dir =
        std::env::temp_dir().join(format!("vrs-redis-recovery-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the server directory");
    let outcome = tokio::time::timeout(TEST_BUDGET, scenario(&bin, port, &dir, errors)).await;
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
        .expect("store a session");
    assert_eq!(
        redis
            .feed_cache
            .current_session(u)
            .await
            .expect("read the current session"),
        Some(before)
    );
    let errors_before = errors.load(Ordering::Relaxed);

    server.kill().await.expect("kill redis-server");
    // Calls spread over the reconnection backoff (100 ms doubling to 1 s) all fail, and fast.
    let down_since = Instant::now();
    let mut refused = Vec::new();
    while down_since.elapsed() < Duration::from_millis(2_500) {
        refused.push(assert_all_fail_fast(&redis, u, FAIL_FAST).await);
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
        redis
            .feed_cache
            .current_session(u)
            .await
            .expect("read the current session"),
        Some(after)
    );
    redis.probe.check().await.expect("healthy again");
    // Redis restarted empty, so anything of these found now was replayed by the client.
    let replayed = redis
        .history
        .served_since(u, chrono::DateTime::UNIX_EPOCH)
        .await
        .expect("read the history");
    for (id, video) in refused {
        assert_eq!(
            redis
                .feed_cache
                .session(u, id)
                .await
                .expect("read a session"),
            None,
            "a session store that failed while Redis was down is not replayed when it returns"
        );
        assert!(
            !replayed.contains(&video),
            "a failed record_served is not replayed"
        );
    }
    let video = VideoId(Uuid::new_v4());
    redis
        .history
        .record_watched(u, &[video], Utc::now())
        .await
        .expect("record a watch");
    let watched = redis
        .history
        .watched_since(u, Utc::now() - ChronoDuration::hours(1))
        .await
        .expect("read the watched history");
    assert_eq!(watched, vec![video]);
}

/// Every kind of call fails, each well under a second: data calls within [`FAIL_FAST`], the
/// health check within `health_limit`. Returns the refused session and video.
async fn assert_all_fail_fast(
    redis: &RedisAdapters,
    u: UserId,
    health_limit: Duration,
) -> (SessionId, VideoId) {
    let check = |what: &'static str, started: Instant, failed: bool, limit: Duration| {
        let took = started.elapsed();
        assert!(failed, "{what} fails while Redis is not answering");
        assert!(took < limit, "{what} failed fast: {took:?}");
    };
    let timed = |what, started, failed| check(what, started, failed, FAIL_FAST);
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
    let served = VideoId(Uuid::new_v4());
    let record = redis.history.record_served(u, &[served], Utc::now()).await;
    timed("record_served", t, record.is_err());
    let t = Instant::now();
    let since = Utc::now() - ChronoDuration::hours(1);
    timed(
        "served_since",
        t,
        redis.history.served_since(u, since).await.is_err(),
    );
    let t = Instant::now();
    check(
        "health check",
        t,
        redis.probe.check().await.is_err(),
        health_limit,
    );
    (refused.id, served)
}

/// A server that stops answering (SIGSTOP) without closing its connections: calls are bounded by
/// the command timeout, and the adapters work again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_costs_at_most_the_command_timeout() {
    let test = "a_hung_server_costs_at_most_the_command_timeout";
    let bin = match redis_server_bin() {
        Ok(bin) => bin,
        Err(why) => {
            skip_or_fail(test, &why);
            return;
        }
    };
    let _alone = SERIAL.lock().await;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("vrs-redis-hung-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the server directory");
    let outcome = tokio::time::timeout(TEST_BUDGET, hung(&bin, port, &dir)).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome.expect("the scenario finishes in time");
}

async fn signal(server: &Child, signal: &str) {
    let pid = server.id().expect("redis-server runs").to_string();
    let status = Command::new("kill")
        .args([signal, &pid])
        .status()
        .await
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

async fn hung(bin: &Path, port: u16, dir: &Path) {
    let server = start_server(bin, port, dir).await;
    let redis = connected(&format!("redis://127.0.0.1:{port}")).await;
    let u = UserId(Uuid::new_v4());
    redis
        .feed_cache
        .store_session(&session(u), Duration::from_secs(60))
        .await
        .expect("store a session");

    signal(&server, "-STOP").await;
    // The first call waits for its timeout; the calls right after it are not sent and fail at
    // once, so a request reading Redis step by step pays one timeout, not one per step.
    let call = Instant::now();
    let first = redis.feed_cache.session(u, SessionId(Uuid::new_v4())).await;
    assert!(matches!(first, Err(PortError::Timeout(_))), "{first:?}");
    assert!(
        call.elapsed() >= Duration::from_millis(40),
        "{:?}",
        call.elapsed()
    );
    let call = Instant::now();
    let next = redis.history.watched_since(u, Utc::now()).await;
    assert!(matches!(next, Err(PortError::Unavailable(_))), "{next:?}");
    assert!(
        call.elapsed() < Duration::from_millis(20),
        "{:?}",
        call.elapsed()
    );
    // Longer than the client's unresponsive-connection limit (2 s), so a reconnection happens too.
    let hung_since = Instant::now();
    while hung_since.elapsed() < Duration::from_millis(3_000) {
        // The probe waits longer than commands, on purpose.
        assert_all_fail_fast(&redis, u, MIN_PING_TIMEOUT + FAIL_FAST).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    signal(&server, "-CONT").await;
    let back = Instant::now();
    let after = session(u);
    while let Err(e) = redis
        .feed_cache
        .store_session(&after, Duration::from_secs(60))
        .await
    {
        assert!(back.elapsed() < RECOVER_WITHIN, "not recovered: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("answering again {:?} after SIGCONT", back.elapsed());
    assert_eq!(
        redis
            .feed_cache
            .session(u, after.id)
            .await
            .expect("read the session"),
        Some(after)
    );
}
