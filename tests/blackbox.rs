//! Black-box tests: the built binary, started like an operator would, used like a client would.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::{Service, small_demo_env};

struct Client {
    http: reqwest::Client,
    token: String,
}

impl Client {
    fn new(token: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            token,
        }
    }

    async fn reels(&self, svc: &Service, query: &str) -> (StatusCode, Option<String>, Value) {
        let res = self
            .http
            .get(svc.url(&format!("/api/v1/reels{query}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET reels: {e}"));
        let status = res.status();
        let cache = res
            .headers()
            .get("x-feed-cache")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res.json::<Value>().await.unwrap_or(Value::Null);
        (status, cache, body)
    }

    async fn events(&self, svc: &Service, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(svc.url("/api/v1/events"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST events: {e}"));
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["videos"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn cursor(page: &Value) -> Option<String> {
    page["next_cursor"].as_str().map(str::to_owned)
}

fn event(video: &str, kind: &str) -> Value {
    json!({"event_id": uuid::Uuid::new_v4(), "video_id": video, "type": kind, "completion": 1.0})
}

#[tokio::test]
async fn a_client_pages_through_a_personalized_feed_and_the_feed_reacts_to_events() {
    let svc = Service::start(&small_demo_env());
    let alice = Client::new(svc.token(&["--demo-user", "1"]));

    // Rule 1: within one session, pages reached through next_cursor never repeat a video.
    let (status, cache, first) = alice.reels(&svc, "?limit=20").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(cache.as_deref(), Some("miss"));
    assert_eq!(ids(&first).len(), 20);
    assert_eq!(first["has_more"], json!(true));
    let mut seen: HashSet<String> = ids(&first).into_iter().collect();
    let mut next = cursor(&first);
    let mut pages = vec![first.clone()];
    while let Some(c) = next.take() {
        let (status, _, page) = alice.reels(&svc, &format!("?limit=50&cursor={c}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for id in ids(&page) {
            assert!(
                seen.insert(id.clone()),
                "video {id} repeated within one session"
            );
        }
        assert_eq!(page["has_more"], json!(page["next_cursor"].is_string()));
        next = cursor(&page);
        pages.push(page);
        assert!(pages.len() < 50, "the session never ends");
    }
    assert!(
        seen.len() > 100,
        "a session holds a full ranking, got {}",
        seen.len()
    );

    // Rule 3: a new first page does not repeat what was just served while unserved candidates
    // remain, and ranks a new session because the cached one is used up.
    let (status, _, again) = alice.reels(&svc, "?limit=20").await;
    assert_eq!(status, StatusCode::OK);
    for id in ids(&again) {
        assert!(!seen.contains(&id), "video {id} served again within 24 h");
    }
    // ...and the next first page is served from the session just ranked.
    let (_, cache, third) = alice.reels(&svc, "?limit=20").await;
    assert_eq!(cache.as_deref(), Some("hit"));
    let again_ids: HashSet<String> = ids(&again).into_iter().collect();
    assert!(ids(&third).iter().all(|id| !again_ids.contains(id)));

    // Rule 4: the same cursor twice gives the same page.
    let c = cursor(&third).unwrap_or_else(|| panic!("third page has a cursor: {third}"));
    let (_, _, p1) = alice.reels(&svc, &format!("?limit=10&cursor={c}")).await;
    let (_, _, p2) = alice.reels(&svc, &format!("?limit=10&cursor={c}")).await;
    assert_eq!(ids(&p1), ids(&p2));
    assert_eq!(ids(&p1).len(), 10);

    // Rule 2: a watched video never appears in a page served after the event was accepted.
    let watched = ids(&p1)[0].clone();
    let (status, body) = alice
        .events(&svc, json!({"events": [event(&watched, "complete")]}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 1, "duplicates": 0, "repeated_reactions": []})
    );
    let (_, _, p3) = alice.reels(&svc, &format!("?limit=10&cursor={c}")).await;
    assert!(!ids(&p3).contains(&watched), "watched video served again");
    // The rest of the page moves up; diversity may hold one back for a later slot.
    assert_eq!(ids(&p3)[0], ids(&p1)[1], "{p3}");
    let kept = ids(&p3).iter().filter(|id| ids(&p1).contains(id)).count();
    assert!(kept >= 8, "the page is mostly the same: {p1} then {p3}");

    // Events feed the signals: likes from other users show up after the next snapshot refresh.
    let liked = ids(&p3)[0].clone();
    let likes_before = p3["videos"][0]["like_count"].as_u64().unwrap_or(0);
    for n in 2..=4 {
        let other = Client::new(svc.token(&["--demo-user", &n.to_string()]));
        let (status, body) = other
            .events(&svc, json!({"events": [event(&liked, "like")]}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, _, page) = alice.reels(&svc, &format!("?limit=10&cursor={c}")).await;
        let now = page["videos"][0]["like_count"].as_u64().unwrap_or(0);
        if page["videos"][0]["id"] == json!(liked) && now == likes_before + 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "likes never reached the feed (still {now})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Client {
    async fn admin(
        &self,
        svc: &Service,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, svc.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn the_embedded_demo_trains_its_model_in_the_background_and_the_registry_answers() {
    let svc = Service::start(&small_demo_env());
    let admin = Client::new(svc.token(&["--demo-user", "1", "--admin"]));
    let deadline = Instant::now() + Duration::from_secs(90);
    let version = loop {
        let (status, body) = admin
            .admin(&svc, reqwest::Method::GET, "/api/v1/admin/models", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Registered, then activated: a listing between the two shows it inactive for a moment.
        if let Some(m) = body["models"]
            .as_array()
            .and_then(|m| m.first())
            .filter(|m| m["is_active"] == json!(true) || Instant::now() >= deadline)
        {
            assert_eq!(
                m["is_active"],
                json!(true),
                "the first version goes live: {body}"
            );
            let ndcg = m["performance_metrics"]["ndcg_at_10"]
                .as_f64()
                .unwrap_or(-1.0);
            assert!(
                (0.0..=1.0).contains(&ndcg),
                "offline NDCG is stored: {body}"
            );
            assert!(m["artifact_bytes"].as_u64() > Some(1_000), "{body}");
            break m["version"].as_str().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "no model was trained: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // The next snapshot refresh loads it: new sessions rank with the model signal.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 100;
    loop {
        n += 1;
        let user = Client::new(svc.token(&["--demo-user", &n.to_string()]));
        let (status, _, page) = user.reels(&svc, "?limit=10&explain=true").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let weight = page["videos"][0]["signals"]["weights"]["model"]
            .as_f64()
            .unwrap_or(0.0);
        if weight > 0.0 {
            let model = page["videos"][0]["signals"]["model"]
                .as_f64()
                .unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&model), "{page}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the model signal never joined: {page}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Inferences are counted per version (flushed at each refresh).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = admin
            .admin(&svc, reqwest::Method::GET, "/api/v1/admin/models", None)
            .await;
        if body["models"][0]["inference_count"].as_u64() > Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "inferences never counted: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The registry's answers, as JSON errors where they refuse.
    let path = format!("/api/v1/admin/models/{version}/activate");
    let (status, body) = admin.admin(&svc, reqwest::Method::POST, &path, None).await;
    assert_eq!(
        (status, body["active"].clone()),
        (StatusCode::OK, json!(version)),
        "{body}"
    );
    let (status, body) = admin
        .admin(
            &svc,
            reqwest::Method::POST,
            "/api/v1/admin/models/nope/activate",
            Some("{}"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], json!("unknown_model"), "{body}");
    let (status, body) = admin
        .admin(
            &svc,
            reqwest::Method::POST,
            &path,
            Some(r#"{"force":"yes"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = admin
        .admin(&svc, reqwest::Method::POST, &path, Some("{not json"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = admin
        .admin(
            &svc,
            reqwest::Method::POST,
            "/api/v1/admin/models/rollback",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "one version only: {body}");
    // Not for non-admins.
    let user = Client::new(svc.token(&["--demo-user", "2"]));
    let (status, _) = user
        .admin(&svc, reqwest::Method::GET, "/api/v1/admin/models", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Every video id and creator id of a session, paging through it from `first`.
async fn whole_session(client: &Client, svc: &Service, first: &Value) -> Vec<(String, String)> {
    let mut items = Vec::new();
    let mut page = first.clone();
    loop {
        for v in page["videos"].as_array().into_iter().flatten() {
            items.push((
                v["id"].as_str().unwrap_or_default().to_owned(),
                v["creator_id"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        let Some(c) = cursor(&page) else { break };
        let (status, _, next) = client.reels(svc, &format!("?limit=50&cursor={c}")).await;
        assert_eq!(status, StatusCode::OK, "{next}");
        page = next;
        assert!(items.len() < 5_000, "the session never ends");
    }
    items
}

#[tokio::test]
async fn not_interested_and_hide_creator_are_hard_filters_from_the_next_page_on() {
    let svc = Service::start(&small_demo_env());
    let bob = Client::new(svc.token(&["--demo-user", "7"]));
    let (status, _, first) = bob.reels(&svc, "?limit=10").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let c = cursor(&first).unwrap_or_else(|| panic!("a cursor: {first}"));
    let (_, _, page) = bob.reels(&svc, &format!("?limit=20&cursor={c}")).await;
    let videos = page["videos"].as_array().cloned().unwrap_or_default();
    assert_eq!(videos.len(), 20, "{page}");
    let dismissed = videos[0]["id"].as_str().unwrap_or_default().to_owned();
    // A creator with more videos ahead in the session, so hiding them visibly removes some.
    let session = whole_session(&bob, &svc, &first).await;
    let creator_counts = session.iter().fold(
        std::collections::HashMap::<&str, usize>::new(),
        |mut m, (_, c)| {
            *m.entry(c.as_str()).or_default() += 1;
            m
        },
    );
    let (hidden_video, hidden_creator) = videos[1..]
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap_or_default().to_owned(),
                v["creator_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .max_by_key(|(_, c)| creator_counts.get(c.as_str()).copied().unwrap_or(0))
        .unwrap_or_default();
    assert!(
        creator_counts
            .get(hidden_creator.as_str())
            .copied()
            .unwrap_or(0)
            >= 2,
        "the session has a creator with several videos: {creator_counts:?}"
    );
    let (status, body) = bob
        .events(
            &svc,
            json!({"events": [
                event(&dismissed, "not_interested"),
                event(&hidden_video, "hide_creator"),
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], json!(2), "{body}");

    // The same cursor (a cached session), the rest of the session, a new first page, and a
    // session ranked anew: none has the video or anything of the creator.
    let (_, cache, again) = bob.reels(&svc, &format!("?limit=20&cursor={c}")).await;
    assert_eq!(cache.as_deref(), Some("hit"));
    let check = |items: &[(String, String)], what: &str| {
        for (video, creator) in items {
            assert_ne!(video, &dismissed, "{what}: a video marked not interested");
            assert_ne!(
                creator, &hidden_creator,
                "{what}: a hidden creator's video {video}"
            );
        }
        assert!(!items.is_empty(), "{what}: still a feed");
    };
    check(&whole_session(&bob, &svc, &again).await, "cached session");
    let (_, _, fresh) = bob.reels(&svc, "?limit=20").await;
    check(&whole_session(&bob, &svc, &fresh).await, "first pages");
    // Another user still gets them: the filters are per user.
    let carol = Client::new(svc.token(&["--demo-user", "8"]));
    let (_, _, theirs) = carol.reels(&svc, "?limit=20").await;
    let everyone: Vec<(String, String)> = whole_session(&carol, &svc, &theirs).await;
    assert!(
        everyone.iter().any(|(_, c)| c == &hidden_creator),
        "other users still see the creator"
    );
    // A bad type names the accepted ones.
    let (status, body) = bob
        .events(&svc, json!({"events": [event(&dismissed, "hide")]}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("hide_creator"), "{body}");
}

#[tokio::test]
async fn cursors_are_bound_to_their_user_and_tamper_proof() {
    let svc = Service::start(&small_demo_env());
    let alice = Client::new(svc.token(&["--demo-user", "1"]));
    let bob = Client::new(svc.token(&["--user", "7b0b0b0b-0000-4000-8000-000000000000"]));
    let (_, _, page) = alice.reels(&svc, "?limit=5&explain=true").await;
    let c = cursor(&page).unwrap_or_default();
    let signals = &page["videos"][0]["signals"];
    let sum: f64 = ["freshness", "completion", "engagement", "affinity", "model"]
        .iter()
        .map(|s| signals["contributions"][s].as_f64().unwrap_or(f64::NAN))
        .sum();
    let score = page["videos"][0]["ranking_score"]
        .as_f64()
        .unwrap_or(f64::NAN);
    assert!(
        (sum - score).abs() < 1e-9,
        "contributions {sum} add up to the score {score}"
    );

    let (status, _, body) = bob.reels(&svc, &format!("?cursor={c}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], json!("invalid_cursor"));

    let mut tampered = c.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap_or_default();
    let (status, _, body) = alice.reels(&svc, &format!("?cursor={tampered}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], json!("invalid_cursor"));

    // A user without any history still gets a feed (trending + fresh).
    let (status, _, fresh) = bob.reels(&svc, "?limit=10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&fresh).len(), 10);
    let reasons: HashSet<&str> = fresh["videos"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().all(|r| *r == "trending" || *r == "fresh"),
        "{reasons:?}"
    );

    let anonymous = reqwest::get(svc.url("/api/v1/reels")).await;
    let anonymous = anonymous.unwrap_or_else(|e| panic!("GET: {e}"));
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.unwrap_or(Value::Null);
    assert_eq!(body["error"]["code"], json!("unauthorized"));
}

#[tokio::test]
async fn health_metrics_and_openapi_are_served_and_sigterm_stops_cleanly() {
    let svc = Service::start(&small_demo_env());
    let alice = Client::new(svc.token(&["--demo-user", "3"]));
    let (status, _, _) = alice.reels(&svc, "").await;
    assert_eq!(status, StatusCode::OK);

    for path in [
        "/api/v1/health",
        "/api/v1/health/ready",
        "/api/v1/health/live",
    ] {
        let res = reqwest::get(svc.url(path))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(body["status"], json!("ok"), "{path}: {body}");
    }
    let metrics = reqwest::get(svc.url("/metrics")).await;
    let metrics = metrics.unwrap_or_else(|e| panic!("metrics: {e}"));
    let text = metrics.text().await.unwrap_or_default();
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "feed_cache_misses_total",
        "feed_generation_total",
        "feed_generation_success_total",
        "feed_generation_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
    assert!(text.contains(r#"route="/api/v1/reels""#));

    let doc: Value = reqwest::get(svc.url("/api/v1/openapi.json"))
        .await
        .unwrap_or_else(|e| panic!("openapi: {e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(doc["paths"]["/api/v1/reels"]["get"].is_object());

    let status = svc.terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM exit: {status:?}"
    );
}

#[test]
fn production_refuses_to_start_without_keys_naming_the_variable() {
    let out = std::process::Command::new(support::BIN)
        .arg("serve")
        .env_clear()
        .env("APP_ENV", "production")
        .output()
        .unwrap_or_else(|e| panic!("running: {e}"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("JWT_PUBLIC_KEY"), "{stderr}");

    let out = std::process::Command::new(support::BIN)
        .arg("serve")
        .env_clear()
        .env("APP_PORT", "not-a-port")
        .output()
        .unwrap_or_else(|e| panic!("running: {e}"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("APP_PORT"));
}

#[test]
fn evaluate_reports_every_ranker_and_names_a_bad_line() {
    let dir = std::env::temp_dir().join(format!("vrs-evaluate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut train = String::new();
    for user in 1..=30 {
        for item in 1..=20 {
            if (user + item) % 3 == 0 {
                train.push_str(&format!(
                    "{{\"user\": {user}, \"item\": \"v{item}\", \"type\": \"view\", \"ts\": {}}}\n",
                    1_700_000_000 + user * 100 + item
                ));
                if item % 4 == 0 {
                    train.push_str(&format!(
                        "{{\"user\": {user}, \"item\": \"v{item}\", \"type\": \"like\", \"ts\": {}, \"creator\": \"c{}\"}}\n",
                        1_700_000_000 + user * 100 + item,
                        item % 5
                    ));
                }
            }
        }
    }
    let holdout: String = (1..=30)
        .map(|user| format!("{{\"user\": {user}, \"item\": \"v{}\"}}\n", 1 + user % 20))
        .collect();
    let (train_path, holdout_path) = (dir.join("train.jsonl"), dir.join("holdout.jsonl"));
    std::fs::write(&train_path, train).expect("train");
    std::fs::write(&holdout_path, holdout).expect("holdout");
    let run = |train: &std::path::Path| {
        std::process::Command::new(support::BIN)
            .args(["evaluate", "--k", "5", "--format", "json", "--train"])
            .arg(train)
            .arg("--holdout")
            .arg(&holdout_path)
            .env_clear()
            .output()
            .unwrap_or_else(|e| panic!("running: {e}"))
    };
    let out = run(&train_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["k"], json!(5));
    let rankers: Vec<&str> = report["rankers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["ranker"].as_str())
        .collect();
    assert_eq!(
        rankers,
        [
            "pipeline",
            "pipeline_without_model",
            "pipeline_unsmoothed",
            "model",
            "popularity",
            "random"
        ]
    );
    for r in report["rankers"].as_array().into_iter().flatten() {
        for metric in [
            "ndcg",
            "recall",
            "hit_rate",
            "coverage",
            "creator_diversity",
        ] {
            let v = r[metric].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&v), "{metric}: {r}");
        }
    }

    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"user\": 1, \"item\": 2, \"type\": \"view\", \"ts\": 1}\n{\"user\": 1, \"item\": 2, \"type\": \"teleport\", \"ts\": 1}\n").expect("bad");
    let out = run(&bad);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.jsonl:2") && stderr.contains("type"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
