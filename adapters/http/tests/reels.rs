//! `GET /api/v1/reels`: page shape, limits, explanations, the cache header, cursor paging and how
//! watches and deletions change the next pages.

mod common;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use common::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use uuid::Uuid;
use vrs_adapter_http::CursorCodec;
use vrs_application::FeedPosition;
use vrs_application::ports::{Clock, VideoCatalog};
use vrs_domain::{SessionId, UserId, VideoStatus};

const VIDEO_FIELDS: [&str; 14] = [
    "id",
    "creator_id",
    "title",
    "duration_seconds",
    "thumbnail_url",
    "playback_url",
    "published_at",
    "view_count",
    "like_count",
    "share_count",
    "comment_count",
    "completion_rate",
    "ranking_score",
    "reason",
];
const SIGNALS: [&str; 5] = ["freshness", "completion", "engagement", "affinity", "model"];

fn unit(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x))
}

#[tokio::test]
async fn a_page_has_the_documented_shape() {
    let app = spawn_app().await;
    let response = app.reels(&token_for(Uuid::new_v4()), "limit=5").await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let page = response.json();
    let keys: HashSet<&str> = page
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, HashSet::from(["videos", "next_cursor", "has_more"]));
    assert_eq!(page["has_more"], json!(true));
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a cursor while more exist");
    assert!(
        !cursor.is_empty()
            && cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "cursor {cursor:?} is not URL-safe"
    );

    let videos = videos_of(&page);
    assert_eq!(videos.len(), 5);
    let catalog: HashSet<String> = app.videos.iter().map(|v| v.id.0.to_string()).collect();
    for v in &videos {
        let fields: HashSet<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, HashSet::from(VIDEO_FIELDS), "{v}");
        assert!(
            catalog.contains(v["id"].as_str().unwrap_or_default()),
            "{v}"
        );
        assert!(Uuid::parse_str(v["creator_id"].as_str().unwrap_or_default()).is_ok());
        assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(v["duration_seconds"], json!(30));
        for url in ["thumbnail_url", "playback_url"] {
            assert!(
                v[url].as_str().is_some_and(|u| u.starts_with(CDN)),
                "{url}: {v}"
            );
        }
        assert!(
            chrono::DateTime::parse_from_rfc3339(v["published_at"].as_str().unwrap_or_default())
                .is_ok()
        );
        for count in ["view_count", "like_count", "share_count", "comment_count"] {
            assert!(v[count].is_u64(), "{count}: {v}");
        }
        assert!(unit(&v["completion_rate"]), "{v}");
        assert!(
            v["ranking_score"].as_f64().is_some_and(f64::is_finite),
            "{v}"
        );
        assert!(
            ["following", "affinity", "trending", "fresh"]
                .contains(&v["reason"].as_str().unwrap_or_default()),
            "{v}"
        );
    }
}

#[tokio::test]
async fn limit_defaults_to_40_and_accepts_1_to_50() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    assert_eq!(videos_of(&app.page(&token, "").await).len(), 40);
    for limit in [1, 17, 50] {
        let page = app
            .page(&token_for(Uuid::new_v4()), &format!("limit={limit}"))
            .await;
        assert_eq!(videos_of(&page).len(), limit);
    }
}

#[tokio::test]
async fn a_limit_outside_1_to_50_or_not_an_integer_is_400() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    for limit in [
        "0",
        "51",
        "-1",
        "1000",
        "abc",
        "1.5",
        "",
        "1e1",
        "99999999999999999999",
    ] {
        let response = app.reels(&token, &format!("limit={limit}")).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "invalid_limit");
    }
}

#[tokio::test]
async fn explain_adds_signals_weights_and_contributions() {
    let app = spawn_app().await;
    let plain = app.page(&token_for(Uuid::new_v4()), "limit=3").await;
    assert!(videos_of(&plain).iter().all(|v| v.get("signals").is_none()));
    let plain = app
        .page(&token_for(Uuid::new_v4()), "limit=3&explain=false")
        .await;
    assert!(videos_of(&plain).iter().all(|v| v.get("signals").is_none()));

    let page = app
        .page(&token_for(Uuid::new_v4()), "limit=3&explain=true")
        .await;
    let videos = videos_of(&page);
    assert_eq!(videos.len(), 3);
    for v in &videos {
        let s = &v["signals"];
        let mut keys: Vec<&str> = s
            .as_object()
            .expect("signals")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut expected = SIGNALS.to_vec();
        expected.extend([
            "raw_engagement",
            "raw_completion",
            "weights",
            "contributions",
        ]);
        expected.sort_unstable();
        assert_eq!(keys, expected, "{s}");
        assert!(
            unit(&s["raw_engagement"]) && unit(&s["raw_completion"]),
            "{s}"
        );
        let mut sum = 0.0;
        for name in SIGNALS {
            assert!(unit(&s[name]), "{name}: {s}");
            let weight = s["weights"][name].as_f64().expect("weight");
            let contribution = s["contributions"][name].as_f64().expect("contribution");
            let value = s[name].as_f64().unwrap_or_default();
            assert!((contribution - weight * value).abs() < 1e-9, "{name}: {s}");
            sum += contribution;
        }
        // The score is explained exactly by the contributions.
        let score = v["ranking_score"].as_f64().expect("score");
        assert!(
            (score - sum).abs() < 1e-9,
            "score {score} vs contributions {sum}"
        );
    }
    let response = app.reels(&token_for(Uuid::new_v4()), "explain=maybe").await;
    assert_error(&response, StatusCode::BAD_REQUEST, "invalid_explain");
}

#[tokio::test]
async fn x_feed_cache_tells_a_ranked_page_from_a_cached_one() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let first = app.reels(&token, "limit=5").await;
    assert_eq!(first.header("x-feed-cache"), Some("miss"));
    let cursor = first.json()["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let next = app.reels(&token, &format!("limit=5&cursor={cursor}")).await;
    assert_eq!(next.header("x-feed-cache"), Some("hit"));
    // A new first page reuses the session while it has enough unseen videos.
    let again = app.reels(&token, "limit=5").await;
    assert_eq!(again.header("x-feed-cache"), Some("hit"));
    let seen: HashSet<String> = ids(&videos_of(&first.json()))
        .into_iter()
        .chain(ids(&videos_of(&next.json())))
        .collect();
    assert!(
        ids(&videos_of(&again.json()))
            .iter()
            .all(|id| !seen.contains(id)),
        "a cached first page shows videos not served yet"
    );
}

#[tokio::test]
async fn following_next_cursor_walks_the_whole_feed_without_repeats() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let feed = app.whole_feed(&token, 7).await;
    let ids = ids(&feed);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a video was repeated");
    assert_eq!(
        ids.len(),
        app.videos.len(),
        "every servable video is reachable"
    );
}

#[tokio::test]
async fn the_same_cursor_twice_gives_the_same_page() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let first = app.page(&token, "limit=10").await;
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let a = app.page(&token, &format!("limit=10&cursor={cursor}")).await;
    let b = app.page(&token, &format!("limit=10&cursor={cursor}")).await;
    assert_eq!(ids(&videos_of(&a)), ids(&videos_of(&b)));
    assert_eq!(a["next_cursor"], b["next_cursor"]);
    assert_eq!(videos_of(&a).len(), 10);
}

#[tokio::test]
async fn another_users_cursor_is_invalid() {
    let app = spawn_app().await;
    let page = app.page(&token_for(Uuid::new_v4()), "limit=5").await;
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let response = app
        .reels(&token_for(Uuid::new_v4()), &format!("cursor={cursor}"))
        .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "invalid_cursor");
}

#[tokio::test]
async fn tampered_forged_or_garbage_cursors_are_invalid() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let token = token_for(user);
    let page = app.page(&token, "limit=5").await;
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    let bytes = URL_SAFE_NO_PAD.decode(&cursor).expect("base64url cursor");

    let mut candidates = Vec::new();
    // Flip one bit in every byte in turn: position, session, user, expiry and tag all matter.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        candidates.push(URL_SAFE_NO_PAD.encode(b));
    }
    candidates.push(URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 1]));
    candidates.push(format!("{cursor}AA"));
    candidates.push("not-a-cursor".to_owned());
    candidates.push("x".repeat(300));
    // Well-formed and signed, but with another key.
    let position = FeedPosition {
        session_id: SessionId(Uuid::new_v4()),
        offset: 5,
    };
    let expires = app.clock.now() + Duration::hours(1);
    candidates.push(CursorCodec::new(b"another key".to_vec()).encode(
        UserId(user),
        position,
        expires,
    ));
    // Signed with the right key, pointing into a session that does not exist.
    candidates.push(app.cursors.encode(UserId(user), position, expires));

    for bad in candidates {
        let response = app.reels(&token, &format!("limit=5&cursor={bad}")).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "invalid_cursor");
    }
    // The original still works: the failures above were about the cursors.
    assert_eq!(
        app.reels(&token, &format!("limit=5&cursor={cursor}"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expired_cursor_is_invalid() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let page = app.page(&token, "limit=5").await;
    let cursor = page["next_cursor"].as_str().expect("cursor");
    // Sessions are reused for an hour (plus at most five minutes of jitter), then kept an hour
    // longer for their cursors.
    app.clock.advance(Duration::hours(3));
    let response = app.reels(&token, &format!("limit=5&cursor={cursor}")).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "invalid_cursor");
}

#[tokio::test]
async fn every_cursor_stays_valid_an_hour_after_it_was_handed_out() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let first = app.page(&token, "limit=5").await;
    let mut cursor = first["next_cursor"].as_str().expect("cursor").to_owned();
    // Page on through the session, each time just before the last cursor's hour is up: the
    // session itself would have expired long ago.
    for step in 0..4 {
        app.clock.advance(Duration::minutes(59));
        let response = app.reels(&token, &format!("limit=5&cursor={cursor}")).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "step {step}: {}",
            response.text()
        );
        cursor = response.json()["next_cursor"]
            .as_str()
            .unwrap_or_else(|| panic!("step {step}: a next cursor"))
            .to_owned();
    }
}

#[tokio::test]
async fn watched_videos_disappear_from_the_next_pages() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let first = app.page(&token, "limit=5").await;
    let on_first: HashSet<String> = ids(&videos_of(&first)).into_iter().collect();
    let later: Vec<Uuid> = app
        .videos
        .iter()
        .map(|v| v.id.0)
        .filter(|id| !on_first.contains(&id.to_string()))
        .take(2)
        .collect();
    let on_page = Uuid::parse_str(&ids(&videos_of(&first))[0]).expect("uuid");
    app.record(
        &token,
        vec![
            json!({"event_id": Uuid::new_v4(), "video_id": later[0], "type": "watch", "watch_ms": 4000, "completion": 0.4}),
            json!({"event_id": Uuid::new_v4(), "video_id": later[1], "type": "complete"}),
            json!({"event_id": Uuid::new_v4(), "video_id": on_page, "type": "watch", "completion": 0.9}),
        ],
    )
    .await;

    // The rest of the current session, through the cursor.
    let mut rest = Vec::new();
    let mut page = first;
    while let Some(cursor) = page["next_cursor"].as_str().map(str::to_owned) {
        page = app.page(&token, &format!("limit=10&cursor={cursor}")).await;
        rest.extend(ids(&videos_of(&page)));
    }
    for watched in &later {
        assert!(
            !rest.contains(&watched.to_string()),
            "watched {watched} still served"
        );
    }
    assert_eq!(rest.len(), app.videos.len() - 5 - later.len());

    // A new first page (served from the cached session) leaves them out as well.
    let again = app.whole_feed(&token, 50).await;
    for watched in later.iter().chain([&on_page]) {
        assert!(
            !ids(&again).contains(&watched.to_string()),
            "watched {watched} served again"
        );
    }
}

#[tokio::test]
async fn a_deleted_video_disappears_after_the_catalog_change_is_refreshed() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let first = app.page(&token, "limit=5").await;
    let on_first: HashSet<String> = ids(&videos_of(&first)).into_iter().collect();
    let mut doomed = app
        .videos
        .iter()
        .find(|v| !on_first.contains(&v.id.0.to_string()))
        .cloned()
        .expect("a video past the first page");
    let doomed_id = doomed.id.0.to_string();
    let now = app.clock.now();
    doomed.status = VideoStatus::Deleted;
    doomed.deleted_at = Some(now);
    doomed.updated_at = now;
    app.adapters
        .catalog
        .upsert_videos(&[doomed])
        .await
        .expect("upsert");
    app.refresh().await;

    let cursor = first["next_cursor"].as_str().expect("cursor");
    let mut rest = Vec::new();
    let mut page = app.page(&token, &format!("limit=50&cursor={cursor}")).await;
    rest.extend(ids(&videos_of(&page)));
    while let Some(cursor) = page["next_cursor"].as_str().map(str::to_owned) {
        page = app.page(&token, &format!("limit=50&cursor={cursor}")).await;
        rest.extend(ids(&videos_of(&page)));
    }
    assert!(
        !rest.contains(&doomed_id),
        "a deleted video was served from the session"
    );
    assert_eq!(rest.len(), app.videos.len() - 6);

    let fresh = app.whole_feed(&token_for(Uuid::new_v4()), 50).await;
    assert!(
        !ids(&fresh).contains(&doomed_id),
        "a deleted video was ranked"
    );
    assert_eq!(fresh.len(), app.videos.len() - 1);
}

#[tokio::test]
async fn a_like_raises_engagement_after_the_snapshot_refresh() {
    let app = spawn_app().await;
    let video = app.videos[10].id.0;
    let find = |feed: &[Value]| {
        feed.iter()
            .find(|v| v["id"] == json!(video.to_string()))
            .cloned()
            .expect("the video is in the feed")
    };
    let explained = |token: String| {
        let app = &app;
        async move {
            let mut feed = Vec::new();
            let mut page = app.page(&token, "limit=50&explain=true").await;
            feed.extend(videos_of(&page));
            while let Some(cursor) = page["next_cursor"].as_str().map(str::to_owned) {
                page = app
                    .page(&token, &format!("limit=50&explain=true&cursor={cursor}"))
                    .await;
                feed.extend(videos_of(&page));
            }
            feed
        }
    };
    let before = find(&explained(token_for(Uuid::new_v4())).await);
    assert_eq!(before["like_count"], json!(0));

    let fan = token_for(Uuid::new_v4());
    app.record(&fan, vec![event(video, "view"), event(video, "like")])
        .await;
    // Signals reach feeds through the snapshot, not per request.
    let stale = find(&explained(token_for(Uuid::new_v4())).await);
    assert_eq!(
        stale["signals"]["engagement"],
        before["signals"]["engagement"]
    );

    app.refresh().await;
    let after = find(&explained(token_for(Uuid::new_v4())).await);
    assert_eq!(after["like_count"], json!(1));
    assert_eq!(after["view_count"], json!(1));
    let (b, a) = (
        before["signals"]["engagement"].as_f64().unwrap_or(1.0),
        after["signals"]["engagement"].as_f64().unwrap_or(0.0),
    );
    assert!(a > b, "engagement {b} -> {a}");
    assert!(after["ranking_score"].as_f64() > before["ranking_score"].as_f64());
}

#[tokio::test]
async fn no_token_is_401_before_the_query_is_looked_at() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/reels?limit=999&cursor=junk", None).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "unauthorized");
}
