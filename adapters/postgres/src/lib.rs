//! PostgreSQL adapters: the video catalog, the follow graph, the ranking configuration and the model
//! registry, plus the schema migrations they run on.
//!
//! One [`PostgresStore`] (a connection pool) implements every port; `bootstrap` hands it out as each
//! `Arc<dyn Port>`. Migrations live in the workspace's top-level `migrations/` and are embedded in the
//! binary; [`migrate`] applies them and [`pending_migrations`] lets a production start refuse an
//! outdated schema.
//!
//! Queries are built at run time (`sqlx::query`), not checked at compile time: no database exists
//! at build time. The contract suites of `vrs_application::contract` pin their behavior instead.

mod catalog;
mod config;
mod error;
mod experiments;
mod follows;
mod migrations;
mod model_registry;
mod ranking_config;
mod store;

pub use config::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_STATEMENT_TIMEOUT, PostgresConfig,
};
pub use error::PostgresError;
pub use migrations::{migrate, migration_files, pending_migrations};
pub use store::PostgresStore;

/// The pool type the migration functions take, re-exported so callers need no direct `sqlx` dependency.
pub use sqlx::PgPool;
