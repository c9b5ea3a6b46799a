//! Health, readiness, liveness and the Prometheus exposition.

mod common;

use axum::http::StatusCode;
use chrono::Duration;
use common::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;
use vrs_adapter_http::HttpConfig;
use vrs_application::ports::{MockFeedCache, MockHealthProbe, PortError};

/// Asserts the health body: status, version and every check's status and latency.
fn assert_health_body(body: &Value, status: &str) {
    assert_eq!(body["status"], json!(status), "{body}");
    assert_eq!(body["version"], json!("9.9.9-test"), "{body}");
    let checks = body["checks"].as_object().expect("checks");
    assert!(checks.contains_key("candidate_snapshot"), "{body}");
    for (name, check) in checks {
        let ok = check["status"] == json!("ok");
        assert!(ok || check["status"] == json!("error"), "{name}: {check}");
        assert!(
            check["latency_ms"].as_f64().is_some_and(|l| l >= 0.0),
            "{name}: {check}"
        );
        // An error message exactly when the check failed.
        assert_eq!(
            check.get("error").is_some_and(Value::is_string),
            !ok,
            "{name}: {check}"
        );
    }
}

fn admin() -> String {
    admin_token_for(Uuid::new_v4())
}

#[tokio::test]
async fn without_an_admin_token_health_shows_the_status_alone() {
    let mut probe = MockHealthProbe::new();
    probe.expect_name().return_const("redis");
    probe
        .expect_check()
        .returning(|| Err(PortError::Unavailable("redis.internal:6379 refused".into())));
    let app = spawn_app_with(Options {
        probes: vec![Arc::new(probe)],
        ..Options::default()
    })
    .await;
    for token in [
        None,
        Some(token_for(Uuid::new_v4())),
        Some("forged".to_owned()),
    ] {
        for path in ["/api/v1/health", "/api/v1/health/ready"] {
            let res = app.get(path, token.as_deref()).await;
            assert_eq!(res.status, StatusCode::OK, "{path}");
            assert_eq!(res.json(), json!({"status": "degraded"}), "{path}");
        }
    }
    let body = app.get("/api/v1/health", Some(&admin())).await.json();
    assert_eq!(body["checks"]["redis"]["status"], json!("error"), "{body}");
}

#[tokio::test]
async fn health_probes_run_at_most_once_per_cache_period() {
    let mut probe = MockHealthProbe::new();
    probe.expect_name().return_const("counted");
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    probe.expect_check().returning(move || {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    });
    let app = spawn_app_with(Options {
        probes: vec![Arc::new(probe)],
        health_cache: std::time::Duration::from_secs(60),
        ..Options::default()
    })
    .await;
    let requests = (0..50).map(|_| app.get("/api/v1/health", None));
    for res in futures::future::join_all(requests).await {
        assert_eq!(res.json(), json!({"status": "ok"}));
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_healthy_app_is_ok_ready_and_live_without_a_token() {
    let app = spawn_app().await;
    let health = app.get("/api/v1/health", Some(&admin())).await;
    assert_eq!(health.status, StatusCode::OK);
    let body = health.json();
    assert_health_body(&body, "ok");
    assert_eq!(body["checks"]["memory"]["status"], json!("ok"), "{body}");

    let ready = app.get("/api/v1/health/ready", Some(&admin())).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_health_body(&ready.json(), "ok");

    let live = app.get("/api/v1/health/live", None).await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.json(), json!({"status": "ok"}));
}

#[tokio::test]
async fn before_the_first_refresh_the_app_is_live_but_not_ready() {
    let app = spawn_app_with(Options {
        refresh: false,
        ..Options::default()
    })
    .await;
    let ready = app.get("/api/v1/health/ready", Some(&admin())).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    // By contract, this 503 carries the health body rather than the error shape.
    let body = ready.json();
    assert_health_body(&body, "degraded");
    assert_eq!(
        body["checks"]["candidate_snapshot"]["status"],
        json!("error")
    );

    let health = app.get("/api/v1/health", Some(&admin())).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_health_body(&health.json(), "degraded");
    assert_eq!(
        app.get("/api/v1/health/live", None).await.status,
        StatusCode::OK
    );

    app.refresh().await;
    assert_eq!(
        app.get("/api/v1/health/ready", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_failing_dependency_or_stale_snapshot_degrades_but_stays_ready() {
    let mut probe = MockHealthProbe::new();
    probe.expect_name().return_const("redis");
    probe
        .expect_check()
        .returning(|| Err(PortError::Unavailable("connection refused".into())));
    let app = spawn_app_with(Options {
        probes: vec![Arc::new(probe)],
        ..Options::default()
    })
    .await;
    let body = app.get("/api/v1/health", Some(&admin())).await.json();
    assert_health_body(&body, "degraded");
    assert_eq!(body["checks"]["redis"]["status"], json!("error"));
    assert!(
        body["checks"]["redis"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("connection refused"))
    );
    assert_eq!(
        app.get("/api/v1/health/ready", None).await.status,
        StatusCode::OK
    );

    let app = spawn_app().await;
    app.clock.advance(Duration::hours(1));
    let ready = app.get("/api/v1/health/ready", Some(&admin())).await;
    assert_eq!(ready.status, StatusCode::OK);
    let body = ready.json();
    assert_health_body(&body, "degraded");
    assert_eq!(
        body["checks"]["candidate_snapshot"]["status"],
        json!("error")
    );
}

/// The `route` label of every sample of `metric` in a Prometheus text exposition.
fn route_labels(text: &str, metric: &str) -> HashSet<String> {
    text.lines()
        .filter(|l| l.starts_with(metric))
        .filter_map(|l| {
            let rest = &l[l.find("route=\"")? + 7..];
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn metrics_expose_http_and_feed_series_labelled_by_route_template() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let first = app.page(&token, "limit=5").await;
    let cursor = first["next_cursor"].as_str().expect("cursor");
    app.page(&token, &format!("limit=5&cursor={cursor}")).await;
    app.page(&token, "limit=5").await; // a cache hit
    app.record(&token, vec![event(app.videos[0].id.0, "view")])
        .await;
    let stray = format!("/api/v1/stray-{}", Uuid::new_v4());
    assert_eq!(app.get(&stray, None).await.status, StatusCode::NOT_FOUND);

    let response = app.get("/metrics", None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        response.header("content-type")
    );
    let text = response.text();
    for name in [
        "http_requests_total",
        "http_request_duration_seconds",
        "feed_cache_hits_total",
        "feed_cache_misses_total",
        "feed_generation_total",
        "feed_generation_success_total",
        "feed_generation_duration_seconds",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && !l.starts_with('#')),
            "{name} has no sample:\n{text}"
        );
    }
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total")
            && l.contains("route=\"/api/v1/reels\"")
            && l.contains("status=\"200\"")
            && l.contains("method=\"GET\"")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total")
            && l.contains("route=\"/api/v1/events\"")
            && l.contains("status=\"202\"")),
        "{text}"
    );

    // Labels are the templates the router knows, never raw paths or query strings.
    let (_, doc) = vrs_adapter_http::router::routes();
    let mut allowed: HashSet<String> = doc.paths.paths.keys().cloned().collect();
    allowed.insert("unmatched".to_owned());
    for metric in ["http_requests_total", "http_request_duration_seconds"] {
        let labels = route_labels(&text, metric);
        assert!(labels.contains("/api/v1/reels"), "{metric}: {labels:?}");
        let unknown: Vec<&String> = labels.difference(&allowed).collect();
        assert!(
            unknown.is_empty(),
            "{metric} has raw route labels {unknown:?}"
        );
    }
    assert!(!text.contains(&stray), "a raw path became a label");
    assert!(!text.contains(cursor), "a cursor became a label");
}

#[tokio::test]
async fn panics_and_timeouts_are_counted_as_server_errors() {
    let mut cache = MockFeedCache::new();
    cache
        .expect_current_session()
        .returning(|_| panic!("feed cache exploded"));
    let panicking = spawn_app_with(Options {
        feed_cache: Some(Arc::new(cache)),
        ..Options::default()
    })
    .await;
    let hanging = spawn_app_with(Options {
        feed_cache: Some(Arc::new(HangingFeedCache)),
        http: HttpConfig {
            request_timeout: std::time::Duration::from_millis(100),
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    let token = token_for(Uuid::new_v4());
    assert_eq!(
        panicking.reels(&token, "").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        hanging.reels(&token, "").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // 5xx answers are what error-rate alerts watch: they must not escape the request counter.
    let text = panicking.get("/metrics", None).await.text();
    for status in ["500", "503"] {
        assert!(
            text.lines().any(|l| l.starts_with("http_requests_total")
                && l.contains("route=\"/api/v1/reels\"")
                && l.contains(&format!("status=\"{status}\""))),
            "no {status} counted:\n{text}"
        );
    }
}

#[tokio::test]
async fn made_up_methods_and_paths_add_no_series() {
    let app = spawn_app().await;
    let before = app.get("/metrics", None).await.text();
    let mut methods = Vec::new();
    for i in 0..1000 {
        let method = format!("X{}{i}", Uuid::new_v4().simple());
        let request = axum::http::Request::builder()
            .method(axum::http::Method::from_bytes(method.as_bytes()).expect("a token is a method"))
            .uri(format!("/api/v1/{}", Uuid::new_v4()))
            .body(axum::body::Body::empty())
            .expect("request");
        let response = app.send(request).await;
        assert!(
            response.status.is_client_error(),
            "{method}: {}",
            response.status
        );
        methods.push(method);
    }
    let after = app.get("/metrics", None).await.text();
    let grown = after.len().saturating_sub(before.len());
    assert!(
        grown < 16 * 1024,
        "1,000 made-up methods grew /metrics by {grown} bytes"
    );
    assert!(
        !methods.iter().any(|m| after.contains(m.as_str())),
        "a made-up method became a label"
    );
    let labels: HashSet<&str> = after
        .lines()
        .filter(|l| l.starts_with("http_requests_total"))
        .filter_map(|l| {
            let rest = &l[l.find("method=\"")? + 8..];
            Some(&rest[..rest.find('"')?])
        })
        .collect();
    assert!(labels.contains("other"), "{labels:?}");
    assert!(labels.len() <= 10, "{labels:?}");
}
