//! ClickHouse adapter: the [`SignalStore`](vrs_application::ports::SignalStore) over hourly
//! aggregate tables fed by materialized views, the idempotent insert path of raw engagement events,
//! the `clickhouse` health probe, and schema initialisation (`clickhouse/init-db*.sql`).
//!
//! Works with ClickHouse 18.16 (Debian 12) and modern servers over the native protocol.
//!
//! Metrics: `clickhouse_query_duration_seconds{query}` and
//! `clickhouse_query_errors_total{query, error_type}`, with `query` one of `video_stats`,
//! `trending`, `affinity`, `most_active_users`, `known_event_ids`, `insert_events`, `health`,
//! `init_schema`, and `error_type` one of `timeout`, `connection`, `server`, `decode`.

mod config;
mod pool;
pub mod queries;
mod schema;
mod sink;
mod store;

pub use config::{ClickHouseConfig, DEFAULT_DATABASE};
pub use pool::{QUERY_DURATION_METRIC, QUERY_ERRORS_METRIC};
pub use schema::{
    DATABASE_PLACEHOLDER, INIT_DB_MODERN_SQL, INIT_DB_REPLICATED_SQL, INIT_DB_SQL, InitReport,
    MODERN_MAJOR_VERSION, init_schema, statements, supports_modern,
};
pub use sink::ClickHouseEventSink;
pub use store::{ClickHouseHealthProbe, ClickHouseSignalStore};

/// A failure outside the port calls: configuration or schema initialisation.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    /// The URL or database name is unusable.
    #[error("invalid ClickHouse configuration: {0}")]
    InvalidConfig(String),
    /// A statement failed; `statement` is its first line.
    #[error("ClickHouse statement `{statement}` failed: {error}")]
    Query { statement: String, error: String },
}
