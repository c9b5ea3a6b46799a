//! Black-box tests of the binary on real PostgreSQL and Redis servers that the tests own, so they
//! can stop them mid-run: migrations, demo seeding, and the degraded modes.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::servers::{PostgresServer, RedisServer};
use support::{Service, run, small_demo_env};

async fn get(svc: &Service, token: &str, query: &str) -> (StatusCode, String, Value) {
    let res = reqwest::Client::new()
        .get(svc.url(&format!("/api/v1/reels{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET reels: {e}"));
    let status = res.status();
    let cache = res
        .headers()
        .get("x-feed-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, cache, res.json().await.unwrap_or(Value::Null))
}

async fn health(svc: &Service) -> Value {
    svc.health_report().await
}

/// Polls the health report until `check` holds, for at most `within`.
async fn wait_for_health(svc: &Service, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let report = health(svc).await;
        if check(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "health never reached the expected state: {report}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn migrate_applies_each_file_once_and_production_refuses_a_stale_schema() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let env = [("DATABASE_URL", pg.url())];

    // Production with an empty database: refuses to start and names the command to run.
    let prod = [
        ("DATABASE_URL", pg.url()),
        ("APP_ENV", "production".to_owned()),
        ("JWT_PUBLIC_KEY", "unused".to_owned()),
        ("JWT_ISSUER", "https://auth.nova.example".to_owned()),
        ("JWT_AUDIENCE", "video-ranking-service".to_owned()),
        (
            "CURSOR_SECRET",
            "0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("REDIS_URL", "redis://127.0.0.1:1".to_owned()),
        ("CLICKHOUSE_URL", "http://127.0.0.1:1".to_owned()),
        ("KAFKA_BROKERS", "127.0.0.1:1".to_owned()),
    ];
    for command in ["check-schema", "serve"] {
        let (ok, text) = run(&[command], &prod);
        assert!(!ok, "{command}: a stale schema is refused: {text}");
        assert!(
            text.contains("video-ranking-service migrate"),
            "{command}: {text}"
        );
    }

    // The migration Job's environment: production with nothing but DATABASE_URL.
    let job = [
        ("DATABASE_URL", pg.url()),
        ("APP_ENV", "production".to_owned()),
    ];
    let (ok, text) = run(&["migrate"], &job);
    assert!(ok, "{text}");
    assert!(text.contains("Running migrations..."), "{text}");
    assert!(
        text.contains("Migration 001_initial_schema.sql: OK"),
        "{text}"
    );
    assert!(
        text.contains("Migration 012_deep_learning_models.sql: OK"),
        "{text}"
    );
    assert!(text.contains("Migrations completed successfully"), "{text}");

    let (ok, text) = run(&["migrate"], &env);
    assert!(ok, "{text}");
    assert!(!text.contains(": OK"), "nothing applied twice: {text}");
    assert!(
        text.to_lowercase().contains("no pending migrations"),
        "{text}"
    );

    let (ok, text) = run(&["check-schema"], &prod);
    assert!(ok, "a current schema passes: {text}");
    // serve gets past the schema check (and stops later, on what this build lacks).
    let (_, text) = run(&["serve"], &prod);
    assert!(!text.contains("not current"), "{text}");
}

fn ids(page: &Value) -> Vec<String> {
    page["videos"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

fn cursor(page: &Value) -> String {
    page["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("a next cursor: {page}"))
        .to_owned()
}

async fn post_events(svc: &Service, token: &str, events: Value) -> (StatusCode, Value) {
    let res = reqwest::Client::new()
        .post(svc.url("/api/v1/events"))
        .bearer_auth(token)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST events: {e}"));
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

/// Redis killed in the middle of a session: the session continues without a repeat, watched
/// videos stay out, a first page neither fails nor repeats what this session showed, and
/// everything recovers by itself once Redis is back.
#[tokio::test]
async fn redis_down_mid_session_keeps_the_feed_rules_and_recovers_by_itself() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mut env = small_demo_env();
    env.push(("REDIS_URL", redis.url()));
    let svc = Service::start(&env);
    let token = svc.token(&["--demo-user", "1"]);

    let (status, cache, first) = get(&svc, &token, "?limit=10").await;
    assert_eq!(
        (status, cache.as_str()),
        (StatusCode::OK, "miss"),
        "{first}"
    );
    let (_, _, second) = get(
        &svc,
        &token,
        &format!("?limit=10&cursor={}", cursor(&first)),
    )
    .await;
    let mut served: Vec<String> = ids(&first);
    served.extend(ids(&second));
    // Watched before the outage, among the videos a later page would show.
    let (_, _, peek) = get(
        &svc,
        &token,
        &format!("?limit=10&cursor={}", cursor(&second)),
    )
    .await;
    let watched = ids(&peek)[3].clone();
    let (status, answer) = post_events(
        &svc,
        &token,
        json!([{"event_id": uuid::Uuid::new_v4(), "video_id": watched, "type": "watch", "completion": 0.9}]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    redis.stop();
    // The session continues from where it was, without a repeat or the watched video.
    let next = format!("?limit=10&cursor={}", cursor(&second));
    let (status, cache, third) = get(&svc, &token, &next).await;
    assert_eq!((status, cache.as_str()), (StatusCode::OK, "hit"), "{third}");
    let third_ids = ids(&third);
    assert_eq!(third_ids.len(), 10, "{third}");
    assert!(
        !third_ids.contains(&watched),
        "a watched video came back: {third}"
    );
    assert!(
        third_ids.iter().all(|id| !served.contains(id)),
        "a video of an earlier page came back: {third}"
    );
    let (_, _, again) = get(&svc, &token, &next).await;
    assert_eq!(
        ids(&again),
        third_ids,
        "the same cursor gives the same page"
    );
    served.extend(third_ids);
    let (status, _, fourth) = get(
        &svc,
        &token,
        &format!("?limit=10&cursor={}", cursor(&third)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{fourth}");
    assert!(
        ids(&fourth)
            .iter()
            .all(|id| !served.contains(id) && *id != watched),
        "{fourth}"
    );
    served.extend(ids(&fourth));

    // A first page: served, without what this session showed, and with a cursor that works.
    let (status, _, fresh) = get(&svc, &token, "?limit=10").await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    assert_eq!(ids(&fresh).len(), 10, "{fresh}");
    assert!(
        ids(&fresh)
            .iter()
            .all(|id| !served.contains(id) && *id != watched),
        "{fresh}"
    );
    let (status, _, onward) = get(
        &svc,
        &token,
        &format!("?limit=10&cursor={}", cursor(&fresh)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{onward}");
    assert!(
        ids(&onward)
            .iter()
            .all(|id| !ids(&fresh).contains(id) && *id != watched),
        "{onward}"
    );

    // Views and likes are still accepted; a watch, which every replica must know of before the
    // next page, is refused for the client to retry.
    let video = ids(&onward)[0].clone();
    let (status, answer) = post_events(
        &svc,
        &token,
        json!([
            {"event_id": uuid::Uuid::new_v4(), "video_id": video, "type": "view"},
            {"event_id": uuid::Uuid::new_v4(), "video_id": video, "type": "like"},
            {"event_id": uuid::Uuid::new_v4(), "video_id": video, "type": "like"},
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(
        answer["accepted"],
        json!(2),
        "one like per video, even without Redis: {answer}"
    );
    let (status, answer) = post_events(
        &svc,
        &token,
        json!([{"event_id": uuid::Uuid::new_v4(), "video_id": video, "type": "watch"}]),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");

    let report = wait_for_health(&svc, Duration::from_secs(10), |r| {
        r["status"] == json!("degraded")
    })
    .await;
    assert_eq!(
        report["checks"]["redis"]["status"],
        json!("error"),
        "{report}"
    );
    let metrics = reqwest::get(svc.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("feed_store_fallbacks_total") && !l.ends_with(" 0")),
        "fallbacks are counted"
    );

    redis.restart();
    wait_for_health(&svc, Duration::from_secs(20), |r| {
        r["status"] == json!("ok")
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = post_events(
            &svc,
            &token,
            json!([{"event_id": uuid::Uuid::new_v4(), "video_id": video, "type": "watch"}]),
        )
        .await;
        if status == StatusCode::ACCEPTED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watches never accepted again: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _, after) = get(
        &svc,
        &token,
        &format!("?limit=10&cursor={}", cursor(&onward)),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a cursor of the outage still continues: {after}"
    );
    assert!(!ids(&after).contains(&video), "{after}");
}

#[tokio::test]
async fn postgres_down_feeds_are_served_from_cache_and_snapshot_and_recover() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut env = small_demo_env();
    env.push(("DATABASE_URL", pg.url()));

    // seed-demo loads the same demo catalog into PostgreSQL, idempotently.
    let (ok, text) = run(&["seed-demo"], &env);
    assert!(ok, "{text}");
    let (ok, text) = run(&["seed-demo"], &env);
    assert!(ok, "seeding twice is fine: {text}");

    env.push(("REDIS_URL", redis.url()));
    let svc = Service::start(&env);
    let token = svc.token(&["--demo-user", "1"]);
    let (status, _, first) = get(&svc, &token, "?limit=10").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["videos"].as_array().map(Vec::len), Some(10));
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    wait_for_health(&svc, Duration::from_secs(10), |r| {
        r["status"] == json!("ok")
    })
    .await;

    pg.stop();
    let report = wait_for_health(&svc, Duration::from_secs(15), |r| {
        r["status"] == json!("degraded")
    })
    .await;
    assert_eq!(
        report["checks"]["postgres"]["status"],
        json!("error"),
        "{report}"
    );
    for query in [format!("?limit=10&cursor={cursor}"), "?limit=10".to_owned()] {
        let (status, _, page) = get(&svc, &token, &query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(page["videos"].as_array().map(Vec::len), Some(10), "{query}");
    }
    let other = svc.token(&["--demo-user", "2"]);
    let (status, _, page) = get(&svc, &other, "?limit=10").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a user without a cached session: {page}"
    );

    pg.restart();
    wait_for_health(&svc, Duration::from_secs(30), |r| {
        r["status"] == json!("ok")
    })
    .await;
}

#[tokio::test]
async fn events_reach_clickhouse_and_the_feed_reflects_them() {
    let url = support::servers::require(
        "a ClickHouse server (TEST_CLICKHOUSE_URL)",
        std::env::var("TEST_CLICKHOUSE_URL").ok(),
    );
    let Some(url) = url else { return };
    let mut env = small_demo_env();
    env.push(("CLICKHOUSE_URL", url));
    // A database of this test's own, created by the service's schema initialisation.
    env.push((
        "CLICKHOUSE_DATABASE",
        format!("vrs_blackbox_{}", support::servers::free_port()),
    ));
    let svc = Service::start(&env);
    let report = wait_for_health(&svc, Duration::from_secs(10), |r| {
        r["status"] == json!("ok")
    })
    .await;
    assert_eq!(
        report["checks"]["clickhouse"]["status"],
        json!("ok"),
        "{report}"
    );

    let token = svc.token(&["--demo-user", "1"]);
    let (status, _, first) = get(&svc, &token, "?limit=5").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    let (_, _, page) = get(&svc, &token, &format!("?limit=5&cursor={cursor}")).await;
    let video = page["videos"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let likes = page["videos"][0]["like_count"].as_u64().unwrap_or(0);

    let event_id = uuid::Uuid::new_v4();
    for n in 2..=4 {
        let other = svc.token(&["--demo-user", &n.to_string()]);
        let body = json!({"events": [{"event_id": uuid::Uuid::new_v4(), "video_id": video, "type": "like"}]});
        let res = reqwest::Client::new()
            .post(svc.url("/api/v1/events"))
            .bearer_auth(&other)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST events: {e}"));
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    // A retried event is acknowledged as a duplicate and counted once.
    for expected in [
        json!({"accepted": 1, "duplicates": 0, "repeated_reactions": []}),
        json!({"accepted": 0, "duplicates": 1, "repeated_reactions": []}),
    ] {
        let body = json!({"events": [{"event_id": event_id, "video_id": video, "type": "like"}]});
        let res = reqwest::Client::new()
            .post(svc.url("/api/v1/events"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST events: {e}"));
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        assert_eq!(res.json::<Value>().await.unwrap_or(Value::Null), expected);
    }

    // Within the snapshot refresh, the same page shows the four new likes (not five).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, _, page) = get(&svc, &token, &format!("?limit=5&cursor={cursor}")).await;
        let now = page["videos"][0]["like_count"].as_u64().unwrap_or(0);
        if page["videos"][0]["id"] == json!(video) && now >= likes + 4 {
            assert_eq!(now, likes + 4, "each like counted once");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "likes never reached the feed ({likes} -> {now})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Two replicas on one PostgreSQL and Redis: an experiment created and started on either splits
/// users the same way on both (the variant the domain's hash gives), every page of a session is
/// served by its variant whichever replica serves it, and stopping sends new sessions back.
#[tokio::test]
async fn two_replicas_assign_one_variant_per_user_and_session() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut env = small_demo_env();
    env.push(("DATABASE_URL", pg.url()));
    let (ok, text) = run(&["seed-demo"], &env);
    assert!(ok, "{text}");
    env.push(("REDIS_URL", redis.url()));
    let a = Service::start(&env);
    // The same keys and cursor secret (from the data directory) on both replicas.
    env.push(("DATA_DIR", a.data_dir.display().to_string()));
    let b = Service::start(&env);
    let admin = a.token(&["--demo-user", "1", "--admin"]);
    let client = reqwest::Client::new();
    let post = |svc: &Service, path: &str, body: Value| {
        client
            .post(svc.url(path))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let created = post(
        &a,
        "/api/v1/admin/experiments",
        json!({"name": "replicas", "variants": [
            {"name": "control", "share": 0.5},
            {"name": "fresh", "share": 0.5, "weights": {"freshness": 0.6, "completion": 0.1,
                "engagement": 0.1, "affinity": 0.1, "model": 0.1}}]}),
    )
    .await
    .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let experiment: Value = created.json().await.expect("json");
    let salt = experiment["salt"].as_str().expect("salt").to_owned();
    let started = post(&b, "/api/v1/admin/experiments/replicas/start", json!({}))
        .await
        .expect("start");
    assert_eq!(
        started.status(),
        StatusCode::OK,
        "started on the other replica"
    );
    // Both replicas refresh every second.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut seen = std::collections::HashSet::new();
    for i in 0..24 {
        let user = uuid::Uuid::new_v4();
        let token = a.token(&["--user", &user.to_string()]);
        let expected = match vrs_domain::experiment::assign(
            &salt,
            vrs_domain::UserId(user),
            &[5_000, 5_000],
        ) {
            Some(0) => "control",
            _ => "fresh",
        };
        // First page on one replica, the next on the other.
        let (first_svc, next_svc) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (status, _, first) = get(first_svc, &token, "?limit=5&explain=true").await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(
            first["experiments"][0]["variant"],
            json!(expected),
            "{first}"
        );
        let cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
        let (status, _, next) = get(
            next_svc,
            &token,
            &format!("?limit=5&explain=true&cursor={cursor}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{next}");
        assert_eq!(
            next["experiments"], first["experiments"],
            "a session's pages share one variant across replicas"
        );
        seen.insert(expected);
    }
    assert_eq!(seen.len(), 2, "both variants got users");

    let stopped = post(&a, "/api/v1/admin/experiments/replicas/stop", json!({}))
        .await
        .expect("stop");
    assert_eq!(stopped.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for svc in [&a, &b] {
        let token = a.token(&["--user", &uuid::Uuid::new_v4().to_string()]);
        let (_, _, page) = get(svc, &token, "?limit=5&explain=true").await;
        assert_eq!(page["experiments"], json!([]), "the default again: {page}");
    }
}
