//! A process killed with SIGKILL right after `publish` returned Ok loses nothing: the next start
//! replays its spool into Kafka.
//!
//! The test re-runs its own binary as the process to kill (selected by an environment variable),
//! so the crash is a real one, with no destructor or flush running.

mod common;

use common::{PARTITIONS, config, event, eventually, ids, ids_of, read_topic_async, user};
use rdkafka::mocking::MockCluster;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use vrs_adapter_kafka::KafkaEventSink;
use vrs_application::ports::EventSink;

const CHILD_DIR: &str = "VRS_KAFKA_CRASH_CHILD_DIR";
const TEST: &str = "sigkill_right_after_publish_loses_nothing";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_publish_loses_nothing() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        return child(&dir).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let published = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest prints the test's name on the same line first.
            .find_map(|line| {
                line.split_once("published ")
                    .map(|(_, rest)| rest.to_owned())
            })
    });
    let published = tokio::time::timeout(Duration::from_secs(20), published).await;
    // Killed in every case, so a failing child never outlives the test.
    child.kill().expect("SIGKILL");
    child.wait().expect("reap child");
    let published = published
        .expect("child published in time")
        .expect("reader")
        .expect("child reported its events");
    let (user_id, event_ids) = published.split_once(' ').expect("user and ids");
    let expected: Vec<String> = event_ids.split(',').map(str::to_owned).collect();

    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("crash", PARTITIONS, 1).expect("topic");
    let brokers = cluster.bootstrap_servers();
    let sink = KafkaEventSink::start(config(&brokers, "crash", dir.path())).expect("sink");
    let emptied = eventually(Duration::from_secs(10), || sink.spooled() == 0).await;
    assert!(emptied, "spool still holds {} events", sink.spooled());
    let consumed =
        read_topic_async(&brokers, "crash", expected.len(), Duration::from_secs(10)).await;
    let user_id = vrs_domain::UserId(user_id.parse().expect("user id"));
    assert_eq!(ids_of(&consumed, user_id), expected);
}

/// The process to kill: publishes with Kafka unreachable, reports, then waits to be killed.
async fn child(dir: &str) {
    let mut config = config("127.0.0.1:9", "crash", dir.as_ref());
    config.delivery_timeout = Duration::from_millis(300);
    let sink = KafkaEventSink::start(config).expect("sink");
    let alice = user();
    let events: Vec<_> = (0..3).map(|_| event(alice)).collect();
    sink.publish(&events).await.expect("publish");
    println!("published {alice} {}", ids(&events).join(","));
    tokio::time::sleep(Duration::from_secs(60)).await;
}
