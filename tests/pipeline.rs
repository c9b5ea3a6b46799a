//! End to end through the event pipeline: the built binary with a real Kafka-protocol broker
//! (librdkafka's mock cluster, owned by this test process) and a real ClickHouse. Events accepted
//! by the API travel through Kafka and the consumer into ClickHouse, once each, and the feed
//! reflects them within seconds.

mod support;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
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

#[tokio::test]
async fn accepted_events_reach_clickhouse_through_kafka_once_and_the_feed_reflects_them() {
    let url = support::servers::require(
        "a ClickHouse server (TEST_CLICKHOUSE_URL)",
        std::env::var("TEST_CLICKHOUSE_URL").ok(),
    );
    let Some(url) = url else { return };
    let cluster: MockCluster<'static, DefaultProducerContext> =
        MockCluster::new(3).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    for topic in ["engagement-events", "engagement-events.dlq"] {
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
    let status = svc.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM exit: {status:?}"
    );
}
