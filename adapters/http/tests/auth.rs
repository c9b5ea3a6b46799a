//! Bearer authentication: only RS256 tokens from a configured key, with valid claims, get in.

mod common;

use axum::http::{Method, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::num::NonZeroU32;
use uuid::Uuid;
use vrs_adapter_http::RateLimit;

const REELS: &str = "/api/v1/reels?limit=1";

/// The status of `GET /api/v1/reels` with this raw `Authorization` header value.
async fn status_with_header(app: &TestApp, value: &str) -> TestResponse {
    let request = axum::http::Request::builder()
        .uri(REELS)
        .header(header::AUTHORIZATION, value)
        .body(axum::body::Body::empty())
        .expect("request");
    app.send(request).await
}

async fn assert_accepted(app: &TestApp, token: &str, why: &str) {
    let response = app.get(REELS, Some(token)).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{why}: {}",
        response.text()
    );
}

async fn assert_rejected(app: &TestApp, token: &str, why: &str) {
    let response = app.get(REELS, Some(token)).await;
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{why}: {}",
        response.text()
    );
    assert_error(&response, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"), "{why}");
}

fn primary(claims: &Value) -> String {
    let k = &keys().primary;
    sign(claims, k, Some(k.kid))
}

/// `claims` for a fresh user with `field` replaced (or removed when `value` is null).
fn claims_with(field: &str, value: Value) -> Value {
    let mut c = claims(Uuid::new_v4());
    match value {
        Value::Null => {
            c.as_object_mut().map(|o| o.remove(field));
        }
        v => c[field] = v,
    }
    c
}

fn now() -> i64 {
    Utc::now().timestamp()
}

#[tokio::test]
async fn a_valid_rs256_token_is_accepted_on_every_protected_route() {
    let app = spawn_app().await;
    let token = token_for(Uuid::new_v4());
    assert_accepted(&app, &token, "valid token").await;
    let response = app
        .post_json(
            "/api/v1/events",
            Some(&token),
            &json!({"events": [event(app.videos[0].id.0, "view")]}),
        )
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
}

#[tokio::test]
async fn missing_or_malformed_authorization_is_401() {
    let app = spawn_app().await;
    for uri in [REELS, "/api/v1/events"] {
        let method = if uri == REELS {
            Method::GET
        } else {
            Method::POST
        };
        let response = app
            .send(request(
                method,
                uri,
                None,
                Some(("application/json", b"{}".to_vec())),
            ))
            .await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let token = token_for(Uuid::new_v4());
    for value in [
        format!("Basic {token}"),
        "Bearer".to_owned(),
        "Bearer    ".to_owned(),
        token.clone(),
        "Bearer not.a.jwt".to_owned(),
        "Bearer garbage".to_owned(),
    ] {
        let response = status_with_header(&app, &value).await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let app = spawn_app().await;
    let claims = URL_SAFE_NO_PAD.encode(claims(Uuid::new_v4()).to_string());
    for alg in ["none", "None", "NONE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
        assert_rejected(&app, &format!("{header}.{claims}."), alg).await;
        // Some libraries accept a none token that still carries a (meaningless) signature.
        let signed = primary(&json!({}));
        let signature = signed.rsplit('.').next().unwrap_or_default();
        assert_rejected(&app, &format!("{header}.{claims}.{signature}"), alg).await;
    }
}

#[tokio::test]
async fn hs256_is_rejected_including_key_confusion_with_the_public_key() {
    let app = spawn_app().await;
    let claims = claims(Uuid::new_v4());
    let k = &keys().primary;
    // The classic key-confusion attack: HMAC keyed with the server's own public key PEM.
    for secret in [k.public_pem.as_bytes(), b"some shared secret".as_slice()] {
        for kid in [Some(k.kid), None] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = kid.map(str::to_owned);
            let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
                .expect("HS256 token");
            assert_rejected(&app, &token, "HS256").await;
        }
    }
}

#[tokio::test]
async fn other_rsa_algorithms_are_rejected_even_with_a_configured_key() {
    let app = spawn_app().await;
    let k = &keys().primary;
    for alg in [Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        let mut header = Header::new(alg);
        header.kid = Some(k.kid.to_owned());
        let token = jsonwebtoken::encode(&header, &claims(Uuid::new_v4()), &k.encoding_key())
            .expect("token");
        assert_rejected(&app, &token, &format!("{alg:?}")).await;
    }
}

#[tokio::test]
async fn a_forged_or_altered_signature_is_rejected() {
    let app = spawn_app().await;
    let k = keys();
    let c = claims(Uuid::new_v4());
    assert_rejected(
        &app,
        &sign(&c, &k.rogue, Some(k.primary.kid)),
        "rogue key, known kid",
    )
    .await;
    assert_rejected(&app, &sign(&c, &k.rogue, None), "rogue key, no kid").await;
    // A valid token whose payload was swapped for another user's.
    let token = primary(&c);
    let mut parts: Vec<&str> = token.split('.').collect();
    let other = URL_SAFE_NO_PAD.encode(claims(Uuid::new_v4()).to_string());
    parts[1] = &other;
    assert_rejected(&app, &parts.join("."), "altered payload").await;
}

#[tokio::test]
async fn exp_is_required_and_honoured_with_30_seconds_of_leeway() {
    let app = spawn_app().await;
    assert_rejected(&app, &primary(&claims_with("exp", Value::Null)), "no exp").await;
    assert_rejected(
        &app,
        &primary(&claims_with("exp", json!(now() - 120))),
        "expired",
    )
    .await;
    assert_rejected(
        &app,
        &primary(&claims_with("exp", json!("soon"))),
        "exp not a number",
    )
    .await;
    assert_accepted(
        &app,
        &primary(&claims_with("exp", json!(now() - 10))),
        "within leeway",
    )
    .await;
}

#[tokio::test]
async fn nbf_is_honoured_with_30_seconds_of_leeway() {
    let app = spawn_app().await;
    assert_rejected(
        &app,
        &primary(&claims_with("nbf", json!(now() + 120))),
        "not yet valid",
    )
    .await;
    assert_accepted(
        &app,
        &primary(&claims_with("nbf", json!(now() + 10))),
        "within leeway",
    )
    .await;
    assert_accepted(
        &app,
        &primary(&claims_with("nbf", json!(now() - 60))),
        "already valid",
    )
    .await;
}

#[tokio::test]
async fn sub_must_be_a_uuid() {
    let app = spawn_app().await;
    for sub in [Value::Null, json!("alice"), json!(""), json!(42)] {
        assert_rejected(
            &app,
            &primary(&claims_with("sub", sub.clone())),
            &sub.to_string(),
        )
        .await;
    }
}

#[tokio::test]
async fn only_access_tokens_are_accepted() {
    let app = spawn_app().await;
    for token_type in ["refresh", "id", "Access", ""] {
        let c = claims_with("token_type", json!(token_type));
        assert_rejected(&app, &primary(&c), token_type).await;
    }
    assert_accepted(
        &app,
        &primary(&claims_with("token_type", json!("access"))),
        "access",
    )
    .await;
    // The claim is required: a token without it is not taken for an access token.
    assert_rejected(
        &app,
        &primary(&claims_with("token_type", Value::Null)),
        "absent",
    )
    .await;
}

#[tokio::test]
async fn a_configured_issuer_is_required_and_checked() {
    let app = spawn_app_with(Options {
        issuer: Some("https://auth.nova.test".into()),
        ..Options::default()
    })
    .await;
    let ok = claims_with("iss", json!("https://auth.nova.test"));
    assert_accepted(&app, &primary(&ok), "right issuer").await;
    assert_rejected(
        &app,
        &primary(&claims_with("iss", json!("https://evil.test"))),
        "wrong",
    )
    .await;
    assert_rejected(
        &app,
        &primary(&claims_with("iss", Value::Null)),
        "missing issuer",
    )
    .await;
}

#[tokio::test]
async fn a_configured_audience_is_required_and_checked() {
    let app = spawn_app_with(Options {
        audience: Some("video-ranking".into()),
        ..Options::default()
    })
    .await;
    assert_accepted(
        &app,
        &primary(&claims_with("aud", json!("video-ranking"))),
        "right",
    )
    .await;
    let listed = claims_with("aud", json!(["other-service", "video-ranking"]));
    assert_accepted(&app, &primary(&listed), "listed among several").await;
    assert_rejected(
        &app,
        &primary(&claims_with("aud", json!("billing"))),
        "wrong",
    )
    .await;
    assert_rejected(
        &app,
        &primary(&claims_with("aud", Value::Null)),
        "missing audience",
    )
    .await;
}

#[tokio::test]
async fn without_configured_issuer_or_audience_neither_is_checked() {
    let app = spawn_app().await;
    let mut c = claims(Uuid::new_v4());
    c["iss"] = json!("anyone");
    c["aud"] = json!("anything");
    assert_accepted(&app, &primary(&c), "unchecked iss and aud").await;
}

#[tokio::test]
async fn rotated_keys_are_selected_by_kid() {
    let app = spawn_app().await;
    let k = keys();
    let c = claims(Uuid::new_v4());
    assert_accepted(&app, &sign(&c, &k.primary, Some(k.primary.kid)), "primary").await;
    assert_accepted(
        &app,
        &sign(&c, &k.secondary, Some(k.secondary.kid)),
        "secondary",
    )
    .await;
    assert_rejected(&app, &sign(&c, &k.primary, Some("retired")), "unknown kid").await;
    // The kid picks the key: a signature by the other configured key does not verify.
    assert_rejected(
        &app,
        &sign(&c, &k.secondary, Some(k.primary.kid)),
        "kid mismatch",
    )
    .await;
}

#[tokio::test]
async fn a_user_over_the_rate_limit_gets_429_with_retry_after() {
    let app = spawn_app_with(Options {
        rate_limit: Some(RateLimit {
            per_second: NonZeroU32::MIN,
            burst: NonZeroU32::new(2).expect("non-zero"),
        }),
        ..Options::default()
    })
    .await;
    let token = token_for(Uuid::new_v4());
    for _ in 0..2 {
        assert_accepted(&app, &token, "within burst").await;
    }
    let response = app.get(REELS, Some(&token)).await;
    assert_error(&response, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("numeric Retry-After");
    assert!(retry_after >= 1);
    // The limit is per user: somebody else is still served.
    assert_accepted(&app, &token_for(Uuid::new_v4()), "another user").await;
}

#[tokio::test]
async fn admin_routes_need_the_admin_role() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let call = |token: Option<String>| {
        let router = app.router.clone();
        async move {
            send(
                &router,
                request(
                    Method::GET,
                    "/api/v1/admin/ranking/weights",
                    token.as_deref(),
                    None,
                ),
            )
            .await
        }
    };

    assert_error(&call(None).await, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_error(
        &call(Some(token_for(user))).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let mut c = claims(user);
    c["role"] = json!("editor");
    assert_error(
        &call(Some(primary(&c))).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    for (field, value) in [
        ("role", json!("admin")),
        ("roles", json!(["viewer", "admin"])),
    ] {
        let mut c = claims(user);
        c[field] = value;
        let response = call(Some(primary(&c))).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{field}: {}",
            response.text()
        );
        assert_eq!(response.json()["active"]["active"], json!(true));
    }
}
