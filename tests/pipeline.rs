//! End to end through the event pipeline: the built binary with a real Kafka-protocol broker
//! (librdkafka's mock cluster, owned by this test process) and a real ClickHouse. Events accepted
//! by the API travel through Kafka and the consumer into ClickHouse, once each, and the feed
//! reflects them within seconds. A Debezium delete on `cdc.posts` takes the video out of cached
//! and new feed pages within seconds.

mod support;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Service, small_demo_env};

async fn page(svc: &Service, token: &str, query: &str) -> Value {
    reqwest::Client::new()
        .get(svc.url(&format!("/api/v1/reels{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET reels: {e}"))
        .json()
        .await
        .unwrap_or(Value::Null)
}

async fn post(svc: &Service, token: &str, body: Value) -> (StatusCode, Value) {
    let res = reqwest::Client::new()
        .post(svc.url("/api/v1/events"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST events: {e}"));
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

/// The service on a fresh ClickHouse database and its own mock Kafka cluster with every topic it
/// reads or writes; `None` (test skipped) without a ClickHouse server.
fn start_pipeline() -> Option<(MockCluster<'static, DefaultProducerContext>, Service)> {
    let url = support::servers::require(
        "a ClickHouse server (TEST_CLICKHOUSE_URL)",
        std::env::var("TEST_CLICKHOUSE_URL").ok(),
    )?;
    let cluster: MockCluster<'static, DefaultProducerContext> =
        MockCluster::new(3).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    for topic in [
        "engagement-events",
        "engagement-events.dlq",
        "cdc.posts",
        "cdc.posts.dlq",
    ] {
        cluster
            .create_topic(topic, 3, 1)
            .unwrap_or_else(|e| panic!("topic {topic}: {e}"));
    }

    let mut env = small_demo_env();
    env.push(("CLICKHOUSE_URL", url));
    env.push((
        "CLICKHOUSE_DATABASE",
        format!("vrs_pipeline_{}", support::servers::free_port()),
    ));
    env.push(("KAFKA_BROKERS", cluster.bootstrap_servers()));
    let svc = Service::start(&env);
    Some((cluster, svc))
}

/// Stops the service with SIGTERM and checks it exits cleanly.
fn stop(svc: Service) {
    let status = svc.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM exit: {status:?}"
    );
}

/// Ids of the videos of a page.
fn ids(page: &Value) -> Vec<String> {
    page["videos"]
        .as_array()
        .map(|videos| {
            videos
                .iter()
                .filter_map(|v| v["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the engagement consumer's group committed every message of the event topic.
fn engagement_backlog_drained(brokers: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "video-ranking-service")
        .create()
        .unwrap_or_else(|e| panic!("offset reader: {e}"));
    let timeout = Duration::from_secs(5);
    let mut partitions = TopicPartitionList::new();
    for p in 0..3 {
        partitions.add_partition("engagement-events", p);
    }
    let Ok(committed) = consumer.committed_offsets(partitions, timeout) else {
        return false;
    };
    committed.elements().iter().all(|e| {
        let high = consumer
            .fetch_watermarks(e.topic(), e.partition(), timeout)
            .map_or(-1, |(_, high)| high);
        match e.offset() {
            Offset::Offset(n) => n >= high,
            _ => high == 0,
        }
    })
}

/// Waits until the consumer stored the demo events the embedded mode seeds through Kafka at
/// startup (about 25k with the small demo: ~20 s on two cores), so the budget below measures
/// live events rather than that backlog.
async fn wait_for_startup_backlog(brokers: &str) {
    let started = Instant::now();
    loop {
        let b = brokers.to_owned();
        let drained = tokio::task::spawn_blocking(move || engagement_backlog_drained(&b))
            .await
            .unwrap_or_else(|e| panic!("offset reader task: {e}"));
        if drained {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the startup backlog was not stored within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn accepted_events_reach_clickhouse_through_kafka_once_and_the_feed_reflects_them() {
    let Some((cluster, svc)) = start_pipeline() else {
        return;
    };
    wait_for_startup_backlog(&cluster.bootstrap_servers()).await;
    let token = svc.token(&["--demo-user", "1"]);

    let first = page(&svc, &token, "?limit=5").await;
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    let before = page(&svc, &token, &format!("?limit=5&cursor={cursor}")).await;
    let video = before["videos"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let likes = before["videos"][0]["like_count"].as_u64().unwrap_or(0);

    // Three users like the video; one of them retries the same event (a duplicate).
    let repeated = uuid::Uuid::new_v4();
    let started = Instant::now();
    for n in 2..=4 {
        let other = svc.token(&["--demo-user", &n.to_string()]);
        let event = json!({"event_id": if n == 2 { repeated } else { uuid::Uuid::new_v4() },
                           "video_id": video, "type": "like"});
        let (status, body) = post(&svc, &other, json!({"events": [event.clone()]})).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::ACCEPTED,
                json!({"accepted": 1, "duplicates": 0})
            )
        );
        if n == 2 {
            let (status, body) = post(&svc, &other, json!({"events": [event]})).await;
            assert_eq!(
                (status, body),
                (
                    StatusCode::ACCEPTED,
                    json!({"accepted": 0, "duplicates": 1})
                )
            );
        }
    }

    // Through Kafka, the consumer and ClickHouse, then the snapshot refresh: within 10 s.
    loop {
        let now = page(&svc, &token, &format!("?limit=5&cursor={cursor}")).await;
        let count = now["videos"][0]["like_count"].as_u64().unwrap_or(0);
        if now["videos"][0]["id"] == json!(video) && count >= likes + 3 {
            assert_eq!(count, likes + 3, "each like counted once");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "events not reflected within 10 s ({likes} -> {count})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let health: Value = reqwest::get(svc.url("/api/v1/health"))
        .await
        .unwrap_or_else(|e| panic!("health: {e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    assert_eq!(
        health["checks"]["event_spool"]["status"],
        json!("ok"),
        "{health}"
    );
    stop(svc);
}

#[tokio::test]
async fn a_debezium_delete_takes_the_video_out_of_cached_and_new_pages() {
    let Some((cluster, svc)) = start_pipeline() else {
        return;
    };
    let token = svc.token(&["--demo-user", "5"]);
    let first = page(&svc, &token, "?limit=5").await;
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    let cursor_query = format!("?limit=5&cursor={cursor}");
    let before = page(&svc, &token, &cursor_query).await;
    let shown = &before["videos"][0];
    let video = shown["id"].as_str().unwrap_or_default().to_owned();
    assert!(!video.is_empty(), "no video on the cursor page: {before}");

    // What the posts service's Debezium connector emits for a row delete.
    let now = chrono::Utc::now().to_rfc3339();
    let row = json!({"id": video, "creator_id": shown["creator_id"], "title": shown["title"],
                     "description": "", "duration_seconds": shown["duration_seconds"],
                     "status": "published", "visibility": "public",
                     "media_key": format!("videos/{video}.mp4"),
                     "thumbnail_key": format!("thumbnails/{video}.jpg"), "hashtags": [],
                     "created_at": shown["published_at"], "published_at": shown["published_at"],
                     "updated_at": now, "deleted_at": null});
    let delete = json!({"payload": {"op": "d", "before": row, "after": null,
                                    "source": {"connector": "postgresql", "table": "videos"},
                                    "ts_ms": 0}});
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let started = Instant::now();
    producer
        .send(
            FutureRecord::to("cdc.posts")
                .key(&video)
                .payload(&delete.to_string()),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to cdc.posts: {e}"));

    // Through the CDC consumer, the catalog and the snapshot refresh: within 10 s.
    let fresh_user = svc.token(&["--demo-user", "7"]);
    loop {
        let cached = ids(&page(&svc, &token, &cursor_query).await);
        if !cached.is_empty() && !cached.contains(&video) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "deleted video {video} still on the cached cursor page after 10 s: {cached:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh = ids(&page(&svc, &fresh_user, "?limit=50").await);
    assert!(!fresh.is_empty(), "empty first page");
    assert!(
        !fresh.contains(&video),
        "deleted video {video} on a new first page: {fresh:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    stop(svc);
}
