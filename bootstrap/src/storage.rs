//! Schemas at the edge of the process: PostgreSQL (connecting, the schema check, `migrate`) and
//! ClickHouse (`clickhouse-init`).

use crate::config::{AppEnv, Config};
use anyhow::{Context, bail};
use vrs_adapter_postgres::{PostgresConfig, PostgresStore};

/// The pool settings from the configuration.
pub fn postgres_config(config: &Config, url: &str) -> PostgresConfig {
    PostgresConfig {
        url: url.to_owned(),
        max_connections: config.database_max_connections,
        acquire_timeout: config.database_acquire_timeout,
        statement_timeout: config.database_statement_timeout,
    }
}

/// Connects to PostgreSQL, then makes sure the schema is current: outside production pending
/// migrations are applied when `DATABASE_AUTO_MIGRATE` allows it; production never migrates
/// implicitly and refuses to start on a stale schema.
pub async fn connect(config: &Config, url: &str) -> anyhow::Result<PostgresStore> {
    let store = PostgresStore::connect(&postgres_config(config, url))
        .await
        .context("DATABASE_URL: cannot connect to PostgreSQL")?;
    if config.database_auto_migrate && config.app_env != AppEnv::Production {
        let applied = vrs_adapter_postgres::migrate(store.pool(), |file| {
            tracing::info!(file, "applied migration");
        })
        .await
        .context("applying migrations")?;
        if applied > 0 {
            tracing::info!(applied, "database schema migrated (DATABASE_AUTO_MIGRATE)");
        }
    } else {
        check_schema(&store).await?;
    }
    Ok(store)
}

/// Fails when migrations are pending, naming the command that applies them.
pub async fn check_schema(store: &PostgresStore) -> anyhow::Result<()> {
    let pending = vrs_adapter_postgres::pending_migrations(store.pool())
        .await
        .context("reading the applied migrations")?;
    if !pending.is_empty() {
        bail!(
            "the database schema is not current ({} pending: {}); run `video-ranking-service migrate` first",
            pending.len(),
            pending.join(", ")
        );
    }
    Ok(())
}

/// `migrate`: applies pending migrations, one line per file.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let Some(url) = &config.database_url else {
        bail!("DATABASE_URL: migrate needs a PostgreSQL database");
    };
    let store = PostgresStore::connect(&postgres_config(config, url))
        .await
        .context("DATABASE_URL: cannot connect to PostgreSQL")?;
    println!("Running migrations...");
    let applied = vrs_adapter_postgres::migrate(store.pool(), |file| {
        println!("Migration {file}: OK");
    })
    .await
    .context("migration failed")?;
    if applied == 0 {
        println!("No pending migrations: the schema is up to date");
    }
    println!("Migrations completed successfully");
    store.close().await;
    Ok(())
}

/// `check-schema`: exits non-zero when migrations are pending (a readiness gate for deployments).
pub async fn check_schema_command(config: &Config) -> anyhow::Result<()> {
    let Some(url) = &config.database_url else {
        bail!("DATABASE_URL: check-schema needs a PostgreSQL database");
    };
    let store = PostgresStore::connect(&postgres_config(config, url))
        .await
        .context("DATABASE_URL: cannot connect to PostgreSQL")?;
    check_schema(&store).await?;
    println!("The database schema is current");
    Ok(())
}

/// `clickhouse-init`: creates the ClickHouse schema; the retention and index statements only where
/// the server supports them.
pub async fn clickhouse_init(config: &Config) -> anyhow::Result<()> {
    let Some(url) = &config.clickhouse_url else {
        bail!("CLICKHOUSE_URL: clickhouse-init needs a ClickHouse server");
    };
    let report = vrs_adapter_clickhouse::init_schema(url, &config.clickhouse_database)
        .await
        .context("initialising the ClickHouse schema")?;
    println!(
        "ClickHouse {}: database `{}` ready ({} statements{})",
        report.server_version,
        config.clickhouse_database,
        report.base_statements,
        if report.modern_applied {
            format!(
                ", plus {} for retention and indexes",
                report.modern_statements
            )
        } else {
            "; this server version has no TTL or skip indexes, so those were left out".to_owned()
        }
    );
    Ok(())
}
