//! The operator routes: cache warm-up, cache invalidation and ranking weights.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{Value, json};
use uuid::Uuid;

fn admin_token() -> String {
    let mut c = claims(Uuid::new_v4());
    c["role"] = json!("admin");
    let k = &keys().primary;
    sign(&c, k, Some(k.kid))
}

async fn put_json(app: &TestApp, uri: &str, token: &str, body: &Value) -> TestResponse {
    app.send(request(
        Method::PUT,
        uri,
        Some(token),
        Some(("application/json", body.to_string().into_bytes())),
    ))
    .await
}

const WARMUP: &str = "/api/v1/admin/cache-warmup";
const INVALIDATE: &str = "/api/v1/admin/cache/invalidate";
const WEIGHTS: &str = "/api/v1/admin/ranking/weights";

#[tokio::test]
async fn every_admin_route_needs_a_token_with_the_admin_role() {
    let app = spawn_app().await;
    let viewer = token_for(Uuid::new_v4());
    let routes = [
        (Method::POST, WARMUP),
        (Method::POST, INVALIDATE),
        (Method::GET, WEIGHTS),
        (Method::PUT, WEIGHTS),
    ];
    for (method, uri) in routes {
        let body = || Some(("application/json", b"{}".to_vec()));
        let anonymous = app.send(request(method.clone(), uri, None, body())).await;
        assert_error(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
        let viewer = app
            .send(request(method.clone(), uri, Some(&viewer), body()))
            .await;
        assert_error(&viewer, StatusCode::FORBIDDEN, "forbidden");
    }
}

#[tokio::test]
async fn warm_up_caches_the_sessions_of_the_most_active_users() {
    let app = spawn_app().await;
    let video = app.videos[0].id.0;
    let users: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    // Activity: users[0] 3 events, users[1] 2, users[2] 1.
    for (n, user) in users.iter().enumerate() {
        let events = (0..3 - n).map(|_| event(video, "view")).collect();
        app.record(&token_for(*user), events).await;
    }

    let response = app
        .post_json(
            WARMUP,
            Some(&admin_token()),
            &json!({"user_count": 2, "batch_size": 2}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(
        (body["warmed"].clone(), body["failed"].clone()),
        (json!(2), json!(0))
    );
    assert!(body["duration_ms"].is_u64(), "{body}");

    for (user, expected) in [(users[0], "hit"), (users[1], "hit"), (users[2], "miss")] {
        let page = app.reels(&token_for(user), "limit=5").await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.header("x-feed-cache"), Some(expected), "{user}");
    }

    // An empty body takes the defaults (1000 users, 10 at a time): every active user.
    let response = app
        .send(request(Method::POST, WARMUP, Some(&admin_token()), None))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.json()["warmed"], json!(3));
}

#[tokio::test]
async fn warm_up_refuses_bad_bodies_with_json_errors() {
    let app = spawn_app().await;
    let token = admin_token();
    for (body, status, code) in [
        (
            json!({"user_count": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"user_count": 100_001}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"batch_size": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"batch_size": 101}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"user_count": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"users": 10}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!([1, 2]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ] {
        let response = app.post_json(WARMUP, Some(&token), &body).await;
        assert_error(&response, status, code);
    }
    let response = app
        .send(request(
            Method::POST,
            WARMUP,
            Some(&token),
            Some(("application/json", b"{not json".to_vec())),
        ))
        .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "invalid_json");
}

#[tokio::test]
async fn invalidation_makes_the_next_first_page_a_miss_and_keeps_cursors_working() {
    let app = spawn_app().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    for user in [alice, bob] {
        let first = app.page(&token_for(user), "limit=5").await;
        assert!(first["next_cursor"].is_string());
    }
    let cursor = app.page(&token_for(alice), "limit=5").await["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let response = app
        .post_json(
            INVALIDATE,
            Some(&admin_token()),
            &json!({"user_ids": [alice]}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.json(), json!({"invalidated": 1}));
    let again = app.reels(&token_for(alice), "limit=5").await;
    assert_eq!(again.header("x-feed-cache"), Some("miss"));
    let bob_page = app.reels(&token_for(bob), "limit=5").await;
    assert_eq!(
        bob_page.header("x-feed-cache"),
        Some("hit"),
        "others keep theirs"
    );
    let next = app
        .reels(&token_for(alice), &format!("limit=5&cursor={cursor}"))
        .await;
    assert_eq!(
        next.status,
        StatusCode::OK,
        "cursors keep working: {}",
        next.text()
    );

    let response = app
        .post_json(INVALIDATE, Some(&admin_token()), &json!({"all": true}))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert!(response.json()["invalidated"].as_u64() >= Some(2));
    let bob_page = app.reels(&token_for(bob), "limit=5").await;
    assert_eq!(bob_page.header("x-feed-cache"), Some("miss"));

    for body in [
        json!({}),
        json!({"all": true, "user_ids": [alice]}),
        json!({"user_ids": []}),
        json!({"all": false}),
    ] {
        let response = app.post_json(INVALIDATE, Some(&admin_token()), &body).await;
        assert_error(
            &response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        );
    }
    let response = app
        .post_json(
            INVALIDATE,
            Some(&admin_token()),
            &json!({"user_ids": ["nope"]}),
        )
        .await;
    assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
}

#[tokio::test]
async fn weights_are_versioned_validated_and_used_after_the_next_refresh() {
    let app = spawn_app().await;
    let token = admin_token();
    let current = app.get(WEIGHTS, Some(&token)).await;
    assert_eq!(current.status, StatusCode::OK, "{}", current.text());
    let current = current.json();
    assert_eq!(current["active"]["active"], json!(true));
    let first_version = current["active"]["version"].as_i64().unwrap_or_default();
    assert_eq!(current["history"][0]["version"], json!(first_version));

    let next = json!({"freshness": 0.5, "completion": 0.25, "engagement": 0.125,
                      "affinity": 0.125, "model": 0.0});
    let response = put_json(&app, WEIGHTS, &token, &next).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let set = response.json();
    assert_eq!(set["weights"], next);
    assert_eq!(set["active"], json!(true));
    assert!(set["version"].as_i64() > Some(first_version));

    let now = app.get(WEIGHTS, Some(&token)).await.json();
    assert_eq!(now["active"]["version"], set["version"]);
    assert_eq!(now["history"][1]["version"], json!(first_version));
    assert_eq!(now["history"][1]["active"], json!(false));

    // New rankings use the new weights once the snapshot is refreshed.
    app.refresh().await;
    let page = app
        .page(&token_for(Uuid::new_v4()), "limit=5&explain=true")
        .await;
    assert_eq!(
        page["videos"][0]["signals"]["weights"]["freshness"],
        json!(0.5),
        "{page}"
    );

    for (body, code) in [
        (
            json!({"freshness": 0.5, "completion": 0.5, "engagement": 0.5, "affinity": 0.0, "model": 0.0}),
            "invalid_weights",
        ),
        (
            json!({"freshness": -0.5, "completion": 1.0, "engagement": 0.5, "affinity": 0.0, "model": 0.0}),
            "invalid_weights",
        ),
        (
            json!({"freshness": 1.0, "completion": 0.0, "engagement": 0.0, "affinity": 0.0}),
            "invalid_body",
        ),
        (
            json!({"freshness": 1.0, "completion": 0.0, "engagement": 0.0, "affinity": 0.0, "model": 0.0, "extra": 0.0}),
            "invalid_body",
        ),
    ] {
        let response = put_json(&app, WEIGHTS, &token, &body).await;
        assert_error(&response, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    let after = app.get(WEIGHTS, Some(&token)).await.json();
    assert_eq!(
        after["active"]["version"], set["version"],
        "refused bodies change nothing"
    );
}

#[tokio::test]
async fn an_invalidation_of_ten_thousand_users_fits_the_operator_body_limit() {
    let app = spawn_app().await;
    let ids: Vec<Uuid> = (0..10_000).map(|_| Uuid::new_v4()).collect();
    let body = json!({"user_ids": ids});
    assert!(
        body.to_string().len() > 64 * 1024,
        "larger than an event batch may be"
    );
    let response = app.post_json(INVALIDATE, Some(&admin_token()), &body).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.json(), json!({"invalidated": 10_000}));

    let too_many: Vec<Uuid> = (0..10_001).map(|_| Uuid::new_v4()).collect();
    let response = app
        .post_json(
            INVALIDATE,
            Some(&admin_token()),
            &json!({"user_ids": too_many}),
        )
        .await;
    assert_error(
        &response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );
}
