//! The composition root: picks an adapter for every port and builds the use cases on them.

use crate::config::{AppEnv, Config};
use crate::keys;
use anyhow::{Context, bail};
use std::num::NonZeroU32;
use std::sync::Arc;
use vrs_adapter_http::auth::UserRateLimiter;
use vrs_adapter_http::{AppState, Authenticator, CursorCodec, HttpConfig, RateLimit};
use vrs_adapter_memory::{BaseUrlMediaUrls, MemoryAdapters};
use vrs_application::demo::{self, DemoSize};
use vrs_application::ports::Ports;
use vrs_application::{
    CandidateSnapshot, EngagementService, FeedConfig, FeedService, HealthService,
    SnapshotRefresher, SystemClock,
};
use vrs_domain::RankingConfig;

/// The wired application.
pub struct App {
    pub state: AppState,
    pub http: HttpConfig,
    pub refresher: Arc<SnapshotRefresher>,
}

/// Picks the adapters. Without any external URL, everything runs in memory on the demo catalog.
async fn ports(config: &Config) -> anyhow::Result<Ports> {
    for (var, value, what) in [
        ("DATABASE_URL", &config.database_url, "PostgreSQL"),
        ("REDIS_URL", &config.redis_url, "Redis"),
        ("CLICKHOUSE_URL", &config.clickhouse_url, "ClickHouse"),
        ("KAFKA_BROKERS", &config.kafka_brokers, "Kafka"),
    ] {
        if value.is_some() {
            if var == "CLICKHOUSE_URL" {
                tracing::error!(database = %config.clickhouse_database, "ClickHouse is configured");
            }
            bail!(
                "{var} is set, but this build has no {what} adapter yet; unset it to run on the embedded in-memory adapters"
            );
        }
    }
    if config.app_env == AppEnv::Production {
        bail!("APP_ENV=production refuses the in-memory adapters");
    }
    let adapters = MemoryAdapters::default();
    let clock = Arc::new(SystemClock);
    let media = Arc::new(BaseUrlMediaUrls::new(config.cdn_base_url.clone()));
    let ports = adapters.ports(clock.clone(), media, true);

    let started = std::time::Instant::now();
    let size = DemoSize {
        videos: config.demo.videos,
        creators: config.demo.creators,
        users: config.demo.users,
    };
    let data = demo::generate(size, chrono::Utc::now(), config.demo.seed);
    adapters
        .model
        .set_scores(data.model_scores.iter().map(|(k, v)| (*k, *v)));
    demo::seed(&ports, &data, |_, _| {})
        .await
        .context("loading the demo catalog")?;
    tracing::info!(
        videos = data.videos.len(),
        users = size.users,
        events = data.events.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "embedded mode: loaded the demo catalog into the in-memory adapters"
    );
    Ok(ports)
}

/// Builds every component from the configuration.
pub async fn build(config: &Config) -> anyhow::Result<App> {
    let auth = Authenticator::new(keys::auth_config(config)?);
    let cursors = CursorCodec::new(keys::cursor_secret(config)?);
    let ports = ports(config).await?;

    let snapshot = Arc::new(CandidateSnapshot::new());
    let refresher = Arc::new(SnapshotRefresher::new(ports.clone(), snapshot.clone()));
    let report = refresher
        .refresh()
        .await
        .context("building the first candidate snapshot")?;
    tracing::info!(videos = report.videos, "candidate snapshot ready");

    let feed_config = FeedConfig {
        ranking: RankingConfig {
            session_size: config.feed_session_size,
            ..RankingConfig::default()
        },
        session_ttl: chrono::Duration::from_std(config.feed_session_ttl)?,
        session_ttl_jitter: chrono::Duration::from_std(config.feed_session_ttl_jitter)?,
        ..FeedConfig::default()
    };
    let feed = Arc::new(FeedService::new(
        ports.clone(),
        snapshot.clone(),
        feed_config,
    ));
    let engagement = Arc::new(EngagementService::new(ports.clone(), snapshot.clone()));
    let health = Arc::new(HealthService::new(
        ports.clone(),
        snapshot.clone(),
        config.snapshot_refresh * 6,
    ));
    let rate_limiter = match (
        NonZeroU32::new(config.rate_limit_per_second),
        NonZeroU32::new(config.rate_limit_burst),
    ) {
        (Some(per_second), Some(burst)) => Some(Arc::new(UserRateLimiter::new(RateLimit {
            per_second,
            burst,
        }))),
        _ => None,
    };
    let state = AppState {
        feed,
        engagement,
        health,
        auth: Arc::new(auth),
        cursors: Arc::new(cursors),
        clock: ports.clock.clone(),
        metrics: Some(vrs_adapter_http::metrics::install_recorder()),
        rate_limiter,
        version: env!("CARGO_PKG_VERSION"),
    };
    Ok(App {
        state,
        http: HttpConfig {
            request_timeout: config.request_timeout,
        },
        refresher,
    })
}
