//! The experiment routes: validation naming the field, the life of an experiment, the variant in
//! `explain`, and results.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{Value, json};
use uuid::Uuid;

const EXPERIMENTS: &str = "/api/v1/admin/experiments";

fn definition(name: &str) -> Value {
    json!({
        "name": name,
        "description": "fresher feeds",
        "layer": "ranking",
        "variants": [
            {"name": "control", "share": 0.5},
            {"name": "fresh", "share": 0.5, "weights": {"freshness": 0.6, "completion": 0.1,
                "engagement": 0.1, "affinity": 0.1, "model": 0.1}}
        ]
    })
}

async fn create(app: &TestApp, admin: &str, body: &Value) -> TestResponse {
    app.post_json(EXPERIMENTS, Some(admin), body).await
}

#[tokio::test]
async fn every_experiment_route_needs_the_admin_role() {
    let app = spawn_app().await;
    let viewer = token_for(Uuid::new_v4());
    for (method, uri) in [
        (Method::GET, EXPERIMENTS.to_owned()),
        (Method::POST, EXPERIMENTS.to_owned()),
        (Method::POST, format!("{EXPERIMENTS}/x/start")),
        (Method::POST, format!("{EXPERIMENTS}/x/stop")),
        (Method::GET, format!("{EXPERIMENTS}/x/results")),
    ] {
        let body = || Some(("application/json", b"{}".to_vec()));
        let anonymous = app.send(request(method.clone(), &uri, None, body())).await;
        assert_error(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
        let viewer = app
            .send(request(method.clone(), &uri, Some(&viewer), body()))
            .await;
        assert_error(&viewer, StatusCode::FORBIDDEN, "forbidden");
    }
}

#[tokio::test]
async fn invalid_definitions_are_422_naming_the_field() {
    let app = spawn_app().await;
    let admin = admin_token_for(Uuid::new_v4());
    let with = |path: &[&str], value: Value| {
        let mut body = definition("ok-name");
        let mut target = &mut body;
        for (i, key) in path.iter().enumerate() {
            if i + 1 == path.len() {
                target[*key] = value.clone();
                break;
            }
            target = match key.parse::<usize>() {
                Ok(index) => &mut target[index],
                Err(_) => &mut target[*key],
            };
        }
        body
    };
    let cases = [
        (with(&["name"], json!("has space")), "name"),
        (with(&["layer"], json!("")), "layer"),
        (
            with(&["variants"], json!([{"name": "only", "share": 1.0}])),
            "variants",
        ),
        (
            with(&["variants", "1", "name"], json!("control")),
            "variants[1].name",
        ),
        (
            with(&["variants", "1", "share"], json!(0.00001)),
            "variants[1].share",
        ),
        (
            with(&["variants", "0", "share"], json!(-0.5)),
            "variants[0].share",
        ),
        (with(&["variants", "1", "share"], json!(0.75)), "variants"),
        (
            with(&["variants", "1", "weights", "freshness"], json!(0.9)),
            "variants[1].weights",
        ),
        (
            with(&["variants", "1", "model_version"], json!("no-such-model")),
            "variants[1].model_version",
        ),
    ];
    for (body, field) in cases {
        let response = create(&app, &admin, &body).await;
        assert_error(
            &response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_experiment",
        );
        assert_eq!(
            response.json()["error"]["details"]["field"],
            json!(field),
            "{body}: {}",
            response.text()
        );
    }
    // Wrong shapes are 422 too; broken JSON is 400.
    for body in [
        json!([1, 2]),
        json!({"name": "x"}),
        with(&["extra"], json!(1)),
    ] {
        let response = create(&app, &admin, &body).await;
        assert_error(
            &response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_experiment",
        );
    }
    let broken = app
        .send(request(
            Method::POST,
            EXPERIMENTS,
            Some(&admin),
            Some(("application/json", b"{\"name\":".to_vec())),
        ))
        .await;
    assert_error(&broken, StatusCode::BAD_REQUEST, "invalid_json");
    // Nothing invalid was stored.
    let listed = app.get(EXPERIMENTS, Some(&admin)).await.json();
    assert_eq!(listed["experiments"], json!([]));
}

#[tokio::test]
async fn an_experiment_runs_its_course_and_the_feed_shows_the_variant() {
    let app = spawn_app().await;
    let admin = admin_token_for(Uuid::new_v4());
    let created = create(&app, &admin, &definition("fresh-feeds")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let experiment = created.json();
    assert_eq!(experiment["state"], "draft");
    assert_eq!(
        experiment["variants"][1]["weights"]["freshness"],
        json!(0.6)
    );
    let id = experiment["id"].as_str().expect("id").to_owned();

    let taken = create(&app, &admin, &definition("fresh-feeds")).await;
    assert_error(&taken, StatusCode::CONFLICT, "experiment_conflict");
    let stop_draft = app
        .post_json(
            &format!("{EXPERIMENTS}/{id}/stop"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_error(&stop_draft, StatusCode::CONFLICT, "experiment_conflict");
    let unknown = app
        .post_json(
            &format!("{EXPERIMENTS}/nope/start"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "unknown_experiment");

    // Started by name; a second one in the same layer is refused.
    let started = app
        .post_json(
            &format!("{EXPERIMENTS}/fresh-feeds/start"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    assert_eq!(started.json()["state"], "running");
    create(&app, &admin, &definition("same-layer")).await;
    let busy = app
        .post_json(
            &format!("{EXPERIMENTS}/same-layer/start"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_error(&busy, StatusCode::CONFLICT, "experiment_conflict");
    assert!(busy.text().contains("fresh-feeds"), "{}", busy.text());

    app.refresh().await;
    let user = Uuid::new_v4();
    let token = token_for(user);
    let explained = app.page(&token, "limit=5&explain=true").await;
    let assigned = &explained["experiments"][0];
    assert_eq!(assigned["experiment"], "fresh-feeds");
    assert_eq!(assigned["experiment_id"], json!(id));
    let variant = assigned["variant"].as_str().expect("variant").to_owned();
    assert!(variant == "control" || variant == "fresh");
    let cursor = explained["next_cursor"].as_str().expect("cursor");
    let next = app
        .page(&token, &format!("limit=5&explain=true&cursor={cursor}"))
        .await;
    assert_eq!(
        next["experiments"][0]["variant"],
        json!(variant),
        "one variant per session"
    );
    let plain = app.page(&token, "limit=5").await;
    assert!(plain.get("experiments").is_none(), "only with explain");

    app.state
        .feed
        .exposure_log()
        .flush(std::time::Duration::from_secs(5))
        .await;
    let results = app
        .get(&format!("{EXPERIMENTS}/{id}/results"), Some(&admin))
        .await;
    assert_eq!(results.status, StatusCode::OK, "{}", results.text());
    let results = results.json();
    assert_eq!(results["experiment"]["name"], "fresh-feeds");
    let variants = results["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), 2);
    assert_eq!(variants[0]["is_control"], json!(true));
    let mine = variants
        .iter()
        .find(|v| v["variant"] == json!(variant))
        .expect("the user's variant");
    assert_eq!(mine["users"], json!(1));
    assert_eq!(
        mine["exposures"],
        json!(15),
        "three pages of five: the third reuses the session, past what it served"
    );
    let metrics: Vec<&str> = mine["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .filter_map(|m| m["metric"].as_str())
        .collect();
    assert_eq!(
        metrics,
        [
            "like_rate",
            "share_rate",
            "completion_rate",
            "skip_rate",
            "watch_ms_per_exposure"
        ]
    );
    assert!(results["sample_ratio"]["mismatch"].is_boolean());

    let stopped = app
        .post_json(
            &format!("{EXPERIMENTS}/{id}/stop"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(stopped.json()["state"], "stopped");
    let restart = app
        .post_json(
            &format!("{EXPERIMENTS}/{id}/start"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_error(&restart, StatusCode::CONFLICT, "experiment_conflict");
    app.refresh().await;
    let after = app
        .page(&token_for(Uuid::new_v4()), "limit=5&explain=true")
        .await;
    assert_eq!(
        after["experiments"],
        json!([]),
        "new sessions get the default"
    );
}
