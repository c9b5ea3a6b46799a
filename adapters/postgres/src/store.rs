//! The connection pool every port implementation shares, its gauges, and its health probe.

use crate::config::{PostgresConfig, redacted};
use crate::error::{PostgresError, port_error};
use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use vrs_application::ports::{HealthProbe, PortError};

/// The PostgreSQL adapter: a connection pool implementing `VideoCatalog`, `FollowGraph`,
/// `RankingConfigStore`, `ModelRegistry` and the `postgres` `HealthProbe`. Cloning shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
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
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool (its connections' settings are the caller's).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
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
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(port_error)
    }
}
