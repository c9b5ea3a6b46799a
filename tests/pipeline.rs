//! End to end on the full stack: the built binary with real PostgreSQL (catalog, follows, ranking
//! configuration), Redis (feed sessions, history, event ledger), ClickHouse (signals) and a
//! Kafka-protocol broker (librdkafka's mock cluster, owned by this test process). Events accepted
//! by the API travel through Kafka and the consumer into ClickHouse, once each, and the feed
//! reflects them within seconds. A Debezium delete on `cdc.posts` takes the video out of cached
//! and new feed pages within seconds. After that traffic, `/metrics` exports every metric that
//! docs/metrics.md lists.

mod support;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::servers::{PostgresServer, RedisServer};
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

/// The service and the servers it runs on; each server is stopped when this is dropped.
struct Stack {
    cluster: MockCluster<'static, DefaultProducerContext>,
    svc: Service,
    /// The service's environment, for running other commands against the same stores.
    env: Vec<(&'static str, String)>,
    _postgres: PostgresServer,
    _redis: RedisServer,
}

/// Runs a command of the binary to completion; panics with its output when it fails, else
/// returns it.
fn run(args: &[&str], env: &[(&'static str, String)]) -> String {
    let (ok, text) = support::run(args, env);
    assert!(ok, "{args:?}: {text}");
    text
}

/// The service on PostgreSQL and Redis servers of its own, a fresh ClickHouse database and its own
/// mock Kafka cluster with every topic it reads or writes, after `seed-demo` loaded the demo;
/// `None` (test skipped) without a ClickHouse server.
fn start_pipeline() -> Option<Stack> {
    let url = support::servers::require(
        "a ClickHouse server (TEST_CLICKHOUSE_URL)",
        std::env::var("TEST_CLICKHOUSE_URL").ok(),
    )?;
    let postgres = PostgresServer::start()?;
    let redis = RedisServer::start()?;
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
    env.push(("DATABASE_URL", postgres.url()));
    env.push(("REDIS_URL", redis.url()));
    env.push(("CLICKHOUSE_URL", url));
    env.push((
        "CLICKHOUSE_DATABASE",
        format!("vrs_pipeline_{}", support::servers::free_port()),
    ));
    env.push(("KAFKA_BROKERS", cluster.bootstrap_servers()));
    // The demo's history goes straight into ClickHouse, not through Kafka.
    for command in ["migrate", "clickhouse-init", "seed-demo"] {
        run(&[command], &env);
    }
    let svc = Service::start(&env);
    let env = env.clone();
    Some(Stack {
        cluster,
        svc,
        env,
        _postgres: postgres,
        _redis: redis,
    })
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

#[tokio::test]
async fn accepted_events_reach_clickhouse_through_kafka_once_and_the_feed_reflects_them() {
    let Some(stack) = start_pipeline() else {
        return;
    };
    let svc = &stack.svc;
    let token = svc.token(&["--demo-user", "1"]);
    let admin = svc.token(&["--demo-user", "1", "--admin"]);
    let client = reqwest::Client::new();
    // An experiment covering everyone: its exposures travel the same topic as the events.
    let created = client
        .post(svc.url("/api/v1/admin/experiments"))
        .bearer_auth(&admin)
        .json(&json!({"name": "pipeline", "variants": [
            {"name": "control", "share": 0.5}, {"name": "treatment", "share": 0.5,
             "weights": {"freshness": 0.3, "completion": 0.3, "engagement": 0.2,
                         "affinity": 0.1, "model": 0.1}}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create experiment: {e}"));
    assert_eq!(created.status(), StatusCode::CREATED);
    let start = client
        .post(svc.url("/api/v1/admin/experiments/pipeline/start"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap_or_else(|e| panic!("start experiment: {e}"));
    assert_eq!(start.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let first = page(svc, &token, "?limit=5").await;
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    let before = page(svc, &token, &format!("?limit=5&cursor={cursor}")).await;
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
        let (status, body) = post(svc, &other, json!({"events": [event.clone()]})).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::ACCEPTED,
                json!({"accepted": 1, "duplicates": 0, "repeated_reactions": []})
            )
        );
        if n == 2 {
            let (status, body) = post(svc, &other, json!({"events": [event]})).await;
            assert_eq!(
                (status, body),
                (
                    StatusCode::ACCEPTED,
                    json!({"accepted": 0, "duplicates": 1, "repeated_reactions": []})
                )
            );
        }
    }

    // Through Kafka, the consumer and ClickHouse, then the snapshot refresh: within 10 s.
    loop {
        let now = page(svc, &token, &format!("?limit=5&cursor={cursor}")).await;
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

    // The exposed user completes the first video of the cursor page: through Kafka and
    // ClickHouse, the experiment's results count ten exposures and that completion.
    let (status, _) = post(
        svc,
        &token,
        json!({"events": [{"event_id": uuid::Uuid::new_v4(), "video_id": video,
                           "type": "complete", "watch_ms": 15000}]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let results = loop {
        let results: Value = client
            .get(svc.url("/api/v1/admin/experiments/pipeline/results"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap_or_else(|e| panic!("results: {e}"))
            .json()
            .await
            .unwrap_or(Value::Null);
        let variants = results["variants"].as_array().cloned().unwrap_or_default();
        let exposures: u64 = variants
            .iter()
            .filter_map(|v| v["exposures"].as_u64())
            .sum();
        let completed = variants.iter().any(|v| {
            v["metrics"][2]["metric"] == json!("completion_rate")
                && v["metrics"][2]["value"].as_f64().is_some_and(|x| x > 0.0)
        });
        if exposures >= 10 && completed {
            break results;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "exposures or their outcome not in the results within 20 s: {results}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let users: u64 = results["variants"]
        .as_array()
        .map(|v| v.iter().filter_map(|v| v["users"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(users, 1, "one exposed user: {results}");

    let health = svc.health_report().await;
    assert_eq!(
        health["checks"]["event_spool"]["status"],
        json!("ok"),
        "{health}"
    );
    assert_eq!(health["status"], json!("ok"), "{health}");
    every_documented_metric_is_exported(svc).await;
    stop(stack.svc);
}

#[tokio::test]
async fn a_debezium_delete_takes_the_video_out_of_cached_and_new_pages() {
    let Some(stack) = start_pipeline() else {
        return;
    };
    let (svc, cluster) = (&stack.svc, &stack.cluster);
    let token = svc.token(&["--demo-user", "5"]);
    let first = page(svc, &token, "?limit=5").await;
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    let cursor_query = format!("?limit=5&cursor={cursor}");
    let before = page(svc, &token, &cursor_query).await;
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
        let cached = ids(&page(svc, &token, &cursor_query).await);
        if !cached.is_empty() && !cached.contains(&video) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "deleted video {video} still on the cached cursor page after 10 s: {cached:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh = ids(&page(svc, &fresh_user, "?limit=50").await);
    assert!(!fresh.is_empty(), "empty first page");
    assert!(
        !fresh.contains(&video),
        "deleted video {video} on a new first page: {fresh:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    stop(stack.svc);
}

/// The metric names of the table in docs/metrics.md (its first column).
fn documented_metrics() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        // The spans table follows the metrics table.
        .take_while(|line| !line.starts_with("## Spans"))
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// Scrapes `/metrics` after the traffic above and checks that every documented metric is
/// exported (and nothing undocumented), and that routes are labelled by template.
async fn every_documented_metric_is_exported(svc: &Service) {
    // The pool gauges are sampled every 5 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let text = reqwest::get(svc.url("/metrics"))
        .await
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
        .text()
        .await
        .unwrap_or_default();
    let exported: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
        })
        .collect();
    // Every store answered: nothing fell back to a replica's own tier or ledger.
    for line in text.lines().filter(|l| {
        l.starts_with("event_ledger_errors_total") || l.starts_with("feed_store_fallbacks_total")
    }) {
        assert!(line.ends_with(" 0"), "a healthy stack fell back: {line}");
    }
    let documented = documented_metrics();
    assert!(
        documented.len() >= 30,
        "docs/metrics.md table: {documented:?}"
    );
    // Exported only where the process runs under a cgroup memory limit (a container).
    let limited = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .is_some_and(|v| v.trim() != "max");
    let missing: Vec<&String> = documented
        .iter()
        .filter(|name| !exported.contains(name.as_str()))
        .filter(|name| limited || name.as_str() != "process_memory_limit_bytes")
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not exported: {missing:?}"
    );
    let undocumented: Vec<&&str> = exported
        .iter()
        .filter(|name| !documented.iter().any(|d| d == *name))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but not documented: {undocumented:?}"
    );
    assert!(
        text.contains(r#"route="/api/v1/reels""#),
        "routes are labelled by template"
    );
    for stage in ["cache_lookup", "candidates", "scoring", "cache_write"] {
        assert!(
            text.contains(&format!(r#"stage="{stage}""#)),
            "feed stage {stage} is timed"
        );
    }
}

#[tokio::test]
async fn the_warmup_command_fills_the_shared_cache_for_the_most_active_users() {
    let Some(stack) = start_pipeline() else {
        return;
    };
    let out = run(
        &["warmup", "--users", "20", "--batch-size", "5"],
        &stack.env,
    );
    assert!(
        out.contains("Warmed 20 users (0 failed)"),
        "warmup output: {out}"
    );
    // The Redis of this test held no session before: dropping every current session now counts
    // exactly the ones the command stored, through the service's own admin route.
    let admin = stack.svc.token(&["--demo-user", "1", "--admin"]);
    let res = reqwest::Client::new()
        .post(stack.svc.url("/api/v1/admin/cache/invalidate"))
        .bearer_auth(&admin)
        .json(&json!({"all": true}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST invalidate: {e}"));
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap_or(Value::Null),
        json!({"invalidated": 20})
    );
    stop(stack.svc);
}

#[tokio::test]
async fn the_worker_serves_metrics_and_health_and_stops_cleanly() {
    let cluster: MockCluster<'static, DefaultProducerContext> =
        MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
    let mut env = small_demo_env();
    env.push(("KAFKA_BROKERS", cluster.bootstrap_servers()));
    let worker = Service::start_command("worker", &env);
    let live = reqwest::get(worker.url("/api/v1/health/live"))
        .await
        .unwrap_or_else(|e| panic!("GET live: {e}"));
    assert_eq!(live.status(), StatusCode::OK);
    let metrics = reqwest::get(worker.url("/metrics"))
        .await
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
        .text()
        .await
        .unwrap_or_default();
    for name in [
        "kafka_consumer_errors_total",
        "engagement_events_recorded_total",
        "cdc_events_applied_total",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let reels = reqwest::get(worker.url("/api/v1/reels"))
        .await
        .unwrap_or_else(|e| panic!("GET reels: {e}"));
    assert_eq!(
        reels.status(),
        StatusCode::NOT_FOUND,
        "the worker serves no feed"
    );
    assert!(reels.json::<Value>().await.is_ok(), "a JSON error");
    stop(worker);
}

#[tokio::test]
async fn weights_put_on_one_replica_are_used_by_every_replica_within_30_s() {
    let Some(stack) = start_pipeline() else {
        return;
    };
    // A second replica on the same stores (its own port and development key).
    let other = Service::start(&stack.env);
    let admin = stack.svc.token(&["--demo-user", "1", "--admin"]);
    let weights = json!({"freshness": 0.5, "completion": 0.125, "engagement": 0.125,
                         "affinity": 0.25, "model": 0.0});
    let started = Instant::now();
    let res = reqwest::Client::new()
        .put(stack.svc.url("/api/v1/admin/ranking/weights"))
        .bearer_auth(&admin)
        .json(&weights)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT weights: {e}"));
    assert_eq!(res.status(), StatusCode::OK);
    let set: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(set["weights"], weights, "{set}");

    // New first pages on the other replica are ranked with the new weights.
    let mut n = 10;
    loop {
        n += 1;
        let token = other.token(&["--demo-user", &n.to_string()]);
        let page = page(&other, &token, "?limit=1&explain=true").await;
        if page["videos"][0]["signals"]["weights"]["freshness"] == json!(0.5) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the other replica still ranks with the old weights: {page}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let listed: Value = reqwest::Client::new()
        .get(other.url("/api/v1/admin/ranking/weights"))
        .bearer_auth(other.token(&["--demo-user", "1", "--admin"]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET weights: {e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    assert_eq!(listed["active"]["version"], set["version"], "{listed}");
    stop(other);
    stop(stack.svc);
}
