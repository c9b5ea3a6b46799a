//! Every failure is a JSON error body with a snake_case code and the right status; a panic or a
//! hung dependency never reaches the client as plain text.

mod common;

use axum::http::{Method, StatusCode, header};
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vrs_adapter_http::HttpConfig;
use vrs_application::ports::MockFeedCache;

#[tokio::test]
async fn unknown_paths_are_404() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    for uri in [
        "/",
        "/api/v1",
        "/api/v1/reel",
        "/api/v1/reels/extra",
        "/api/v2/reels",
        "/nope",
    ] {
        for token in [None, Some(token.as_str())] {
            let response = app.get(uri, token).await;
            assert_error(&response, StatusCode::NOT_FOUND, "not_found");
        }
    }
}

#[tokio::test]
async fn a_wrong_method_is_405_naming_the_allowed_ones() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    for (method, uri, allowed) in [
        (Method::POST, "/api/v1/reels", "GET"),
        (Method::DELETE, "/api/v1/reels", "GET"),
        (Method::GET, "/api/v1/events", "POST"),
        (Method::PUT, "/api/v1/events", "POST"),
        (Method::POST, "/api/v1/health", "GET"),
        (Method::POST, "/metrics", "GET"),
    ] {
        let response = app
            .send(request(method.clone(), uri, Some(&token), None))
            .await;
        assert_error(
            &response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        );
        let allow = response.header("allow").unwrap_or_default();
        assert!(allow.contains(allowed), "{method} {uri}: Allow {allow:?}");
    }
}

#[tokio::test]
async fn an_oversized_body_is_413_even_when_declared_up_front() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let body = vec![b' '; 65 * 1024];
    let response = app
        .send(request(
            Method::POST,
            "/api/v1/events",
            Some(&token),
            Some(("application/json", body)),
        ))
        .await;
    assert_error(
        &response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
}

#[tokio::test]
async fn a_non_json_body_is_415() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let response = app
        .send(request(
            Method::POST,
            "/api/v1/events",
            Some(&token),
            Some(("text/xml", b"<events/>".to_vec())),
        ))
        .await;
    assert_error(
        &response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}

#[tokio::test]
async fn a_panicking_port_is_a_json_500_and_the_app_keeps_serving() {
    let mut cache = MockFeedCache::new();
    cache
        .expect_current_session()
        .returning(|_| panic!("feed cache exploded"));
    let app = spawn_app_with(Options {
        feed_cache: Some(Arc::new(cache)),
        ..Options::default()
    })
    .await;
    let token = token_for(Uuid::new_v4());
    let response = app.reels(&token, "limit=5").await;
    assert_error(
        &response,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
    );
    assert!(
        !response.text().contains("exploded"),
        "the panic message leaked"
    );

    let live = app.get("/api/v1/health/live", None).await;
    assert_eq!(live.status, StatusCode::OK);
}

#[tokio::test]
async fn no_snapshot_yet_is_503_with_retry_after() {
    let app = spawn_app_with(Options {
        refresh: false,
        ..Options::default()
    })
    .await;
    let response = app.reels(&token_for(Uuid::new_v4()), "").await;
    assert_error(
        &response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    );
    assert!(response.header("retry-after").is_some());

    app.refresh().await;
    assert_eq!(
        app.reels(&token_for(Uuid::new_v4()), "").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_error_status_of_the_contract_has_the_json_shape() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let video = app.videos[0].id.0;
    let cases = [
        (
            request(Method::GET, "/api/v1/reels?limit=0", Some(&token), None),
            400,
        ),
        (
            request(Method::GET, "/api/v1/reels?cursor=zzz", Some(&token), None),
            400,
        ),
        (
            request(
                Method::GET,
                "/api/v1/reels?limit=1&limit=2",
                Some(&token),
                None,
            ),
            400,
        ),
        (request(Method::GET, "/api/v1/reels", None, None), 401),
        (
            request(Method::GET, "/api/v1/reels", Some("nope"), None),
            401,
        ),
        (request(Method::GET, "/missing", None, None), 404),
        (request(Method::PATCH, "/api/v1/reels", None, None), 405),
        (
            request(
                Method::POST,
                "/api/v1/events",
                Some(&token),
                Some(("application/json", vec![b'1'; 70_000])),
            ),
            413,
        ),
        (
            request(
                Method::POST,
                "/api/v1/events",
                Some(&token),
                Some(("text/plain", b"{}".to_vec())),
            ),
            415,
        ),
        (
            request(
                Method::POST,
                "/api/v1/events",
                Some(&token),
                Some((
                    "application/json",
                    json!({"events": [{"video_id": video}]})
                        .to_string()
                        .into_bytes(),
                )),
            ),
            422,
        ),
    ];
    for (request, status) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let response = app.send(request).await;
        assert_eq!(
            response.status.as_u16(),
            status,
            "{what}: {}",
            response.text()
        );
        assert_error_shape(&response);
        assert!(
            response
                .header(header::CONTENT_TYPE.as_str())
                .is_some_and(|c| c.starts_with("application/json")),
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_request_over_the_timeout_is_a_json_503() {
    let app = spawn_app_with(Options {
        feed_cache: Some(Arc::new(HangingFeedCache)),
        http: HttpConfig {
            request_timeout: Duration::from_millis(100),
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    let response = app.reels(&token_for(Uuid::new_v4()), "").await;
    assert_error(
        &response,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    );
}
