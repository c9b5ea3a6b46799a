//! The composition root: picks an adapter for every port and builds the use cases on them.

use crate::config::Config;
use crate::{keys, storage};
use anyhow::{Context, bail};
use std::num::NonZeroU32;
use std::sync::Arc;
use vrs_adapter_http::auth::{AuthFailureLimit, AuthFailureLimiter, UserRateLimiter};
use vrs_adapter_http::{AppState, Authenticator, CursorCodec, HttpConfig, RateLimit};
use vrs_adapter_media::{MediaConfig, S3Config};
use vrs_adapter_memory::{
    InProcessProbe, MemoryAdapters, MemoryEventLedger, TieredFeedCache, TieredViewHistory,
};
use vrs_adapter_postgres::PostgresStore;
use vrs_application::demo::{self, DemoSize};
use vrs_application::ports::{
    Clock, EngagementEventStore, EventSink, HealthProbe, Ports, SignalStore,
};
use vrs_application::{
    AdminService, CacheWarmer, CandidateSnapshot, EngagementService, ExperimentService, FeedConfig,
    FeedService, HealthService, ModelService, SnapshotRefresher, SystemClock,
};
use vrs_domain::RankingConfig;

/// The adapters chosen for this process.
pub struct Backends {
    pub ports: Ports,
    /// The catalog runs in memory, on the generated demo catalog.
    pub embedded: bool,
    pub postgres: Option<PostgresStore>,
    /// Where the Kafka consumer stores engagement events (ClickHouse, or the in-memory signals).
    pub event_store: Arc<dyn EngagementEventStore>,
    /// A sink writing straight into the signal store, for the demo's history: it is history, not
    /// live traffic, so it never goes through Kafka (where the consumer would have to work through
    /// it before any live event).
    pub history_sink: Arc<dyn EventSink>,
    /// The Kafka event sink, when Kafka is configured: drained into Kafka on shutdown.
    pub kafka_sink: Option<vrs_adapter_kafka::KafkaEventSink>,
}

impl Backends {
    /// The ports with events going straight into the signal store.
    pub fn seeding_ports(&self) -> Ports {
        Ports {
            events: self.history_sink.clone(),
            ..self.ports.clone()
        }
    }
}

/// The demo data set's size from the configuration.
/// Sessions each replica keeps in process behind Redis (≈ 18 KB each at 200 videos).
const LOCAL_FEED_SESSIONS: u64 = 2_000;
/// Users whose recent served and watched videos each replica keeps behind Redis (≤ 256 each).
const LOCAL_HISTORY_USERS: u64 = 8_192;

pub fn demo_size(config: &Config) -> DemoSize {
    DemoSize {
        videos: config.demo.videos,
        creators: config.demo.creators,
        users: config.demo.users,
    }
}

fn media_config(config: &Config) -> MediaConfig {
    match &config.s3 {
        Some(s3) => MediaConfig::S3(S3Config {
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            bucket: s3.bucket.clone(),
            access_key_id: s3.access_key_id.clone(),
            secret_access_key: s3.secret_access_key.clone(),
            ttl: s3.presign_ttl,
        }),
        None => MediaConfig::Cdn {
            base_url: config.cdn_base_url.clone(),
        },
    }
}

/// Picks each port's adapter from its URL variable; the in-memory adapter where none is set.
pub async fn backends(config: &Config) -> anyhow::Result<Backends> {
    // Before any adapter starts: they create their series (at zero) as they start.
    vrs_adapter_http::metrics::install_recorder();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let media = vrs_adapter_media::media_urls(&media_config(config), clock.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let memory = MemoryAdapters::default();
    let mut probes: Vec<Arc<dyn HealthProbe>> = Vec::new();

    let postgres = match &config.database_url {
        Some(url) => {
            let store = storage::connect(config, url).await?;
            probes.push(Arc::new(store.clone()));
            Some(store)
        }
        None => None,
    };
    let clickhouse = match &config.clickhouse_url {
        Some(url) => {
            if config.database_auto_migrate {
                let report = vrs_adapter_clickhouse::init_schema(url, &config.clickhouse_database)
                    .await
                    .context("CLICKHOUSE_URL: initialising the schema")?;
                tracing::info!(server = %report.server_version, "ClickHouse schema ready");
            }
            let store = vrs_adapter_clickhouse::ClickHouseSignalStore::new(
                &vrs_adapter_clickhouse::ClickHouseConfig::new(
                    url.clone(),
                    config.clickhouse_database.clone(),
                ),
            )
            .map_err(|e| anyhow::anyhow!("CLICKHOUSE_URL: {e}"))?;
            probes.push(Arc::new(store.health_probe()));
            Some(Arc::new(store))
        }
        None => None,
    };
    let event_store: Arc<dyn EngagementEventStore> = match &clickhouse {
        Some(ch) => ch.clone(),
        None => memory.events.clone(),
    };
    let history_sink: Arc<dyn EventSink> = match &clickhouse {
        Some(ch) => Arc::new(vrs_adapter_clickhouse::ClickHouseEventSink::new(ch.clone())),
        None => memory.events.clone(),
    };
    let mut kafka_sink = None;
    let events: Arc<dyn EventSink> = match (&config.kafka_brokers, &clickhouse) {
        (Some(brokers), _) => {
            let sink = vrs_adapter_kafka::KafkaEventSink::start(vrs_adapter_kafka::KafkaConfig {
                topic: config.kafka_engagement_topic.clone(),
                delivery_timeout: config.kafka_delivery_timeout,
                spool_max_bytes: config.event_spool_max_bytes,
                ..vrs_adapter_kafka::KafkaConfig::new(
                    brokers.clone(),
                    config.event_spool_dir.clone(),
                )
            })
            .map_err(|e| anyhow::anyhow!("KAFKA_BROKERS: {e}"))?;
            probes.push(Arc::new(sink.health_probe()));
            kafka_sink = Some(sink.clone());
            Arc::new(sink)
        }
        // Without Kafka, accepted events are written straight into the signal store.
        (None, _) => history_sink.clone(),
    };
    let redis = match &config.redis_url {
        Some(url) => {
            let mut redis_config = vrs_adapter_redis::RedisConfig::new(url.clone());
            redis_config.command_timeout = config.redis_command_timeout;
            // Connects in the background: a Redis that is down degrades feeds, it does not stop
            // the service from starting.
            let adapters = vrs_adapter_redis::RedisAdapters::connect(&redis_config)
                .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
            // Give a reachable Redis a moment, so the first requests do not start degraded.
            if !adapters
                .connection
                .wait_connected(std::time::Duration::from_secs(2))
                .await
            {
                tracing::warn!(
                    "Redis is not reachable yet; serving without the feed cache until it is"
                );
            }
            probes.push(adapters.probe.clone());
            Some(adapters)
        }
        None => None,
    };
    // Without PostgreSQL the catalog lives in memory and is filled with the demo catalog.
    let embedded = postgres.is_none();
    if embedded {
        probes.push(Arc::new(InProcessProbe("memory")));
    }

    let signals: Arc<dyn SignalStore> = match &clickhouse {
        Some(ch) => ch.clone(),
        None => memory.signals.clone(),
    };
    let ports = Ports {
        catalog: match &postgres {
            Some(pg) => Arc::new(pg.clone()),
            None => memory.catalog.clone(),
        },
        follows: match &postgres {
            Some(pg) => Arc::new(pg.clone()),
            None => memory.follows.clone(),
        },
        ranking_config: match &postgres {
            Some(pg) => Arc::new(pg.clone()),
            None => memory.ranking_config.clone(),
        },
        model_registry: match &postgres {
            Some(pg) => Arc::new(pg.clone()),
            None => memory.model_registry.clone(),
        },
        experiments: match &postgres {
            Some(pg) => Arc::new(pg.clone()),
            None => memory.experiments.clone(),
        },
        signals: signals.clone(),
        events,
        event_ledger: match &redis {
            Some(r) => r.event_ledger.clone(),
            None => memory.event_ledger.clone(),
        },
        // Behind Redis, each replica keeps a bounded tier of its own, so feeds keep their
        // guarantees while Redis is down (see `TieredFeedCache` and `TieredViewHistory`).
        history: match &redis {
            Some(r) => Arc::new(TieredViewHistory::new(
                r.history.clone(),
                signals.clone(),
                LOCAL_HISTORY_USERS,
            )),
            None => memory.history.clone(),
        },
        feed_cache: match &redis {
            Some(r) => Arc::new(TieredFeedCache::new(
                r.feed_cache.clone(),
                LOCAL_FEED_SESSIONS,
            )),
            None => memory.feed_cache.clone(),
        },
        model: Some(memory.model.clone()),
        media,
        clock,
        probes,
    };
    Ok(Backends {
        ports,
        embedded,
        postgres,
        event_store,
        history_sink,
        kafka_sink,
    })
}

/// Loads the demo catalog into the in-memory adapters (embedded mode).
async fn load_embedded_demo(config: &Config, backends: &Backends) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let size = demo_size(config);
    let data = demo::generate(size, chrono::Utc::now(), config.demo.seed);
    demo::seed(&backends.seeding_ports(), &data, |_, _| {})
        .await
        .context("loading the demo catalog")?;
    tracing::info!(
        videos = data.videos.len(),
        users = size.users,
        events = data.events.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "embedded mode: loaded the demo catalog into the in-memory adapters"
    );
    Ok(())
}

/// The wired application.
pub struct App {
    pub state: AppState,
    pub http: HttpConfig,
    pub refresher: Arc<SnapshotRefresher>,
    pub postgres: Option<PostgresStore>,
    /// The engagement consumer, when Kafka is configured and consumers run in this process.
    pub consumer: Option<vrs_adapter_kafka::EngagementConsumer>,
    /// The CDC consumer feeding the catalog, under the same conditions.
    pub cdc_consumer: Option<vrs_adapter_kafka::CdcConsumer>,
    /// The Kafka event sink, whose spool is drained on shutdown.
    pub kafka_sink: Option<vrs_adapter_kafka::KafkaEventSink>,
    /// In the embedded mode, the first model is trained from the demo's events in the background
    /// once the server runs: this does it (the signal joins at the next snapshot refresh).
    pub demo_training: Option<DemoTraining>,
}

/// The embedded demo's model training, run in the background after start.
pub struct DemoTraining {
    models: Arc<ModelService>,
    signals: Arc<dyn SignalStore>,
    params: vrs_domain::factors::FactorParams,
    clock: Arc<dyn Clock>,
}

impl DemoTraining {
    /// Trains on the signal store's last 30 days and activates the result.
    pub async fn run(self) {
        let started = std::time::Instant::now();
        let since = self.clock.now() - chrono::Duration::days(30);
        let data = match self.signals.engagement_pairs(since, 5_000_000).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "demo model: could not read the interactions");
                return;
            }
        };
        match self
            .models
            .train(data, self.params, vrs_application::ActivationPolicy::Auto)
            .await
        {
            Ok(report) => tracing::info!(
                version = %report.version,
                activated = report.activated,
                ndcg_at_10 = report.metrics.ndcg_at_10,
                popularity_ndcg_at_10 = report.metrics.popularity_ndcg_at_10,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "demo model trained from the demo's events"
            ),
            Err(e) => tracing::warn!(error = %e, "demo model: training failed"),
        }
    }
}

/// Builds every component from the configuration.
/// The per-IP limit on failed authentications, unless disabled.
fn auth_failure_limiter(config: &Config) -> anyhow::Result<Option<Arc<AuthFailureLimiter>>> {
    let (Some(per_second), Some(burst)) = (
        NonZeroU32::new(config.auth_failures_per_ip_per_second),
        NonZeroU32::new(config.auth_failures_per_ip_burst),
    ) else {
        return Ok(None);
    };
    let client_ip_header = config
        .client_ip_header
        .as_deref()
        .map(|name| axum::http::HeaderName::from_bytes(name.as_bytes()))
        .transpose()?;
    Ok(Some(Arc::new(AuthFailureLimiter::new(AuthFailureLimit {
        per_second,
        burst,
        client_ip_header,
    }))))
}

pub async fn build(config: &Config) -> anyhow::Result<App> {
    let backends = backends(config).await?;
    let auth = Authenticator::new(keys::auth_config(config)?);
    let cursors = CursorCodec::new(keys::cursor_secret(config)?);
    if backends.embedded {
        load_embedded_demo(config, &backends).await?;
    }
    let ports = backends.ports.clone();

    let snapshot = Arc::new(CandidateSnapshot::new());
    let refresher = Arc::new(
        SnapshotRefresher::new(ports.clone(), snapshot.clone())
            .with_prior_views(config.signal_prior_views),
    );
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
    let engagement = Arc::new(
        EngagementService::new(ports.clone(), snapshot.clone())
            .with_local_reactions(Arc::new(MemoryEventLedger::default())),
    );
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
    let warmer = Arc::new(CacheWarmer::new(ports.clone(), feed.clone()));
    let models = Arc::new(ModelService::new(
        ports.model_registry.clone(),
        ports.clock.clone(),
    ));
    let experiments = Arc::new(ExperimentService::new(
        ports.clone(),
        crate::experiments::attribution(config),
    ));
    let state = AppState {
        admin: Arc::new(AdminService::new(ports.clone(), warmer)),
        models: models.clone(),
        experiments: experiments.clone(),
        feed,
        engagement,
        health,
        auth: Arc::new(auth),
        cursors: Arc::new(cursors),
        clock: ports.clock.clone(),
        metrics: Some(vrs_adapter_http::metrics::install_recorder()),
        rate_limiter,
        event_limiter: match (
            NonZeroU32::new(config.events_per_user_per_second),
            NonZeroU32::new(config.events_per_user_burst),
        ) {
            (Some(per_second), Some(burst)) => Some(Arc::new(UserRateLimiter::new(RateLimit {
                per_second,
                burst,
            }))),
            _ => None,
        },
        auth_failures: auth_failure_limiter(config)?,
        version: env!("CARGO_PKG_VERSION"),
    };
    Ok(App {
        state,
        http: HttpConfig {
            request_timeout: config.request_timeout,
            body_read_timeout: config.http_body_read_timeout,
        },
        refresher,
        consumer: if config.run_consumers {
            engagement_consumer(config, &backends)?
        } else {
            None
        },
        cdc_consumer: if config.run_consumers {
            cdc_consumer(config, &backends)?
        } else {
            None
        },
        kafka_sink: backends.kafka_sink.clone(),
        demo_training: (backends.embedded && config.demo.train_model).then(|| DemoTraining {
            models,
            signals: ports.signals.clone(),
            // One training run with the configured knobs (no search): the demo's model is ready
            // in seconds, even in a debug build.
            params: vrs_domain::factors::FactorParams {
                auto_tune: false,
                ..config.model_params
            },
            clock: ports.clock.clone(),
        }),
        postgres: backends.postgres,
    })
}

/// `seed-demo`: loads the demo catalog into the configured real stores, with a progress bar.
/// Idempotent: videos are upserted, follows deduplicated, events deduplicated by id.
pub async fn seed_demo(config: &Config) -> anyhow::Result<()> {
    if config.database_url.is_none() {
        bail!(
            "DATABASE_URL: seed-demo loads the demo into real stores; the embedded mode loads it by itself"
        );
    }
    // The seed's events go straight into the signal store; no Kafka sink, so the command never
    // opens (or waits for) the spool of a service running beside it.
    let config = &Config {
        run_consumers: false,
        kafka_brokers: None,
        ..config.clone()
    };
    let backends = backends(config).await?;
    let size = demo_size(config);
    let data = demo::generate(size, chrono::Utc::now(), config.demo.seed);
    let total = (data.videos.len() + data.follows.len() + data.events.len()) as u64;
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} seeding [{bar:40}] {pos}/{len} ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    demo::seed(&backends.seeding_ports(), &data, |done, _| {
        bar.set_position(done)
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "Seeded the demo catalog: {} videos, {} follows, {} users",
        data.videos.len(),
        data.follows.len(),
        size.users
    );
    Ok(())
}

/// `drain-spool`: delivers a spool directory's events to Kafka, then exits; fails when some remain.
pub async fn drain_spool(config: &Config, timeout: std::time::Duration) -> anyhow::Result<()> {
    let Some(brokers) = &config.kafka_brokers else {
        bail!("KAFKA_BROKERS: drain-spool delivers the spool's events to Kafka");
    };
    let sink = vrs_adapter_kafka::KafkaEventSink::start(vrs_adapter_kafka::KafkaConfig {
        topic: config.kafka_engagement_topic.clone(),
        delivery_timeout: config.kafka_delivery_timeout,
        spool_max_bytes: config.event_spool_max_bytes,
        ..vrs_adapter_kafka::KafkaConfig::new(brokers.clone(), config.event_spool_dir.clone())
    })
    .with_context(|| format!("EVENT_SPOOL_DIR {}", config.event_spool_dir.display()))?;
    let spooled = sink.spooled();
    let left = sink.drain(timeout).await;
    println!(
        "delivered {} spooled events; {left} remain",
        spooled.saturating_sub(left)
    );
    if left > 0 {
        bail!(
            "{left} events remain in {}",
            config.event_spool_dir.display()
        );
    }
    Ok(())
}

/// `warmup`: ranks and caches the sessions of the most active users in the shared feed cache, with
/// a progress bar.
pub async fn warmup(config: &Config, users: usize, batch_size: usize) -> anyhow::Result<()> {
    if config.redis_url.is_none() {
        bail!(
            "REDIS_URL: warmup fills the shared feed cache; a service without Redis keeps its cache \
             in process (use POST /api/v1/admin/cache-warmup on it instead)"
        );
    }
    // No Kafka: the command publishes nothing, and a second event sink would open the spool of a
    // service running beside it (`kubectl exec` into a serving pod) and race its replayer.
    let config = Config {
        run_consumers: false,
        kafka_brokers: None,
        ..config.clone()
    };
    let app = build(&config).await?;
    let bar = indicatif::ProgressBar::new(users as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} warming [{bar:40}] {pos}/{len} users ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = app
        .state
        .admin
        .warm_up(users, batch_size, |n| bar.inc(n as u64))
        .await?;
    bar.finish_and_clear();
    println!(
        "Warmed {} users ({} failed) in {} ms",
        report.warmed,
        report.failed,
        report.duration.as_millis()
    );
    if report.failed > 0 {
        bail!("{} users could not be warmed; see the log", report.failed);
    }
    Ok(())
}

/// The Kafka consumer that stores engagement events (`None` without `KAFKA_BROKERS`).
pub fn engagement_consumer(
    config: &Config,
    backends: &Backends,
) -> anyhow::Result<Option<vrs_adapter_kafka::EngagementConsumer>> {
    let Some(brokers) = &config.kafka_brokers else {
        return Ok(None);
    };
    let mut consumer_config = vrs_adapter_kafka::EngagementConsumerConfig::new(
        brokers.clone(),
        config.kafka_consumer_group.clone(),
    );
    consumer_config.topic = config.kafka_engagement_topic.clone();
    consumer_config.dlq_topic = format!("{}.dlq", config.kafka_engagement_topic);
    consumer_config.session_timeout = config.kafka_session_timeout;
    consumer_config.max_poll_interval = config.kafka_max_poll_interval;
    let consumer =
        vrs_adapter_kafka::EngagementConsumer::new(consumer_config, backends.event_store.clone())
            .map_err(|e| anyhow::anyhow!("KAFKA_BROKERS: {e}"))?;
    Ok(Some(consumer))
}

/// The Kafka consumer that applies `cdc.posts` video changes to the catalog (`None` without
/// `KAFKA_BROKERS`).
pub fn cdc_consumer(
    config: &Config,
    backends: &Backends,
) -> anyhow::Result<Option<vrs_adapter_kafka::CdcConsumer>> {
    let Some(brokers) = &config.kafka_brokers else {
        return Ok(None);
    };
    // A group of its own, so a rebalance of one consumer never pauses the other.
    let mut consumer_config = vrs_adapter_kafka::CdcConsumerConfig::new(
        brokers.clone(),
        format!("{}.cdc", config.kafka_consumer_group),
    );
    consumer_config.topic = config.kafka_cdc_topic.clone();
    consumer_config.dlq_topic = format!("{}.dlq", config.kafka_cdc_topic);
    consumer_config.session_timeout = config.kafka_session_timeout;
    consumer_config.max_poll_interval = config.kafka_max_poll_interval;
    let consumer =
        vrs_adapter_kafka::CdcConsumer::new(consumer_config, backends.ports.catalog.clone())
            .map_err(|e| anyhow::anyhow!("KAFKA_BROKERS: {e}"))?;
    Ok(Some(consumer))
}

/// `worker`: runs the Kafka consumers alone (to scale them apart from the API) until SIGTERM.
pub async fn worker(config: &Config) -> anyhow::Result<()> {
    if config.kafka_brokers.is_none() {
        bail!("KAFKA_BROKERS: the worker consumes Kafka topics");
    }
    let handle = vrs_adapter_http::metrics::install_recorder();
    // The worker publishes nothing: its stores without the Kafka event sink and its spool.
    let backends = backends(&Config {
        kafka_brokers: None,
        ..config.clone()
    })
    .await?;
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
        .await
        .with_context(|| format!("APP_PORT: cannot listen on {}:{}", config.host, config.port))?;
    tracing::info!(
        "worker: metrics and health endpoints listening on http://{}",
        listener.local_addr()?
    );
    let (Some(consumer), Some(cdc)) = (
        engagement_consumer(config, &backends)?,
        cdc_consumer(config, &backends)?,
    ) else {
        bail!("KAFKA_BROKERS: the worker consumes Kafka topics");
    };
    tracing::info!(
        "worker started: consuming {} and {}",
        config.kafka_engagement_topic,
        config.kafka_cdc_topic
    );
    // One signal stops both: each finishes and commits the batch in hand.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut cdc = tokio::spawn(cdc.run(stopped(stop_rx.clone())));
    let mut engagement = tokio::spawn(consumer.run(stopped(stop_rx.clone())));
    if let Some(pg) = backends.postgres.clone() {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tick.tick() => pg.record_pool_metrics(),
                }
            }
        });
    }
    let http = tokio::spawn(async move {
        axum::serve(listener, vrs_adapter_http::metrics::worker_router(handle))
            .with_graceful_shutdown(stopped(stop_rx))
            .await
    });
    // A consumer returns only once stopped: one that ends first has failed, and the process
    // exits non-zero so that it is restarted rather than staying alive and consuming nothing.
    let ended = tokio::select! {
        () = crate::serve::shutdown_signal() => None,
        result = &mut engagement => Some(("the engagement consumer", result)),
        result = &mut cdc => Some(("the CDC consumer", result)),
    };
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = http.await {
        tracing::warn!(error = %e, "worker HTTP server failed");
    }
    if let Some((which, result)) = ended {
        bail!("{which} stopped unexpectedly: {result:?}");
    }
    let finished = tokio::time::timeout(config.shutdown_grace, async {
        let (engagement, cdc) = tokio::join!(engagement, cdc);
        engagement.context("engagement consumer task")?;
        cdc.context("cdc consumer task")
    })
    .await;
    if let Some(pg) = &backends.postgres {
        pg.close().await;
    }
    match finished {
        Ok(result) => result?,
        Err(_) => bail!(
            "the consumers did not stop within SHUTDOWN_GRACE_SECS ({:?})",
            config.shutdown_grace
        ),
    }
    tracing::info!("worker stopped: processed events and changes committed");
    Ok(())
}
