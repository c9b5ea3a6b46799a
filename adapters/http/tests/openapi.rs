//! The OpenAPI document and the router must describe the same API: every documented operation is
//! served, nothing else is, and the documented schemas carry the contract's fields.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use uuid::Uuid;

/// The routes of the contract, as (method, path).
const CONTRACT: [(&str, &str); 19] = [
    ("get", "/api/v1/reels"),
    ("post", "/api/v1/events"),
    ("post", "/api/v1/admin/cache-warmup"),
    ("post", "/api/v1/admin/cache/invalidate"),
    ("get", "/api/v1/admin/ranking/weights"),
    ("put", "/api/v1/admin/ranking/weights"),
    ("get", "/api/v1/admin/models"),
    ("post", "/api/v1/admin/models/{version}/activate"),
    ("post", "/api/v1/admin/models/rollback"),
    ("get", "/api/v1/admin/experiments"),
    ("post", "/api/v1/admin/experiments"),
    ("post", "/api/v1/admin/experiments/{id}/start"),
    ("post", "/api/v1/admin/experiments/{id}/stop"),
    ("get", "/api/v1/admin/experiments/{id}/results"),
    ("get", "/api/v1/health"),
    ("get", "/api/v1/health/ready"),
    ("get", "/api/v1/health/live"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
];
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn served_document(app: &TestApp) -> Value {
    let response = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    response.json()
}

/// Every (method, path) the document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                ops.insert((method.to_owned(), path.clone()));
            }
        }
    }
    ops
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.to_ascii_uppercase().as_bytes()).expect("method")
}

/// Calls an operation the way a client would: with a token (an admin's for admin routes) and,
/// for POST and PUT, a valid JSON body.
async fn call(app: &TestApp, method_name: &str, path: &str, token: Option<&str>) -> TestResponse {
    let body = match path {
        "/api/v1/events" => json!({"events": [event(app.videos[0].id.0, "view")]}),
        "/api/v1/admin/cache-warmup" => json!({"user_count": 10, "batch_size": 2}),
        "/api/v1/admin/cache/invalidate" => json!({"all": true}),
        "/api/v1/admin/models/{version}/activate" => json!({"force": false}),
        "/api/v1/admin/experiments" => {
            json!({"name": format!("created-{}", Uuid::new_v4().simple()),
            "variants": [{"name": "control", "share": 0.5}, {"name": "treatment", "share": 0.5,
            "weights": {"freshness": 0.2, "completion": 0.2, "engagement": 0.2, "affinity": 0.2,
            "model": 0.2}}]})
        }
        "/api/v1/admin/ranking/weights" => json!({"freshness": 0.25, "completion": 0.25,
            "engagement": 0.25, "affinity": 0.25, "model": 0.0}),
        _ => Value::Null,
    };
    let body = matches!(method_name, "post" | "put")
        .then(|| ("application/json", body.to_string().into_bytes()));
    let admin = token.map(|_| {
        let mut c = claims(Uuid::new_v4());
        c["role"] = json!("admin");
        let k = &keys().primary;
        sign(&c, k, Some(k.kid))
    });
    let token = if path.starts_with("/api/v1/admin/") {
        admin.as_deref()
    } else {
        token
    };
    // A registered version stands in for the path parameter.
    let path = path.replace("{version}", "v1").replace("{id}", "e1");
    app.send(request(method(method_name), &path, token, body))
        .await
}

#[tokio::test]
async fn the_document_is_openapi_3_and_matches_the_generated_one() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(doc["info"]["version"].is_string());
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("the document parses as OpenAPI");
    let (_, generated) = vrs_adapter_http::router::routes();
    assert_eq!(
        serde_json::to_value(&parsed).expect("serialize"),
        serde_json::to_value(&generated).expect("serialize")
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT (RS256)"})
    );
}

#[tokio::test]
async fn the_document_lists_exactly_the_contract_routes() {
    let app = spawn_app().await;
    let documented = operations(&served_document(&app).await);
    let contract: BTreeSet<(String, String)> = CONTRACT
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, contract);
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_no_other_method_is() {
    let app = spawn_app().await;
    // Two loadable versions, v2 active after v1: a rollback and an activation both succeed.
    let now = vrs_application::ports::Clock::now(app.clock.as_ref());
    let artifact = vrs_application::model::fit(&[], Default::default(), now).encode();
    let registry = app.adapters.model_registry.clone();
    for v in ["v1", "v2"] {
        let registry = registry.as_ref() as &dyn vrs_application::ports::ModelRegistry;
        assert!(
            registry
                .register(v, &json!({}), &artifact, now)
                .await
                .expect("register")
        );
        assert!(registry.activate(v, now).await.expect("activate"));
    }
    // A draft experiment named e1: started, then stopped (POST start sorts before stop).
    let e1 = vrs_domain::ExperimentDraft {
        name: "e1".into(),
        variants: vec![
            vrs_domain::VariantDraft {
                name: "control".into(),
                share: 0.5,
                ..Default::default()
            },
            vrs_domain::VariantDraft {
                name: "treatment".into(),
                share: 0.5,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
    .validate(Uuid::new_v4(), now)
    .expect("valid");
    assert!(app.ports.experiments.create(&e1).await.expect("create"));
    let doc = served_document(&app).await;
    let token = token_for(Uuid::new_v4());
    let documented = operations(&doc);
    assert!(!documented.is_empty());
    for (method_name, path) in &documented {
        let response = call(&app, method_name, path, Some(&token)).await;
        assert!(
            response.status.is_success(),
            "{method_name} {path} is documented but answers {}: {}",
            response.status,
            response.text()
        );
        for other in METHODS {
            if !documented.contains(&(other.to_owned(), path.clone())) {
                let response = call(&app, other, path, Some(&token)).await;
                assert_eq!(
                    response.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{other} {path} is served but not documented"
                );
            }
        }
    }
}

#[tokio::test]
async fn documented_security_matches_what_the_router_enforces() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    for (method_name, path) in operations(&doc) {
        let secured = doc["paths"][&path][&method_name]
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty());
        let response = call(&app, &method_name, &path, None).await;
        assert_eq!(
            response.status == StatusCode::UNAUTHORIZED,
            secured,
            "{method_name} {path}: documented secured={secured}, answered {}",
            response.status
        );
        if secured {
            let codes = doc["paths"][&path][&method_name]["responses"]
                .as_object()
                .expect("responses");
            assert!(
                codes.contains_key("401"),
                "{method_name} {path} omits its 401"
            );
        }
    }
}

#[tokio::test]
async fn undocumented_paths_are_404() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    let doc = served_document(&app).await;
    let mut probes: Vec<String> = [
        "/api/v1/admin",
        "/api/v1/openapi.yaml",
        "/api/v1/docs",
        "/swagger-ui",
        "/api/v1/videos",
        "/health",
    ]
    .iter()
    .map(|p| (*p).to_owned())
    .collect();
    for path in doc["paths"].as_object().expect("paths").keys() {
        probes.push(format!("{path}/extra"));
        probes.push(format!("{path}/"));
        probes.push(path.to_uppercase());
    }
    for path in probes {
        for method_name in ["get", "post"] {
            let response = call(&app, method_name, &path, Some(&token)).await;
            assert_error(&response, StatusCode::NOT_FOUND, "not_found");
        }
    }
}

/// Follows a `#/components/schemas/...` reference.
fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "schema {name} is missing");
    s
}

fn properties(doc: &Value, name: &str) -> BTreeSet<String> {
    schema(doc, name)["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has no properties"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Every `$ref` anywhere in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn documented_schemas_carry_the_contract_fields() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    let reels = &doc["paths"]["/api/v1/reels"]["get"];
    assert_eq!(
        reels["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        json!("#/components/schemas/ReelsResponse")
    );
    assert!(
        reels["responses"]["200"]["headers"]
            .get("X-Feed-Cache")
            .is_some()
    );
    let params: BTreeSet<String> = reels["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == json!("query"))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(params, set(&["limit", "cursor", "explain"]));

    assert_eq!(
        properties(&doc, "ReelsResponse"),
        set(&["videos", "experiments", "next_cursor", "has_more"])
    );
    assert_eq!(
        schema(&doc, "ReelsResponse")["properties"]["videos"]["items"]["$ref"],
        json!("#/components/schemas/ReelVideo")
    );
    assert_eq!(
        properties(&doc, "ReelVideo"),
        set(&[
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
            "signals",
        ])
    );
    let five = ["freshness", "completion", "engagement", "affinity", "model"];
    let mut signals = five.to_vec();
    signals.extend([
        "raw_engagement",
        "raw_completion",
        "weights",
        "contributions",
    ]);
    assert_eq!(properties(&doc, "SignalsDto"), set(&signals));
    assert_eq!(properties(&doc, "SignalSetDto"), set(&five));

    assert_eq!(properties(&doc, "EventsRequest"), set(&["events"]));
    assert_eq!(
        properties(&doc, "EventDto"),
        set(&[
            "event_id",
            "video_id",
            "type",
            "watch_ms",
            "completion",
            "occurred_at"
        ])
    );
    let types = schema(&doc, "EventTypeDto")["enum"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(types.len(), 11, "{types:?}");
    assert_eq!(
        properties(&doc, "EventsAccepted"),
        set(&["accepted", "duplicates", "repeated_reactions"])
    );
    assert_eq!(
        properties(&doc, "HealthResponse"),
        set(&["status", "version", "checks"])
    );
    assert_eq!(properties(&doc, "ErrorBody"), set(&["error"]));
    assert_eq!(
        properties(&doc, "ErrorDetail"),
        set(&["code", "message", "details"])
    );

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("odd $ref {r}"));
        schema(&doc, name);
    }
}

#[tokio::test]
async fn documented_error_responses_use_the_error_body() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    for (method_name, path) in operations(&doc) {
        let responses = doc["paths"][&path][&method_name]["responses"]
            .as_object()
            .expect("responses");
        for (code, response) in responses {
            if code.starts_with('2') {
                continue;
            }
            // By contract, readiness answers 503 with the health body.
            let expected = if path == "/api/v1/health/ready" && code == "503" {
                "#/components/schemas/HealthResponse"
            } else {
                "#/components/schemas/ErrorBody"
            };
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                json!(expected),
                "{method_name} {path} {code}"
            );
        }
    }
}
