//! The performance floor of a cached feed page: a bare axum route doing only the work no feed
//! service can avoid for one: verify an RS256 access token (jsonwebtoken, aws-lc backend), one
//! Redis GET of a 200-item session (the size of the service's binary session encoding), and a
//! 40-item page serialized to about 16 KB of JSON. `scripts/bench-floor.sh` runs it next to the
//! service, so the service's figures are read as ratios to this one, measured in the same run.
//!
//!   cargo run --release -p video-ranking-service --example floor -- PORT REDIS_URL PUBLIC_KEY_PEM

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fred::prelude::{Builder, Client, ClientLike, Config, KeysInterface};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Serialize;
use std::sync::Arc;

/// Bytes per session item of the service's encoding (ids, score, reason, five signals).
const ITEM_BYTES: usize = 16 + 16 + 8 + 1 + 5 * 4;
const SESSION_ITEMS: usize = 200;
const PAGE_ITEMS: usize = 40;
const SESSION_KEY: &str = "floor:session";

struct Floor {
    key: DecodingKey,
    validation: Validation,
    redis: Client,
}

#[derive(Serialize)]
struct Video {
    id: uuid::Uuid,
    creator_id: uuid::Uuid,
    title: String,
    duration_seconds: u32,
    thumbnail_url: String,
    playback_url: String,
    published_at: &'static str,
    view_count: u64,
    like_count: u64,
    completion_rate: f64,
    score: f64,
    reason: &'static str,
}

#[derive(Serialize)]
struct Page {
    videos: Vec<Video>,
    next_cursor: &'static str,
    has_more: bool,
}

#[derive(serde::Deserialize)]
struct Claims {
    #[allow(dead_code)]
    sub: String,
}

async fn page(State(floor): State<Arc<Floor>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if jsonwebtoken::decode::<Claims>(token, &floor.key, &floor.validation).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let session: Option<Vec<u8>> = match floor.redis.get(SESSION_KEY).await {
        Ok(s) => s,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let Some(session) = session else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let videos = session
        .chunks_exact(ITEM_BYTES)
        .take(PAGE_ITEMS)
        .map(|item| {
            let id = uuid::Uuid::from_slice(&item[..16]).unwrap_or_default();
            let creator_id = uuid::Uuid::from_slice(&item[16..32]).unwrap_or_default();
            let score = f64::from_le_bytes(item[32..40].try_into().unwrap_or_default());
            Video {
                id,
                creator_id,
                title: format!("Video {id}"),
                duration_seconds: 30,
                thumbnail_url: format!("https://cdn.nova.example/thumbnails/{id}.jpg"),
                playback_url: format!("https://cdn.nova.example/videos/{id}.m3u8"),
                published_at: "2026-12-01T10:00:00Z",
                view_count: 1234,
                like_count: 56,
                completion_rate: 0.42,
                score,
                reason: "trending",
            }
        })
        .collect();
    let body = Page {
        videos,
        next_cursor: "eyJzIjoiZmxvb3IifQ.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmUtc2ln",
        has_more: true,
    };
    axum::Json(body).into_response()
}

/// The service's allocator, so the two are compared on their work alone.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, redis_url, public_key] = args.as_slice() else {
        anyhow::bail!("usage: floor PORT REDIS_URL PUBLIC_KEY_PEM");
    };
    let pem = std::fs::read(public_key)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let redis = Builder::from_config(Config::from_url(redis_url)?).build()?;
    redis.init().await?;
    let session: Vec<u8> = (0..SESSION_ITEMS * ITEM_BYTES)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let () = redis.set(SESSION_KEY, session, None, None, false).await?;
    let floor = Arc::new(Floor {
        key: DecodingKey::from_rsa_pem(&pem)?,
        validation,
        redis,
    });
    let app = Router::new().route("/floor", get(page)).with_state(floor);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    println!("floor listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
