//! The connection pool every port implementation shares, its gauges, and its health probe.

use crate::config::{PostgresConfig, redacted};
use crate::error::{PostgresError, port_error};
use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use tracing::Instrument;
use tracing::field::Empty;
use vrs_application::ports::{HealthProbe, PortError};

/// The PostgreSQL adapter: a connection pool implementing `VideoCatalog`, `FollowGraph`,
/// `RankingConfigStore`, `ModelRegistry` and the `postgres` `HealthProbe`. Cloning shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    /// What every query's client span says about the server.
    peer: Arc<Peer>,
}

/// The server and database the pool connects to.
#[derive(Debug)]
struct Peer {
    address: String,
    port: u16,
    database: String,
}

impl Peer {
    fn of(options: &PgConnectOptions) -> Self {
        Self {
            address: options.get_host().to_owned(),
            port: options.get_port(),
            database: options
                .get_database()
                .unwrap_or(options.get_username())
                .to_owned(),
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool_size", &self.pool.size())
            .field("pool_idle", &self.pool.num_idle())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Opens the pool and one connection, so an unreachable server or bad credentials fail startup.
    ///
    /// Every pooled connection runs with the configured `statement_timeout`.
    pub async fn connect(config: &PostgresConfig) -> Result<Self, PostgresError> {
        if config.max_connections == 0 {
            return Err(PostgresError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        if !(config.url.starts_with("postgres://") || config.url.starts_with("postgresql://")) {
            return Err(PostgresError::Config(format!(
                "DATABASE_URL {} must start with postgres:// or postgresql://",
                redacted(&config.url)
            )));
        }
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| {
                PostgresError::Config(format!(
                    "DATABASE_URL {} is not a PostgreSQL URL: {e}",
                    redacted(&config.url)
                ))
            })?
            // A session default sent at connection start: no extra round trip per checkout.
            .options([(
                "statement_timeout",
                config.statement_timeout.as_millis().to_string(),
            )]);
        let peer = Arc::new(Peer::of(&options));
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool, peer })
    }

    /// Wraps an existing pool (its connections' settings are the caller's).
    pub fn from_pool(pool: PgPool) -> Self {
        let peer = Arc::new(Peer::of(&pool.connect_options()));
        Self { pool, peer }
    }

    /// Runs `work` inside a client span named `<operation> <table>` (OpenTelemetry database
    /// conventions), marked failed when `work` fails.
    pub(crate) async fn traced<T>(
        &self,
        operation: &'static str,
        table: &'static str,
        work: impl Future<Output = Result<T, PortError>>,
    ) -> Result<T, PortError> {
        let span = tracing::info_span!(
            "postgres",
            otel.name = %format_args!("{operation} {table}"),
            otel.kind = "client",
            otel.status_code = Empty,
            db.system = "postgresql",
            db.operation.name = operation,
            db.collection.name = table,
            db.namespace = self.peer.database.as_str(),
            server.address = self.peer.address.as_str(),
            server.port = self.peer.port,
        );
        let result = work.instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    /// The pool, for [`crate::migrate`], [`crate::pending_migrations`] and administrative queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Sets the gauges `database_pool_size` (open connections) and `database_pool_available` (idle
    /// ones). Not updated per query, to keep the hot path free of it: `bootstrap` calls this on an
    /// interval (every few seconds is enough for dashboards and saturation alerts).
    pub fn record_pool_metrics(&self) {
        metrics::gauge!("database_pool_max_size")
            .set(f64::from(self.pool.options().get_max_connections()));
        metrics::gauge!("database_pool_size").set(f64::from(self.pool.size()));
        metrics::gauge!("database_pool_available").set(self.pool.num_idle() as f64);
    }

    /// Waits for checked-out connections to return, then closes them all (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl HealthProbe for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn check(&self) -> Result<(), PortError> {
        self.traced("SELECT", "health", async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(port_error)
        })
        .await
    }
}
