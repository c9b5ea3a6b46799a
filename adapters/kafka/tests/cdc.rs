//! The CDC consumer against an in-process mock Kafka cluster, applying Debezium change events to the
//! memory catalog: a create then a delete leave the video deleted and visible to the change
//! stream; changes apply by the source's position whatever order they arrive in; tombstones and
//! truncates delete; an unreadable message is dead-lettered without holding back the ones after it.

use metrics_exporter_prometheus::PrometheusBuilder;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;
use vrs_adapter_kafka::{
    CdcConsumer, CdcConsumerConfig, DLQ_ERROR_TYPE_HEADER, DLQ_REASON_HEADER, DLQ_TOPIC_HEADER,
};
use vrs_adapter_memory::MemoryCatalog;
use vrs_application::ports::{CatalogWatermark, VideoCatalog};
use vrs_domain::{Video, VideoId, VideoStatus};

const TOPIC: &str = "cdc.posts";
const DLQ: &str = "cdc.posts.dlq";
/// Bound on every wait; a consumer group join on the mock cluster takes about 3 s.
const WAIT: Duration = Duration::from_secs(15);

fn row(id: Uuid, title: &str, updated_at: &str) -> Value {
    json!({"id": id.to_string(), "creator_id": Uuid::new_v4().to_string(), "title": title,
           "description": "", "duration_seconds": 20, "status": "published",
           "visibility": "public", "media_key": "m.mp4", "thumbnail_key": "t.jpg",
           "hashtags": [], "created_at": updated_at, "published_at": updated_at,
           "updated_at": updated_at, "deleted_at": null})
}

async fn produce(producer: &FutureProducer, key: Uuid, value: &[u8]) {
    producer
        .send(
            FutureRecord::to(TOPIC).key(&key.to_string()).payload(value),
            Duration::from_secs(5),
        )
        .await
        .expect("produce");
}

/// Polls the catalog until `id` satisfies `cond`.
async fn wait_for(catalog: &MemoryCatalog, id: Uuid, cond: impl Fn(&Video) -> bool) -> Video {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = catalog
            .videos_by_ids(&[VideoId(id)])
            .await
            .expect("videos_by_ids");
        if let Some(v) = found.into_iter().find(|v| cond(v)) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "video {id} never matched"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the first dead letter with its headers (blocking).
fn read_dlq(brokers: &str) -> Option<(Vec<u8>, HashMap<String, String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "dlq-reader")
        .create()
        .expect("dlq reader");
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(DLQ, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&partitions).expect("assign");
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("dead letter");
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                            (h.key.to_owned(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            return Some((message.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_then_delete_ends_deleted_and_an_unreadable_message_does_not_block() {
    // The only test of this binary, so it may own the process-wide recorder.
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .expect("metrics recorder");
    let cluster: MockCluster<'static, DefaultProducerContext> =
        MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 1, 1).expect("topic");
    cluster.create_topic(DLQ, 1, 1).expect("dlq topic");
    let brokers = cluster.bootstrap_servers();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");

    let id = Uuid::new_v4();
    let old = "2020-01-01T00:00:00Z";
    let created = json!({"payload": {"op": "c", "before": null, "after": row(id, "Cat", old),
                                      "source": {"table": "videos"}, "ts_ms": 1}});
    produce(&producer, id, created.to_string().as_bytes()).await;

    let catalog = Arc::new(MemoryCatalog::default());
    let mut config = CdcConsumerConfig::new(&brokers, "ranker-cdc");
    config.batch_max_wait = Duration::from_millis(100);
    config.session_timeout = Duration::from_secs(6);
    let consumer = CdcConsumer::new(config, catalog.clone()).expect("consumer");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));

    let video = wait_for(&catalog, id, |v| v.status == VideoStatus::Published).await;
    assert_eq!(video.title, "Cat");
    // Restamped with the consumer's clock, not the row's old `updated_at`.
    assert!(video.updated_at > chrono::Utc::now() - chrono::Duration::minutes(1));
    let watermark = CatalogWatermark::of(&video);

    // Garbage, the delete (key only, as the default replica identity sends it), its tombstone,
    // and a later create of another video: all behind the garbage on the same partition.
    produce(&producer, id, b"{not json").await;
    let deleted = json!({"op": "d", "before": {"id": id.to_string()}, "after": null});
    produce(&producer, id, deleted.to_string().as_bytes()).await;
    producer
        .send(
            FutureRecord::<str, [u8]>::to(TOPIC).key(&id.to_string()),
            Duration::from_secs(5),
        )
        .await
        .expect("tombstone");
    let other = Uuid::new_v4();
    let mut flat = row(other, "Dog", old);
    flat["__op"] = json!("c");
    flat["__deleted"] = json!("false");
    produce(&producer, other, flat.to_string().as_bytes()).await;

    let gone = wait_for(&catalog, id, |v| v.status == VideoStatus::Deleted).await;
    assert!(gone.deleted_at.is_some());
    assert!(!gone.is_servable());
    wait_for(&catalog, other, |v| v.title == "Dog").await;
    // A hard delete that arrives only as a tombstone (record flattening drops the delete event),
    // keyed the way Debezium's JSON converter writes keys.
    let key =
        json!({"schema": {"type": "struct"}, "payload": {"id": other.to_string()}}).to_string();
    producer
        .send(
            FutureRecord::<str, [u8]>::to(TOPIC).key(&key),
            Duration::from_secs(5),
        )
        .await
        .expect("tombstone");
    let dog = wait_for(&catalog, other, |v| v.status == VideoStatus::Deleted).await;
    assert!(!dog.is_servable());
    let changes = catalog
        .changed_since(Some(watermark), 100)
        .await
        .expect("changed_since");
    let deleted_change = changes.iter().find(|v| v.id == VideoId(id));
    assert_eq!(
        deleted_change.map(|v| v.status),
        Some(VideoStatus::Deleted),
        "{changes:?}"
    );

    // Changes applied by the source's position, whatever order they arrive in: a redelivered older
    // update, a late create, and an update older than a delete change nothing; a visibility change
    // withdraws the video; a truncate deletes what is older than it, not what came after.
    let base: i64 = 1_800_000_000_000;
    let at = |ms: i64| json!({"table": "videos", "ts_ms": base + ms, "lsn": ms});
    let third = Uuid::new_v4();
    let when = "2027-01-15T08:00:00Z";
    let mut private = row(third, "v4", when);
    private["visibility"] = json!("private");
    for (op, after, ms) in [
        ("u", row(third, "v3", when), 3_000),
        ("u", row(third, "v2", when), 2_000),
        ("u", private, 4_000),
        ("c", row(third, "v1", when), 1_000),
    ] {
        let change = json!({"op": op, "before": null, "after": after, "source": at(ms)});
        produce(&producer, third, change.to_string().as_bytes()).await;
    }
    let withdrawn = wait_for(&catalog, third, |v| v.title == "v4").await;
    assert!(!withdrawn.is_servable(), "private: {withdrawn:?}");
    let delete = json!({"op": "d", "before": {"id": third.to_string()}, "after": null,
                        "source": at(5_000)});
    produce(&producer, third, delete.to_string().as_bytes()).await;
    let late = json!({"op": "u", "before": null, "after": row(third, "v4.5", when),
                      "source": at(4_500)});
    produce(&producer, third, late.to_string().as_bytes()).await;
    let kept = Uuid::new_v4();
    let created = json!({"op": "c", "after": row(kept, "older than the truncate", when),
                         "source": at(5_500)});
    produce(&producer, kept, created.to_string().as_bytes()).await;
    let truncate = json!({"op": "t", "source": at(6_000)});
    produce(&producer, kept, truncate.to_string().as_bytes()).await;
    let survivor = Uuid::new_v4();
    let created = json!({"op": "c", "after": row(survivor, "after the truncate", when),
                         "source": at(7_000)});
    produce(&producer, survivor, created.to_string().as_bytes()).await;
    wait_for(&catalog, survivor, |v| v.is_servable()).await;
    let third_now = wait_for(&catalog, third, |_| true).await;
    assert_eq!(third_now.status, VideoStatus::Deleted, "{third_now:?}");
    assert_eq!(third_now.title, "v4", "the late update did not apply");
    let kept_now = wait_for(&catalog, kept, |_| true).await;
    assert_eq!(kept_now.status, VideoStatus::Deleted, "{kept_now:?}");

    let b = brokers.clone();
    let dead = tokio::task::spawn_blocking(move || read_dlq(&b))
        .await
        .expect("dlq reader task")
        .expect("a dead letter");
    assert_eq!(dead.0, b"{not json");
    assert_eq!(dead.1[DLQ_ERROR_TYPE_HEADER], "malformed");
    assert!(dead.1[DLQ_REASON_HEADER].contains("malformed"));
    assert_eq!(dead.1[DLQ_TOPIC_HEADER], TOPIC);

    let rendered = metrics.render();
    for series in [
        r#"cdc_events_applied_total{op="c"} 5"#,
        r#"cdc_events_applied_total{op="t"} 1"#,
        // v2, v1 and v4.5 were older than what the catalog held.
        "cdc_events_stale_total 3",
        "cdc_truncated_videos_total 1",
        // The delete, its tombstone, and the tombstone-only hard delete.
        r#"cdc_events_applied_total{op="d"} 4"#,
        r#"kafka_consumer_errors_total{error_type="malformed"} 1"#,
    ] {
        assert!(
            rendered.lines().any(|l| l == series),
            "{series}\n{rendered}"
        );
    }
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("cdc_source_lag_seconds ")),
        "{rendered}"
    );

    let _ = stop.send(());
    tokio::time::timeout(WAIT, task)
        .await
        .expect("consumer stops in time")
        .expect("consumer task");
}
