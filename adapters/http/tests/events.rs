//! `POST /api/v1/events`: every status of the contract, all-or-nothing validation and idempotency.

mod common;

use axum::http::{Method, StatusCode};
use chrono::{Duration, SecondsFormat};
use common::*;
use serde_json::{Value, json};
use uuid::Uuid;
use vrs_application::ports::Clock;

const EVENTS: &str = "/api/v1/events";
const TYPES: [&str; 11] = [
    "impression",
    "view",
    "watch",
    "complete",
    "like",
    "unlike",
    "share",
    "comment",
    "skip",
    "not_interested",
    "hide_creator",
];

fn batch(events: Vec<Value>) -> Value {
    json!({ "events": events })
}

/// Sends raw bytes with a content type.
async fn post_raw(
    app: &TestApp,
    token: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> TestResponse {
    let mut request = request(Method::POST, EVENTS, Some(token), None);
    if let Some(content_type) = content_type {
        request.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            content_type.parse().expect("header value"),
        );
    }
    *request.body_mut() = axum::body::Body::from(body);
    app.send(request).await
}

#[tokio::test]
async fn a_valid_batch_of_every_type_is_accepted_with_202() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let video = app.videos[0].id.0;
    let occurred =
        (app.clock.now() - Duration::minutes(1)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut events: Vec<Value> = TYPES.iter().map(|t| event(video, t)).collect();
    events[2]["watch_ms"] = json!(12_000);
    events[2]["completion"] = json!(0.4);
    events[3]["completion"] = json!(1);
    events[4]["occurred_at"] = json!(occurred);
    events[5]["watch_ms"] = Value::Null;
    let response = app.post_json(EVENTS, Some(&token), &batch(events)).await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({"accepted": 11, "duplicates": 0, "repeated_reactions": []})
    );
}

#[tokio::test]
async fn repeated_event_ids_count_as_duplicates() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let video = app.videos[0].id.0;
    let events = vec![event(video, "view"), event(video, "like")];
    assert_eq!(
        app.record(&token, events.clone()).await,
        json!({"accepted": 2, "duplicates": 0, "repeated_reactions": []})
    );
    let mut retry = events.clone();
    retry.push(event(video, "share"));
    assert_eq!(
        app.record(&token, retry).await,
        json!({"accepted": 1, "duplicates": 2, "repeated_reactions": []})
    );
    // A repeat within one batch is applied once.
    let once = event(video, "comment");
    assert_eq!(
        app.record(&token, vec![once.clone(), once]).await,
        json!({"accepted": 1, "duplicates": 1, "repeated_reactions": []})
    );
}

#[tokio::test]
async fn one_to_a_hundred_events_are_accepted_and_other_counts_are_422() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let video = app.videos[0].id.0;
    let hundred: Vec<Value> = (0..100).map(|_| event(video, "impression")).collect();
    assert_eq!(app.record(&token, hundred).await["accepted"], json!(100));

    let too_many: Vec<Value> = (0..101).map(|_| event(video, "impression")).collect();
    for body in [
        batch(vec![]),
        batch(too_many),
        json!({}),
        json!({"events": {}}),
        json!([]),
    ] {
        let response = app.post_json(EVENTS, Some(&token), &body).await;
        assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_batch");
        assert_eq!(
            response.json()["error"]["details"]["field"],
            json!("events")
        );
    }
}

#[tokio::test]
async fn an_invalid_event_is_422_naming_its_index_and_field() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let video = app.videos[0].id.0;
    let future = (app.clock.now() + Duration::hours(1)).to_rfc3339();
    let stale = (app.clock.now() - Duration::days(8)).to_rfc3339();
    let cases: Vec<(&str, Value)> = vec![
        ("event_id", json!("not-a-uuid")),
        ("event_id", Value::Null),
        ("video_id", json!(42)),
        ("video_id", json!(Uuid::new_v4())), // no such video
        ("type", json!("poke")),
        ("type", json!(3)),
        ("watch_ms", json!(-5)),
        ("watch_ms", json!(1.5)),
        ("watch_ms", json!("100")),
        ("completion", json!(1.01)),
        ("completion", json!(-0.1)),
        ("completion", json!("half")),
        ("occurred_at", json!("yesterday")),
        ("occurred_at", json!(1_700_000_000)),
        ("occurred_at", json!(future)), // too far in the future
        ("occurred_at", json!(stale)),  // older than 7 days
        ("occurred_at", json!("1969-12-31T23:59:59Z")),
        ("occurred_at", json!("0001-01-01T00:00:00Z")),
        ("occurred_at", json!("+262143-12-31T23:59:59Z")),
    ];
    for (field, value) in cases {
        let mut bad = event(video, "watch");
        bad[field] = value.clone();
        if value.is_null() {
            bad.as_object_mut().map(|o| o.remove(field));
        }
        let events = vec![event(video, "view"), event(video, "like"), bad];
        let response = app.post_json(EVENTS, Some(&token), &batch(events)).await;
        assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_event");
        let details = &response.json()["error"]["details"];
        assert_eq!(details["index"], json!(2), "{field}={value}: {details}");
        assert_eq!(details["field"], json!(field), "{field}={value}: {details}");
    }
    let not_an_object = batch(vec![event(video, "view"), json!("view")]);
    let response = app.post_json(EVENTS, Some(&token), &not_an_object).await;
    assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_event");
    assert_eq!(response.json()["error"]["details"]["index"], json!(1));
}

#[tokio::test]
async fn a_rejected_batch_accepts_nothing() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let video = app.videos[0].id.0;
    let good = vec![event(video, "view"), event(video, "like")];
    let mut bad = good.clone();
    bad.push(json!({"event_id": Uuid::new_v4(), "video_id": video, "type": "nope"}));
    let response = app.post_json(EVENTS, Some(&token), &batch(bad)).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Were any of the valid ones kept, they would now be duplicates.
    assert_eq!(
        app.record(&token, good).await,
        json!({"accepted": 2, "duplicates": 0, "repeated_reactions": []})
    );
}

#[tokio::test]
async fn a_rejected_watch_does_not_hide_the_video() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let watched = app.videos[0].id.0;
    let bad = batch(vec![
        event(watched, "complete"),
        json!({"event_id": Uuid::new_v4(), "video_id": watched, "type": "watch", "completion": 2}),
    ]);
    let response = app.post_json(EVENTS, Some(&token), &bad).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    let feed = app.whole_feed(&token, 50).await;
    assert!(ids(&feed).contains(&watched.to_string()));
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let video = app.videos[0].id.0;
    // Valid JSON that only fails by its size.
    let mut padded = event(video, "view");
    padded["padding"] = json!("x".repeat(64 * 1024));
    let response = app
        .post_json(EVENTS, Some(&token), &batch(vec![padded]))
        .await;
    assert_error(
        &response,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    // Just under the limit is read (and refused only for its content).
    let mut fits = event(video, "view");
    let room = 64 * 1024 - batch(vec![fits.clone()]).to_string().len() - 20;
    fits["padding"] = json!("x".repeat(room));
    let response = app
        .post_json(EVENTS, Some(&token), &batch(vec![fits]))
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
}

#[tokio::test]
async fn a_non_json_content_type_is_415() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let body = batch(vec![event(app.videos[0].id.0, "view")])
        .to_string()
        .into_bytes();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let response = post_raw(&app, &token, content_type, body.clone()).await;
        assert_error(
            &response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
    }
    let response = post_raw(&app, &token, Some("application/json; charset=utf-8"), body).await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
}

#[tokio::test]
async fn invalid_json_is_400() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    for body in ["{\"events\": [", "", "not json", "{\"events\": [}]}"] {
        let response = post_raw(&app, &token, Some("application/json"), body.into()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "invalid_json");
    }
}

#[tokio::test]
async fn events_need_a_token() {
    let app = spawn_app().await;
    let body = batch(vec![event(app.videos[0].id.0, "view")]);
    let response = app.post_json(EVENTS, None, &body).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "unauthorized");
}
