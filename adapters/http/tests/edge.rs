//! The HTTP edge against abusive clients: failed-authentication floods, slow bodies, oversized
//! bodies, like spam and event floods.

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, StatusCode, header};
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;
use uuid::Uuid;
use vrs_adapter_http::HttpConfig;
use vrs_adapter_http::auth::{AuthFailureLimit, RateLimit};

const EVENTS: &str = "/api/v1/events";

fn from(addr: &str, mut request: axum::http::Request<Body>) -> axum::http::Request<Body> {
    let addr: SocketAddr = addr.parse().expect("address");
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

fn limit(per_second: u32, burst: u32) -> AuthFailureLimit {
    AuthFailureLimit {
        per_second: NonZeroU32::new(per_second).expect("positive"),
        burst: NonZeroU32::new(burst).expect("positive"),
        client_ip_header: None,
    }
}

#[tokio::test]
async fn an_address_that_keeps_failing_authentication_is_refused_before_verification() {
    let app = spawn_app_with(Options {
        auth_failures: Some(limit(1, 5)),
        ..Options::default()
    })
    .await;
    let forged = format!("{}x", token_for(Uuid::new_v4()));
    // The burst, and the failure that finds it used up.
    for _ in 0..6 {
        let res = app
            .send(from(
                "203.0.113.7:4000",
                request(Method::GET, "/api/v1/reels", Some(&forged), None),
            ))
            .await;
        assert_error(&res, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // Out of failures: refused without a look at the token, even a valid one.
    let valid = token_for(Uuid::new_v4());
    for token in [&forged, &valid] {
        let res = app
            .send(from(
                "203.0.113.7:4001",
                request(Method::GET, "/api/v1/reels", Some(token), None),
            ))
            .await;
        assert_error(
            &res,
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_auth_failures",
        );
        assert!(res.header("retry-after").is_some());
    }
    // Another address is not affected.
    let res = app
        .send(from(
            "198.51.100.1:4000",
            request(Method::GET, "/api/v1/reels", Some(&valid), None),
        ))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    // Once its bucket has room again, the address may try once more.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let res = app
        .send(from(
            "203.0.113.7:4002",
            request(Method::GET, "/api/v1/reels", Some(&valid), None),
        ))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}

#[tokio::test]
async fn behind_a_proxy_the_client_is_the_rightmost_forwarded_address() {
    let app = spawn_app_with(Options {
        auth_failures: Some(AuthFailureLimit {
            client_ip_header: Some(header::HeaderName::from_static("x-forwarded-for")),
            ..limit(1, 2)
        }),
        ..Options::default()
    })
    .await;
    let forged = "not-a-token";
    let via = |client: &str, token: &str| {
        let mut r = from(
            "10.0.0.2:80",
            request(Method::GET, "/api/v1/reels", Some(token), None),
        );
        // The client may prepend anything; the proxy appends the address it saw.
        r.headers_mut().insert(
            "x-forwarded-for",
            format!("1.2.3.4, {client}").parse().expect("header"),
        );
        r
    };
    for _ in 0..3 {
        assert_eq!(
            app.send(via("203.0.113.9", forged)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.send(via("203.0.113.9", forged)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let valid = token_for(Uuid::new_v4());
    assert_eq!(
        app.send(via("203.0.113.10", &valid)).await.status,
        StatusCode::OK,
        "another client behind the same proxy is served"
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408_not_a_server_error() {
    let app = spawn_app_with(Options {
        http: HttpConfig {
            body_read_timeout: Duration::from_millis(200),
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
    // A body that sends one byte, then nothing.
    let stream = futures::stream::once(async {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{"))
    })
    .chain(futures::stream::pending());
    let request = axum::http::Request::builder()
        .method(Method::POST)
        .uri(EVENTS)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token_for(Uuid::new_v4())),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("request");
    let res = app.send(request).await;
    assert_error(&res, StatusCode::REQUEST_TIMEOUT, "request_timeout");
    assert_eq!(res.header("connection"), Some("close"));
}

#[tokio::test]
async fn each_route_group_names_its_own_body_limit() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let big = vec![b' '; 70 * 1024];
    let res = app
        .send(request(
            Method::POST,
            EVENTS,
            Some(&token),
            Some(("application/json", big)),
        ))
        .await;
    assert_error(&res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(
        res.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("65536")),
        "{}",
        res.text()
    );

    let admin = admin_token_for(Uuid::new_v4());
    let huge = vec![b' '; 1024 * 1024 + 1];
    let res = app
        .send(request(
            Method::PUT,
            "/api/v1/admin/ranking/weights",
            Some(&admin),
            Some(("application/json", huge)),
        ))
        .await;
    assert_error(&res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(
        res.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1048576")),
        "{}",
        res.text()
    );
    // Between the two limits, an admin body is read (and judged on its content).
    let res = app
        .send(request(
            Method::PUT,
            "/api/v1/admin/ranking/weights",
            Some(&admin),
            Some(("application/json", vec![b' '; 100 * 1024])),
        ))
        .await;
    assert_ne!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.text());
}

#[tokio::test]
async fn like_spam_counts_one_like_per_account_and_video() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let video = app.videos[0].id.0;
    let likes: Vec<Value> = (0..100).map(|_| event(video, "like")).collect();
    let answer = app.record(&token, likes).await;
    assert_eq!(
        (answer["accepted"].clone(), answer["duplicates"].clone()),
        (json!(1), json!(99))
    );
    assert_eq!(
        answer["repeated_reactions"].as_array().map(Vec::len),
        Some(99)
    );
    for kind in ["share", "comment"] {
        let spam: Vec<Value> = (0..10).map(|_| event(video, kind)).collect();
        let answer = app.record(&token, spam).await;
        assert_eq!(answer["accepted"], json!(1), "{kind}: {answer}");
    }
    // An unlike without a like does not count: unlikes cannot drive likes down.
    let other = app.videos[1].id.0;
    let answer = app.record(&token, vec![event(other, "unlike")]).await;
    assert_eq!(answer["accepted"], json!(0), "{answer}");
}

#[tokio::test]
async fn events_are_limited_per_user_not_per_request() {
    let app = spawn_app_with(Options {
        event_limit: Some(RateLimit {
            per_second: NonZeroU32::new(1).expect("positive"),
            burst: NonZeroU32::new(150).expect("positive"),
        }),
        ..Options::default()
    })
    .await;
    let token = token_for(Uuid::new_v4());
    let video = app.videos[0].id.0;
    let batch =
        |n: usize| json!({"events": (0..n).map(|_| event(video, "view")).collect::<Vec<_>>()});
    let res = app.post_json(EVENTS, Some(&token), &batch(100)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let res = app.post_json(EVENTS, Some(&token), &batch(100)).await;
    assert_error(&res, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let res = app.post_json(EVENTS, Some(&token), &batch(10)).await;
    assert_eq!(
        res.status,
        StatusCode::ACCEPTED,
        "what is left of the burst still serves"
    );
    let other = token_for(Uuid::new_v4());
    let res = app.post_json(EVENTS, Some(&other), &batch(100)).await;
    assert_eq!(
        res.status,
        StatusCode::ACCEPTED,
        "another user has a budget of its own"
    );
}
