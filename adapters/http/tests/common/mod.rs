//! Shared plumbing of the HTTP black-box tests: an in-process app on the memory adapters, RSA test
//! keys, token minting and request helpers.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use async_trait::async_trait;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use chrono::{Duration, Utc};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;
use uuid::Uuid;
use vrs_adapter_http::auth::{AuthFailureLimit, AuthFailureLimiter, UserRateLimiter};
use vrs_adapter_http::{
    AppState, AuthConfig, Authenticator, CursorCodec, HttpConfig, RateLimit, router,
};
use vrs_adapter_memory::{BaseUrlMediaUrls, ManualClock, MemoryAdapters};
use vrs_application::demo::{self, DemoCatalog};
use vrs_application::ports::{FeedCache, HealthProbe, PortError, Ports};
use vrs_application::{
    AdminService, CacheWarmer, CandidateSnapshot, EngagementService, FeedConfig, FeedService,
    HealthService, SnapshotRefresher,
};
use vrs_domain::{CreatorId, FeedSession, SessionId, UserId, Video, VideoId, VideoStatus};

/// Media URLs of every test video start with this.
pub const CDN: &str = "https://cdn.test";
/// The cursor signing key of every test app.
pub const CURSOR_KEY: &[u8] = b"test cursor key, 32 bytes long!!";

/// One RSA key pair, PEM-encoded.
#[derive(Debug)]
pub struct TestKey {
    pub kid: &'static str,
    pub private_pem: String,
    pub public_pem: String,
}

impl TestKey {
    fn generate(kid: &'static str) -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let private: Pkcs8V1Der<'static> = pair.as_der().expect("PKCS#8 encoding");
        let public: PublicKeyX509Der<'static> = pair.public_key().as_der().expect("SPKI encoding");
        Self {
            kid,
            private_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref().to_vec())),
            public_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref().to_vec())),
        }
    }

    pub fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).expect("RSA encoding key")
    }
}

/// The keys of a test binary: two configured (rotation) and one the server does not know.
#[derive(Debug)]
pub struct TestKeys {
    pub primary: TestKey,
    pub secondary: TestKey,
    pub rogue: TestKey,
}

/// Generated once per test binary: RSA generation is slow in debug builds.
pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        primary: TestKey::generate("k1"),
        secondary: TestKey::generate("k2"),
        rogue: TestKey::generate("k3"),
    })
}

/// Valid access-token claims for `user`, expiring in ten minutes.
pub fn claims(user: Uuid) -> Value {
    let now = Utc::now().timestamp();
    json!({"sub": user.to_string(), "iat": now, "exp": now + 600, "token_type": "access"})
}

/// Signs `claims` with RS256 and `key`, naming `kid` in the header.
pub fn sign(claims: &Value, key: &TestKey, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding_key()).expect("sign token")
}

/// A valid token with the admin role.
pub fn admin_token_for(user: Uuid) -> String {
    let k = &keys().primary;
    let mut c = claims(user);
    c["role"] = json!("admin");
    sign(&c, k, Some(k.kid))
}

/// A valid token of `user`, signed with the primary key.
pub fn token_for(user: Uuid) -> String {
    let k = &keys().primary;
    sign(&claims(user), k, Some(k.kid))
}

/// What a test app is built with.
#[derive(Clone)]
pub struct Options {
    /// Published videos in the catalog (one creator each).
    pub videos: usize,
    /// Build the candidate snapshot before serving (else feeds are not ready).
    pub refresh: bool,
    pub rate_limit: Option<RateLimit>,
    pub auth_failures: Option<AuthFailureLimit>,
    pub event_limit: Option<RateLimit>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Replaces the memory feed cache.
    pub feed_cache: Option<Arc<dyn FeedCache>>,
    /// Health probes added to the memory one.
    pub probes: Vec<Arc<dyn HealthProbe>>,
    pub http: HttpConfig,
    /// How long a health report is reused (zero: every request checks).
    pub health_cache: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            videos: 60,
            refresh: true,
            rate_limit: None,
            auth_failures: None,
            event_limit: None,
            issuer: None,
            audience: None,
            feed_cache: None,
            probes: Vec::new(),
            http: HttpConfig::default(),
            health_cache: std::time::Duration::ZERO,
        }
    }
}

/// A running app and handles to steer it.
#[derive(Debug)]
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub adapters: MemoryAdapters,
    pub ports: Ports,
    pub clock: Arc<ManualClock>,
    pub refresher: Arc<SnapshotRefresher>,
    /// The catalog as seeded, newest first.
    pub videos: Vec<Video>,
    pub cursors: CursorCodec,
}

/// A response, fully read.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON; panics with the raw body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An app on the memory adapters with the default options.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let adapters = MemoryAdapters::default();
    let mut ports = adapters.ports(clock.clone(), Arc::new(BaseUrlMediaUrls::new(CDN)), false);
    if let Some(cache) = options.feed_cache.clone() {
        ports.feed_cache = cache;
    }
    ports.probes.extend(options.probes.iter().cloned());
    let videos = catalog(options.videos, clock.as_ref());
    let data = DemoCatalog {
        videos: videos.clone(),
        ..DemoCatalog::default()
    };
    demo::seed(&ports, &data, |_, _| {})
        .await
        .expect("seed catalog");

    let snapshot = Arc::new(CandidateSnapshot::new());
    let refresher = Arc::new(SnapshotRefresher::new(ports.clone(), snapshot.clone()));
    if options.refresh {
        refresher.refresh().await.expect("first snapshot");
    }
    let k = keys();
    let auth = AuthConfig::from_pems(
        [
            (
                Some(k.primary.kid.to_owned()),
                k.primary.public_pem.as_bytes(),
            ),
            (
                Some(k.secondary.kid.to_owned()),
                k.secondary.public_pem.as_bytes(),
            ),
        ],
        options.issuer.clone(),
        options.audience.clone(),
    )
    .expect("auth config");
    let feed = Arc::new(FeedService::new(
        ports.clone(),
        snapshot.clone(),
        FeedConfig::default(),
    ));
    let warmer = Arc::new(CacheWarmer::new(ports.clone(), feed.clone()));
    let state = AppState {
        admin: Arc::new(AdminService::new(ports.clone(), warmer)),
        models: Arc::new(vrs_application::ModelService::new(
            ports.model_registry.clone(),
            clock.clone(),
        )),
        experiments: Arc::new(vrs_application::ExperimentService::new(
            ports.clone(),
            std::time::Duration::from_secs(3 * 3600),
        )),
        feed,
        engagement: Arc::new(EngagementService::new(ports.clone(), snapshot.clone())),
        health: Arc::new(
            HealthService::new(ports.clone(), snapshot, std::time::Duration::from_secs(300))
                .with_cache_period(options.health_cache),
        ),
        auth: Arc::new(Authenticator::new(auth)),
        cursors: Arc::new(CursorCodec::new(CURSOR_KEY)),
        clock: clock.clone(),
        metrics: Some(vrs_adapter_http::metrics::install_recorder()),
        rate_limiter: options
            .rate_limit
            .map(|limit| Arc::new(UserRateLimiter::new(limit))),
        event_limiter: options
            .event_limit
            .map(|limit| Arc::new(UserRateLimiter::new(limit))),
        auth_failures: options
            .auth_failures
            .clone()
            .map(|limit| Arc::new(AuthFailureLimiter::new(limit))),
        version: "9.9.9-test",
    };
    TestApp {
        router: router(state.clone(), options.http),
        state,
        adapters,
        ports,
        clock,
        refresher,
        videos,
        cursors: CursorCodec::new(CURSOR_KEY),
    }
}

/// `n` published videos, one creator each, published 1..=n hours before the clock's time.
fn catalog(n: usize, clock: &ManualClock) -> Vec<Video> {
    use vrs_application::ports::Clock;
    let now = clock.now();
    (1..=n as u128)
        .map(|i| {
            let id = VideoId(Uuid::from_u128(0x2000_0000 + i));
            let published = now - Duration::hours(i as i64);
            Video {
                id,
                creator_id: CreatorId(Uuid::from_u128(0x1000_0000 + i)),
                title: format!("video {i}"),
                duration_seconds: 30,
                status: VideoStatus::Published,
                visibility: vrs_domain::Visibility::Public,
                media_key: format!("videos/{}/master.m3u8", id.0),
                thumbnail_key: format!("thumbnails/{}.jpg", id.0),
                published_at: Some(published),
                updated_at: published,
                deleted_at: None,
            }
        })
        .collect()
}

impl TestApp {
    /// Sends any request through the router.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        send(&self.router, request).await
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> TestResponse {
        self.send(request(Method::GET, uri, token, None)).await
    }

    /// `POST` with a JSON body.
    pub async fn post_json(&self, uri: &str, token: Option<&str>, body: &Value) -> TestResponse {
        self.send(request(
            Method::POST,
            uri,
            token,
            Some(("application/json", body.to_string().into_bytes())),
        ))
        .await
    }

    /// `GET /api/v1/reels?<query>`, asserting nothing.
    pub async fn reels(&self, token: &str, query: &str) -> TestResponse {
        self.get(&format!("/api/v1/reels?{query}"), Some(token))
            .await
    }

    /// A page that must succeed.
    pub async fn page(&self, token: &str, query: &str) -> Value {
        let response = self.reels(token, query).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        response.json()
    }

    /// Every video of a user's feed, following `next_cursor` from a new first page until
    /// `has_more` is false.
    pub async fn whole_feed(&self, token: &str, limit: usize) -> Vec<Value> {
        let mut videos = Vec::new();
        let mut page = self.page(token, &format!("limit={limit}")).await;
        for _ in 0..1000 {
            videos.extend(page["videos"].as_array().cloned().unwrap_or_default());
            if page["has_more"] != json!(true) {
                assert_eq!(
                    page["next_cursor"],
                    Value::Null,
                    "no cursor after the last page"
                );
                return videos;
            }
            let cursor = page["next_cursor"]
                .as_str()
                .expect("next_cursor")
                .to_owned();
            page = self
                .page(token, &format!("limit={limit}&cursor={cursor}"))
                .await;
        }
        panic!("the feed never ended");
    }

    /// Posts a batch of events that must be accepted.
    pub async fn record(&self, token: &str, events: Vec<Value>) -> Value {
        let response = self
            .post_json("/api/v1/events", Some(token), &json!({ "events": events }))
            .await;
        assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
        response.json()
    }

    /// Rebuilds the candidate snapshot from the adapters.
    pub async fn refresh(&self) {
        self.refresher.refresh().await.expect("snapshot refresh");
    }
}

/// A feed cache that never answers in time.
#[derive(Debug)]
pub struct HangingFeedCache;

#[async_trait]
impl FeedCache for HangingFeedCache {
    async fn current_session(&self, _: UserId) -> Result<Option<FeedSession>, PortError> {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        Ok(None)
    }
    async fn session(&self, _: UserId, _: SessionId) -> Result<Option<FeedSession>, PortError> {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        Ok(None)
    }
    async fn store_session(
        &self,
        _: &FeedSession,
        _: std::time::Duration,
    ) -> Result<(), PortError> {
        Ok(())
    }
    async fn refresh_session(
        &self,
        _: &FeedSession,
        _: std::time::Duration,
    ) -> Result<(), PortError> {
        Ok(())
    }
    async fn invalidate(&self, _: UserId) -> Result<(), PortError> {
        Ok(())
    }
    async fn invalidate_all(&self) -> Result<u64, PortError> {
        Ok(0)
    }
}

/// One engagement event as a client sends it.
pub fn event(video: Uuid, event_type: &str) -> Value {
    json!({"event_id": Uuid::new_v4(), "video_id": video, "type": event_type})
}

/// A request with an optional bearer token and body.
pub fn request(
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some((content_type, bytes)) => {
            builder = builder.header(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).expect("content type"),
            );
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    builder.body(body).expect("request")
}

pub async fn send(router: &Router, request: Request<Body>) -> TestResponse {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("read body").to_bytes();
    TestResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Asserts the status and the JSON error shape `{"error":{"code","message"}}` with a snake_case code.
pub fn assert_error(response: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_error_shape(response);
    assert_eq!(
        response.json()["error"]["code"],
        json!(code),
        "{}",
        response.text()
    );
}

/// Asserts the JSON error shape of any non-2xx response.
pub fn assert_error_shape(response: &TestResponse) {
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{} has content type {content_type:?}",
        response.status
    );
    let body = response.json();
    let code = body["error"]["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty()
            && code.starts_with(|c: char| c.is_ascii_lowercase())
            && code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "error code {code:?} is not snake_case: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error message missing: {body}"
    );
}

/// Ids of a page's or feed's videos.
pub fn ids(videos: &[Value]) -> Vec<String> {
    videos
        .iter()
        .map(|v| v["id"].as_str().expect("video id").to_owned())
        .collect()
}

/// The videos of a page.
pub fn videos_of(page: &Value) -> Vec<Value> {
    page["videos"].as_array().cloned().unwrap_or_default()
}
