//! Configuration: every environment variable, parsed once into a typed value. An invalid value
//! stops startup with a message naming the variable.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Where the service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Test,
    Production,
}

impl AppEnv {
    /// The name of the environment, as in `APP_ENV`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

impl FromStr for AppEnv {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" | "dev" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            _ => Err("expected development, test or production".into()),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err("expected json or text".into()),
        }
    }
}

/// A configuration error, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

/// JWT verification settings.
#[derive(Clone, Debug, Default)]
pub struct JwtSettings {
    /// PEM of one public key (`JWT_PUBLIC_KEY`).
    pub public_key: Option<String>,
    /// A file holding one PEM public key (`JWT_PUBLIC_KEY_FILE`).
    pub public_key_file: Option<PathBuf>,
    /// `kid` of the key given by `JWT_PUBLIC_KEY` or `JWT_PUBLIC_KEY_FILE`.
    pub key_id: Option<String>,
    /// A directory of `<kid>.pem` public keys, for rotation (`JWT_PUBLIC_KEYS_DIR`).
    pub public_keys_dir: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Production refuses to serve without `JWT_ISSUER` and `JWT_AUDIENCE` (tokens of another
    /// issuer or meant for another service would pass) unless this is false
    /// (`JWT_REQUIRE_ISSUER_AND_AUDIENCE=false`).
    pub require_issuer_and_audience: bool,
}

impl JwtSettings {
    pub fn has_keys(&self) -> bool {
        self.public_key.is_some()
            || self.public_key_file.is_some()
            || self.public_keys_dir.is_some()
    }
}

/// S3-compatible presigned media URLs, used instead of `CDN_BASE_URL` when `S3_BUCKET` is set.
#[derive(Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub presign_ttl: Duration,
}

const REDACTED: &str = "<redacted>";

fn redacted(value: &Option<String>) -> Option<&'static str> {
    value.as_ref().map(|_| REDACTED)
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &REDACTED)
            .field("secret_access_key", &REDACTED)
            .field("presign_ttl", &self.presign_ttl)
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("app_env", &self.app_env)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("log_format", &self.log_format)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redacted(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("redis_url", &redacted(&self.redis_url))
            .field("clickhouse_url", &redacted(&self.clickhouse_url))
            .field("clickhouse_database", &self.clickhouse_database)
            .field("kafka_brokers", &self.kafka_brokers)
            .field("kafka_engagement_topic", &self.kafka_engagement_topic)
            .field("kafka_cdc_topic", &self.kafka_cdc_topic)
            .field("kafka_consumer_group", &self.kafka_consumer_group)
            .field("event_spool_dir", &self.event_spool_dir)
            .field("event_spool_max_bytes", &self.event_spool_max_bytes)
            .field("run_consumers", &self.run_consumers)
            .field("cursor_secret", &redacted(&self.cursor_secret))
            .field("cdn_base_url", &self.cdn_base_url)
            .field("s3", &self.s3)
            .field("feed_session_size", &self.feed_session_size)
            .field("snapshot_refresh", &self.snapshot_refresh)
            .field(
                "experiment_metrics_interval",
                &self.experiment_metrics_interval,
            )
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("request_timeout", &self.request_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("http_header_read_timeout", &self.http_header_read_timeout)
            .field("http_max_connections", &self.http_max_connections)
            .field("http_body_read_timeout", &self.http_body_read_timeout)
            .field(
                "auth_failures_per_ip_per_second",
                &self.auth_failures_per_ip_per_second,
            )
            .field("client_ip_header", &self.client_ip_header)
            .field(
                "events_per_user_per_second",
                &self.events_per_user_per_second,
            )
            .finish_non_exhaustive()
    }
}

/// Sizes of the generated demo catalog.
#[derive(Clone, Copy, Debug)]
pub struct DemoSettings {
    pub videos: usize,
    pub creators: usize,
    pub users: usize,
    pub seed: u64,
    /// Whether the embedded mode trains its model from the demo's events after start.
    pub train_model: bool,
}

/// What a command needs in production beyond the common settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Serving feeds (`serve`, `warmup`): JWT keys, the cursor secret and every real store.
    Serving,
    /// Consuming Kafka (`worker`): PostgreSQL, ClickHouse and Kafka.
    Consuming,
    /// Tools that name what they need themselves (`migrate`, `clickhouse-init`, ...).
    Nothing,
}

/// The whole configuration. Its `Debug` output redacts every secret (store URLs, which may carry
/// passwords, the cursor secret, the S3 keys), so it can be logged.
#[derive(Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub host: String,
    pub port: u16,
    pub log_format: LogFormat,
    /// Trace export (`OTEL_*`).
    pub tracing: crate::telemetry::TracingConfig,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    pub database_acquire_timeout: Duration,
    pub database_statement_timeout: Duration,
    /// Apply pending migrations at `serve` start (never in production: use `migrate`).
    pub database_auto_migrate: bool,
    pub redis_url: Option<String>,
    pub redis_command_timeout: Duration,
    pub clickhouse_url: Option<String>,
    pub clickhouse_database: String,
    pub kafka_brokers: Option<String>,
    pub kafka_engagement_topic: String,
    /// Debezium change events of the posts service's `videos` table, applied to the catalog.
    pub kafka_cdc_topic: String,
    pub kafka_consumer_group: String,
    pub kafka_delivery_timeout: Duration,
    /// Consumer group session timeout (`KAFKA_SESSION_TIMEOUT_MS`).
    pub kafka_session_timeout: Duration,
    /// Longest a consumer may go without polling before the group evicts it
    /// (`KAFKA_MAX_POLL_INTERVAL_MS`).
    pub kafka_max_poll_interval: Duration,
    /// Where events go when Kafka does not acknowledge them in time.
    pub event_spool_dir: PathBuf,
    pub event_spool_max_bytes: u64,
    /// Run the Kafka consumers inside `serve` (else only in `worker`).
    pub run_consumers: bool,
    pub jwt: JwtSettings,
    pub cursor_secret: Option<String>,
    pub cdn_base_url: String,
    pub s3: Option<S3Settings>,
    pub feed_session_size: usize,
    pub feed_session_ttl: Duration,
    pub feed_session_ttl_jitter: Duration,
    pub snapshot_refresh: Duration,
    /// How often each replica computes the running experiments' results into gauges.
    pub experiment_metrics_interval: Duration,
    /// Prior of the smoothed engagement and completion, in views (`SIGNAL_PRIOR_VIEWS`).
    pub signal_prior_views: f64,
    /// Training knobs of the model (`MODEL_*`), for `train`, `evaluate` and the demo.
    pub model_params: vrs_domain::factors::FactorParams,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Longest a client may take to send request headers, or keep a connection idle.
    pub http_header_read_timeout: Duration,
    /// Most connections served at once.
    pub http_max_connections: usize,
    /// Longest a request body may take to arrive after its headers (then 408).
    pub http_body_read_timeout: Duration,
    /// Failed authentications allowed per client IP and second (0 disables the limit), and burst.
    pub auth_failures_per_ip_per_second: u32,
    pub auth_failures_per_ip_burst: u32,
    /// Events accepted per user and second (0 disables the limit), and burst (at least one batch).
    pub events_per_user_per_second: u32,
    pub events_per_user_burst: u32,
    /// Header in which a trusted proxy passes the client's address (`CLIENT_IP_HEADER`).
    pub client_ip_header: Option<String>,
    pub demo: DemoSettings,
}

/// Reads variables from a map, so tests need not touch the process environment.
struct Vars<'a>(&'a HashMap<String, String>);

impl Vars<'_> {
    fn opt(&self, var: &'static str) -> Option<String> {
        self.0
            .get(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: FromStr>(
        &self,
        var: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.opt(var) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|e: T::Err| ConfigError {
                var,
                message: format!("invalid value {raw:?}: {expected} ({e})"),
            }),
        }
    }

    fn secs(&self, var: &'static str, default: u64, min: u64) -> Result<Duration, ConfigError> {
        let v: u64 = self.parse(var, default, "expected a whole number of seconds")?;
        if v < min {
            return Err(ConfigError {
                var,
                message: format!("must be at least {min}"),
            });
        }
        Ok(Duration::from_secs(v))
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    fn model_params(v: &Vars<'_>) -> Result<vrs_domain::factors::FactorParams, ConfigError> {
        let d = vrs_domain::factors::FactorParams::default();
        // NaN is in no range, so a non-finite number is refused too.
        fn within<T: PartialOrd + std::fmt::Display>(
            var: &'static str,
            value: T,
            range: std::ops::RangeInclusive<T>,
        ) -> Result<T, ConfigError> {
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError {
                    var,
                    message: format!("must be from {} to {}", range.start(), range.end()),
                })
            }
        }
        let (ranged, whole) = (within::<f64>, within::<usize>);
        Ok(vrs_domain::factors::FactorParams {
            dim: whole(
                "MODEL_DIM",
                v.parse("MODEL_DIM", d.dim, "expected a whole number")?,
                1..=128,
            )?,
            iterations: whole(
                "MODEL_ITERATIONS",
                v.parse("MODEL_ITERATIONS", d.iterations, "expected a whole number")?,
                1..=100,
            )?,
            regularization: ranged(
                "MODEL_REGULARIZATION",
                v.parse(
                    "MODEL_REGULARIZATION",
                    d.regularization,
                    "expected a number",
                )?,
                0.0..=100.0,
            )?,
            regularization_exponent: ranged(
                "MODEL_REGULARIZATION_EXPONENT",
                v.parse(
                    "MODEL_REGULARIZATION_EXPONENT",
                    d.regularization_exponent,
                    "expected a number",
                )?,
                0.0..=2.0,
            )?,
            alpha: ranged(
                "MODEL_ALPHA",
                v.parse("MODEL_ALPHA", d.alpha, "expected a number")?,
                0.0..=1000.0,
            )?,
            unobserved_weight: ranged(
                "MODEL_UNOBSERVED_WEIGHT",
                v.parse(
                    "MODEL_UNOBSERVED_WEIGHT",
                    d.unobserved_weight,
                    "expected a number",
                )?,
                0.0..=10.0,
            )?,
            fold_in_limit: whole(
                "MODEL_FOLD_IN_LIMIT",
                v.parse(
                    "MODEL_FOLD_IN_LIMIT",
                    d.fold_in_limit,
                    "expected a whole number",
                )?,
                1..=5_000,
            )?,
            recency_half_life_days: ranged(
                "MODEL_RECENCY_HALF_LIFE_DAYS",
                v.parse(
                    "MODEL_RECENCY_HALF_LIFE_DAYS",
                    d.recency_half_life_days,
                    "expected a number of days",
                )?,
                0.0..=3650.0,
            )?,
            auto_tune: v.parse("MODEL_AUTO_TUNE", d.auto_tune, "expected true or false")?,
            seed: d.seed,
        })
    }

    /// Reads configuration from a map of variables.
    pub fn from_vars(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let v = Vars(map);
        let app_env: AppEnv = v.parse(
            "APP_ENV",
            AppEnv::Development,
            "expected development, test or production",
        )?;
        let default_format = if app_env == AppEnv::Production {
            LogFormat::Json
        } else {
            LogFormat::Text
        };
        let port: u16 = v.parse("APP_PORT", 8000, "expected a port number from 0 to 65535")?;
        let session_size: usize =
            v.parse("FEED_SESSION_SIZE", 200, "expected a positive integer")?;
        if !(50..=1000).contains(&session_size) {
            return Err(ConfigError {
                var: "FEED_SESSION_SIZE",
                message: "must be from 50 to 1000".into(),
            });
        }
        let cursor_secret = v.opt("CURSOR_SECRET");
        if let Some(s) = &cursor_secret
            && s.len() < 32
        {
            return Err(ConfigError {
                var: "CURSOR_SECRET",
                message: "must be at least 32 characters".into(),
            });
        }
        let config = Self {
            app_env,
            host: v.opt("APP_HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port,
            log_format: v.parse("LOG_FORMAT", default_format, "expected json or text")?,
            tracing: crate::telemetry::TracingConfig::from_vars(map)?,
            data_dir: v
                .opt("DATA_DIR")
                .map_or_else(|| PathBuf::from("data"), PathBuf::from),
            database_url: v.opt("DATABASE_URL"),
            database_max_connections: v.parse(
                "DATABASE_MAX_CONNECTIONS",
                20,
                "expected a positive whole number",
            )?,
            database_acquire_timeout: Duration::from_millis(v.parse(
                "DATABASE_ACQUIRE_TIMEOUT_MS",
                2_000,
                "expected milliseconds",
            )?),
            database_statement_timeout: Duration::from_millis(v.parse(
                "DATABASE_STATEMENT_TIMEOUT_MS",
                5_000,
                "expected milliseconds",
            )?),
            database_auto_migrate: v.parse(
                "DATABASE_AUTO_MIGRATE",
                app_env != AppEnv::Production,
                "expected true or false",
            )?,
            redis_url: v.opt("REDIS_URL"),
            redis_command_timeout: Duration::from_millis(v.parse(
                "REDIS_COMMAND_TIMEOUT_MS",
                50,
                "expected milliseconds",
            )?),
            clickhouse_url: v.opt("CLICKHOUSE_URL"),
            clickhouse_database: v
                .opt("CLICKHOUSE_DATABASE")
                .unwrap_or_else(|| "nova".into()),
            kafka_brokers: v.opt("KAFKA_BROKERS"),
            kafka_engagement_topic: v
                .opt("KAFKA_ENGAGEMENT_TOPIC")
                .unwrap_or_else(|| "engagement-events".into()),
            kafka_cdc_topic: v
                .opt("KAFKA_CDC_TOPIC")
                .unwrap_or_else(|| "cdc.posts".into()),
            kafka_consumer_group: v
                .opt("KAFKA_CONSUMER_GROUP")
                .unwrap_or_else(|| "video-ranking-service".into()),
            kafka_delivery_timeout: Duration::from_millis(v.parse(
                "KAFKA_DELIVERY_TIMEOUT_MS",
                2_000,
                "expected milliseconds",
            )?),
            kafka_session_timeout: Duration::from_millis(v.parse(
                "KAFKA_SESSION_TIMEOUT_MS",
                45_000,
                "expected milliseconds",
            )?),
            kafka_max_poll_interval: Duration::from_millis(v.parse(
                "KAFKA_MAX_POLL_INTERVAL_MS",
                300_000,
                "expected milliseconds",
            )?),
            event_spool_dir: v.opt("EVENT_SPOOL_DIR").map_or_else(
                || {
                    v.opt("DATA_DIR")
                        .map_or_else(|| PathBuf::from("data"), PathBuf::from)
                        .join("spool")
                },
                PathBuf::from,
            ),
            event_spool_max_bytes: v.parse(
                "EVENT_SPOOL_MAX_BYTES",
                64 * 1024 * 1024,
                "expected a whole number of bytes",
            )?,
            run_consumers: v.parse("RUN_CONSUMERS", true, "expected true or false")?,
            jwt: JwtSettings {
                public_key: v.opt("JWT_PUBLIC_KEY"),
                public_key_file: v.opt("JWT_PUBLIC_KEY_FILE").map(PathBuf::from),
                key_id: v.opt("JWT_KEY_ID"),
                public_keys_dir: v.opt("JWT_PUBLIC_KEYS_DIR").map(PathBuf::from),
                issuer: v.opt("JWT_ISSUER"),
                audience: v.opt("JWT_AUDIENCE"),
                require_issuer_and_audience: v.parse(
                    "JWT_REQUIRE_ISSUER_AND_AUDIENCE",
                    true,
                    "expected true or false",
                )?,
            },
            cursor_secret,
            cdn_base_url: v
                .opt("CDN_BASE_URL")
                .unwrap_or_else(|| "https://cdn.nova.example".into()),
            s3: Self::s3(&v)?,
            feed_session_size: session_size,
            feed_session_ttl: v.secs("FEED_SESSION_TTL_SECS", 3600, 3600)?,
            feed_session_ttl_jitter: v.secs("FEED_SESSION_TTL_JITTER_SECS", 300, 0)?,
            snapshot_refresh: v.secs("SNAPSHOT_REFRESH_SECS", 5, 1)?,
            experiment_metrics_interval: v.secs("EXPERIMENT_METRICS_INTERVAL_SECS", 300, 10)?,
            signal_prior_views: match v.parse(
                "SIGNAL_PRIOR_VIEWS",
                vrs_application::snapshot::DEFAULT_PRIOR_VIEWS,
                "expected a number of views",
            )? {
                p if p.is_finite() && (0.0..=1e6).contains(&p) => p,
                _ => {
                    return Err(ConfigError {
                        var: "SIGNAL_PRIOR_VIEWS",
                        message: "must be from 0 to 1000000".into(),
                    });
                }
            },
            model_params: Self::model_params(&v)?,
            rate_limit_per_second: v.parse(
                "RATE_LIMIT_PER_SECOND",
                20,
                "expected a whole number (0 disables)",
            )?,
            rate_limit_burst: v.parse(
                "RATE_LIMIT_BURST",
                40,
                "expected a positive whole number",
            )?,
            request_timeout: Duration::from_millis(v.parse(
                "REQUEST_TIMEOUT_MS",
                10_000,
                "expected milliseconds",
            )?),
            shutdown_grace: v.secs("SHUTDOWN_GRACE_SECS", 30, 0)?,
            http_header_read_timeout: v.secs("HTTP_HEADER_READ_TIMEOUT_SECS", 10, 1)?,
            http_max_connections: v.parse(
                "HTTP_MAX_CONNECTIONS",
                10_000,
                "expected a whole number of connections",
            )?,
            http_body_read_timeout: v.secs("HTTP_BODY_READ_TIMEOUT_SECS", 10, 1)?,
            auth_failures_per_ip_per_second: v.parse(
                "AUTH_FAILURES_PER_IP_PER_SECOND",
                10,
                "expected a whole number (0 disables)",
            )?,
            auth_failures_per_ip_burst: match v.parse(
                "AUTH_FAILURES_PER_IP_BURST",
                100u32,
                "expected a positive whole number",
            )? {
                0 => {
                    return Err(ConfigError {
                        var: "AUTH_FAILURES_PER_IP_BURST",
                        message: "must be at least 1 (set AUTH_FAILURES_PER_IP_PER_SECOND=0 to disable the limit)".into(),
                    });
                }
                n => n,
            },
            events_per_user_per_second: v.parse(
                "EVENTS_PER_USER_PER_SECOND",
                50,
                "expected a whole number (0 disables)",
            )?,
            events_per_user_burst: match v.parse(
                "EVENTS_PER_USER_BURST",
                300,
                "expected a whole number",
            )? {
                n if n < 100 => {
                    return Err(ConfigError {
                        var: "EVENTS_PER_USER_BURST",
                        message: "must be at least 100, one full batch".into(),
                    });
                }
                n => n,
            },
            client_ip_header: match v.opt("CLIENT_IP_HEADER") {
                Some(name) if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() => {
                    return Err(ConfigError {
                        var: "CLIENT_IP_HEADER",
                        message: format!("{name:?} is not a header name"),
                    });
                }
                other => other.map(|n| n.to_ascii_lowercase()),
            },
            demo: DemoSettings {
                videos: v.parse("DEMO_VIDEOS", 10_000, "expected a whole number")?,
                creators: v.parse("DEMO_CREATORS", 1_000, "expected a whole number")?,
                users: v.parse("DEMO_USERS", 2_000, "expected a whole number")?,
                seed: v.parse("DEMO_SEED", 42, "expected a whole number")?,
                train_model: v.parse("DEMO_TRAIN_MODEL", true, "expected true or false")?,
            },
        };
        config.check_production()?;
        Ok(config)
    }

    fn s3(v: &Vars<'_>) -> Result<Option<S3Settings>, ConfigError> {
        let Some(bucket) = v.opt("S3_BUCKET") else {
            return Ok(None);
        };
        let required = |var: &'static str| {
            v.opt(var).ok_or(ConfigError {
                var,
                message: "required when S3_BUCKET is set".into(),
            })
        };
        let ttl: u64 = v.parse(
            "S3_PRESIGN_TTL_SECS",
            900,
            "expected a whole number of seconds",
        )?;
        if !(1..=604_800).contains(&ttl) {
            return Err(ConfigError {
                var: "S3_PRESIGN_TTL_SECS",
                message: "must be from 1 to 604800 (7 days)".into(),
            });
        }
        Ok(Some(S3Settings {
            endpoint: v.opt("S3_ENDPOINT"),
            region: required("S3_REGION")?,
            bucket,
            access_key_id: required("AWS_ACCESS_KEY_ID")?,
            secret_access_key: required("AWS_SECRET_ACCESS_KEY")?,
            presign_ttl: Duration::from_secs(ttl),
        }))
    }

    /// Production refuses the conveniences of development; `needs` adds what the command at hand
    /// cannot run without there (a migration Job needs no JWT key, a worker no cursor secret).
    pub fn check_production_needs(&self, needs: Needs) -> Result<(), ConfigError> {
        if self.app_env != AppEnv::Production {
            return Ok(());
        }
        if needs == Needs::Serving {
            if !self.jwt.has_keys() {
                return Err(ConfigError {
                    var: "JWT_PUBLIC_KEY",
                    message: "APP_ENV=production needs a public key (JWT_PUBLIC_KEY, JWT_PUBLIC_KEY_FILE or JWT_PUBLIC_KEYS_DIR)".into(),
                });
            }
            if self.cursor_secret.is_none() {
                return Err(ConfigError {
                    var: "CURSOR_SECRET",
                    message: "APP_ENV=production needs a secret of at least 32 characters".into(),
                });
            }
            if self.jwt.require_issuer_and_audience {
                for (var, set) in [
                    ("JWT_ISSUER", self.jwt.issuer.is_some()),
                    ("JWT_AUDIENCE", self.jwt.audience.is_some()),
                ] {
                    if !set {
                        return Err(ConfigError {
                            var,
                            message: "APP_ENV=production verifies the issuer and audience of every token; set it (or JWT_REQUIRE_ISSUER_AND_AUDIENCE=false to accept any)".into(),
                        });
                    }
                }
            }
        }
        let stores: &[(&'static str, bool)] = match needs {
            Needs::Serving => &[
                ("DATABASE_URL", self.database_url.is_some()),
                ("REDIS_URL", self.redis_url.is_some()),
                ("CLICKHOUSE_URL", self.clickhouse_url.is_some()),
                ("KAFKA_BROKERS", self.kafka_brokers.is_some()),
            ],
            Needs::Consuming => &[
                ("DATABASE_URL", self.database_url.is_some()),
                ("CLICKHOUSE_URL", self.clickhouse_url.is_some()),
                ("KAFKA_BROKERS", self.kafka_brokers.is_some()),
            ],
            Needs::Nothing => &[],
        };
        match stores.iter().find(|(_, set)| !set) {
            Some((var, _)) => Err(ConfigError {
                var,
                message: "APP_ENV=production refuses the in-memory adapters; set it".into(),
            }),
            None => Ok(()),
        }
    }

    /// Production refuses the conveniences of development.
    fn check_production(&self) -> Result<(), ConfigError> {
        if self.database_max_connections == 0 {
            return Err(ConfigError {
                var: "DATABASE_MAX_CONNECTIONS",
                message: "must be at least 1".into(),
            });
        }
        if self.app_env != AppEnv::Production {
            return Ok(());
        }
        if self.database_auto_migrate {
            return Err(ConfigError {
                var: "DATABASE_AUTO_MIGRATE",
                message: "APP_ENV=production never migrates implicitly; run `video-ranking-service migrate`".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = Config::from_vars(&vars(&[])).expect("defaults are valid");
        assert_eq!(c.port, 8000);
        assert_eq!(c.app_env, AppEnv::Development);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.feed_session_size, 200);
        assert_eq!(c.feed_session_ttl, Duration::from_secs(3600));
        assert_eq!(c.clickhouse_database, "nova");
        assert_eq!(c.database_max_connections, 20);
        assert_eq!(c.redis_command_timeout, Duration::from_millis(50));
        assert!(c.database_auto_migrate);
        assert!(c.s3.is_none());
        assert_eq!(c.kafka_engagement_topic, "engagement-events");
        assert_eq!(c.kafka_cdc_topic, "cdc.posts");
        assert_eq!(c.event_spool_dir, PathBuf::from("data/spool"));
        assert!(c.run_consumers);
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (var, value) in [
            ("APP_PORT", "eighty"),
            ("APP_ENV", "staging"),
            ("FEED_SESSION_SIZE", "5"),
            ("FEED_SESSION_TTL_SECS", "60"),
            ("CURSOR_SECRET", "short"),
            ("LOG_FORMAT", "xml"),
            ("RATE_LIMIT_PER_SECOND", "-1"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("REDIS_COMMAND_TIMEOUT_MS", "fast"),
            ("DATABASE_AUTO_MIGRATE", "maybe"),
        ] {
            let err = Config::from_vars(&vars(&[(var, value)]))
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.starts_with(var)),
                "{var}: {err:?}"
            );
        }
    }

    #[test]
    fn s3_settings_need_region_and_credentials() {
        let err = Config::from_vars(&vars(&[("S3_BUCKET", "media")])).err();
        assert_eq!(err.map(|e| e.var), Some("S3_REGION"));
        let c = Config::from_vars(&vars(&[
            ("S3_BUCKET", "media"),
            ("S3_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ]))
        .expect("complete S3 settings");
        assert_eq!(c.s3.map(|s| s.presign_ttl), Some(Duration::from_secs(900)));
    }

    #[test]
    fn debug_output_redacts_every_secret() {
        let c = Config::from_vars(&vars(&[
            ("DATABASE_URL", "postgres://nova:pg-pass-1@db/nova"),
            ("REDIS_URL", "redis://:redis-pass-2@cache:6379"),
            ("CLICKHOUSE_URL", "tcp://default:ch-pass-3@ch:9000"),
            ("CURSOR_SECRET", "cursor-secret-4-0123456789abcdef0123"),
            ("S3_BUCKET", "media"),
            ("S3_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIA-key-5"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-6"),
        ]))
        .expect("valid");
        let shown = format!("{c:?}");
        for secret in [
            "pg-pass-1",
            "redis-pass-2",
            "ch-pass-3",
            "cursor-secret-4",
            "AKIA-key-5",
            "aws-secret-6",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("<redacted>") && shown.contains("media"),
            "{shown}"
        );
    }

    #[test]
    fn production_needs_keys_secret_and_real_stores_to_serve() {
        let needs = |pairs: &[(&str, &str)], needs: Needs| {
            Config::from_vars(&vars(pairs))
                .expect("the common settings are valid")
                .check_production_needs(needs)
                .err()
                .map(|e| e.var)
        };
        let prod = [("APP_ENV", "production")];
        assert_eq!(needs(&prod, Needs::Serving), Some("JWT_PUBLIC_KEY"));
        let keyed = [
            ("APP_ENV", "production"),
            ("JWT_PUBLIC_KEY", "pem"),
            ("CURSOR_SECRET", "0123456789abcdef0123456789abcdef"),
        ];
        assert_eq!(needs(&keyed, Needs::Serving), Some("JWT_ISSUER"));
        let with_issuer = [keyed.as_slice(), &[("JWT_ISSUER", "https://auth.nova")]].concat();
        assert_eq!(needs(&with_issuer, Needs::Serving), Some("JWT_AUDIENCE"));
        let scoped = [with_issuer.as_slice(), &[("JWT_AUDIENCE", "reels")]].concat();
        assert_eq!(needs(&scoped, Needs::Serving), Some("DATABASE_URL"));
        let relaxed = [
            keyed.as_slice(),
            &[("JWT_REQUIRE_ISSUER_AND_AUDIENCE", "false")],
        ]
        .concat();
        assert_eq!(needs(&relaxed, Needs::Serving), Some("DATABASE_URL"));
        // A worker needs no key, only the stores it consumes into; tools need nothing more.
        assert_eq!(needs(&prod, Needs::Consuming), Some("DATABASE_URL"));
        let stores = [
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://db/nova"),
            ("CLICKHOUSE_URL", "tcp://ch:9000"),
            ("KAFKA_BROKERS", "kafka:9092"),
        ];
        assert_eq!(needs(&stores, Needs::Consuming), None);
        assert_eq!(needs(&stores, Needs::Serving), Some("JWT_PUBLIC_KEY"));
        assert_eq!(needs(&prod, Needs::Nothing), None);
        assert_eq!(
            needs(&[("APP_ENV", "development")], Needs::Serving),
            None,
            "development runs on the embedded adapters"
        );
    }
}
