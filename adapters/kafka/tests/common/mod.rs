//! Test plumbing: events, a sink configuration for a mock cluster, and a consumer reading a topic.

#![allow(dead_code)]

use chrono::{SubsecRound, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;
use vrs_adapter_kafka::KafkaConfig;
use vrs_domain::{CreatorId, EngagementEvent, EventType, UserId, VideoId};

/// Partitions of the test topics; more than one so ordering is checked per key.
pub const PARTITIONS: i32 = 3;

/// A fresh `like` event of `user`.
pub fn event(user: UserId) -> EngagementEvent {
    EngagementEvent {
        event_id: Uuid::new_v4(),
        user_id: user,
        video_id: VideoId(Uuid::new_v4()),
        creator_id: CreatorId(Uuid::new_v4()),
        event_type: EventType::Like,
        watch_ms: None,
        completion: None,
        occurred_at: Utc::now().trunc_subsecs(3),
    }
}

/// A fresh user.
pub fn user() -> UserId {
    UserId(Uuid::new_v4())
}

/// A sink configuration with the default delivery timeout (a fresh idempotent producer needs up
/// to ~1 s for its first acknowledgement) and a quick replayer.
pub fn config(brokers: &str, topic: &str, spool_dir: &Path) -> KafkaConfig {
    let mut config = KafkaConfig::new(brokers, spool_dir);
    config.topic = topic.to_owned();
    config.delivery_timeout = Duration::from_millis(2000);
    config.replay_interval = Duration::from_millis(100);
    config
}

/// One consumed message: key and JSON value.
#[derive(Debug)]
pub struct Consumed {
    pub key: String,
    pub value: serde_json::Value,
}

/// Reads `topic` from the beginning until `n` distinct events arrived or `timeout` passed
/// (blocking). Delivery is at least once, so an event may come more than once.
pub fn read_topic(brokers: &str, topic: &str, n: usize, timeout: Duration) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut partitions = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        partitions
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&partitions).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out: Vec<Consumed> = Vec::new();
    let mut distinct = std::collections::HashSet::new();
    while distinct.len() < n && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("message");
            let value: serde_json::Value =
                serde_json::from_slice(message.payload().expect("payload")).expect("json value");
            distinct.insert(value["event_id"].to_string());
            out.push(Consumed {
                key: String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key"),
                value,
            });
        }
    }
    out
}

/// Reads `topic` on a blocking thread.
pub async fn read_topic_async(
    brokers: &str,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Consumed> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic(&brokers, &topic, n, timeout))
        .await
        .expect("reader task")
}

/// Event ids of `user`'s messages, in topic order.
pub fn ids_of(consumed: &[Consumed], user: UserId) -> Vec<String> {
    consumed
        .iter()
        .filter(|c| c.key == user.to_string())
        .map(|c| c.value["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

/// Event ids of `events`, in order.
pub fn ids(events: &[EngagementEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_id.to_string()).collect()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}
