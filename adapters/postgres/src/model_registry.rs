//! `ModelRegistry` on the `ml_models` table.

use crate::error::port_error;
use crate::store::PostgresStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vrs_application::ports::{ModelInfo, ModelRecord, ModelRegistry, PortError};

impl PostgresStore {
    /// Registers `version` (or redeploys it, keeping its inference count) with its offline
    /// `metrics` and makes it the only active model, in one transaction.
    pub async fn deploy_model(
        &self,
        version: &str,
        metrics: &serde_json::Value,
        deployed_at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut tx = self.pool.begin().await.map_err(port_error)?;
        // Serializes deployments, as for weight sets; reads are not blocked.
        sqlx::query("LOCK TABLE ml_models IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(port_error)?;
        sqlx::query("UPDATE ml_models SET is_active = false, updated_at = now() WHERE is_active")
            .execute(&mut *tx)
            .await
            .map_err(port_error)?;
        // Bound as text and cast, which needs no JSON support compiled into the driver.
        sqlx::query(
            "INSERT INTO ml_models (version, deployed_at, is_active, performance_metrics) \
             VALUES ($1, $2, true, $3::text::jsonb) \
             ON CONFLICT (version) DO UPDATE SET \
                 deployed_at = EXCLUDED.deployed_at, is_active = true, \
                 performance_metrics = EXCLUDED.performance_metrics, updated_at = now()",
        )
        .bind(version)
        .bind(deployed_at)
        .bind(metrics.to_string())
        .execute(&mut *tx)
        .await
        .map_err(port_error)?;
        log_activation(&mut tx, version, deployed_at).await?;
        tx.commit().await.map_err(port_error)
    }

    /// Finds the version active before the current one and activates it, in one transaction under
    /// the registry's lock, so a concurrent activation cannot slip in between.
    async fn rollback_in_tx(&self, at: DateTime<Utc>) -> Result<Option<String>, PortError> {
        let mut tx = self.locked_registry().await?;
        let previous: Option<String> = sqlx::query_scalar(
            "SELECT a.version FROM ml_model_activations a \
             WHERE a.version IS DISTINCT FROM (SELECT version FROM ml_models WHERE is_active) \
             ORDER BY a.id DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(port_error)?;
        let Some(version) = previous else {
            return Ok(None);
        };
        make_active(&mut tx, &version, at).await?;
        tx.commit().await.map_err(port_error)?;
        Ok(Some(version))
    }

    /// Makes `version` the only active model in one transaction; `false` for an unknown one.
    async fn activate_in_tx(&self, version: &str, at: DateTime<Utc>) -> Result<bool, PortError> {
        let mut tx = self.locked_registry().await?;
        let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM ml_models WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(port_error)?;
        if known.is_none() {
            return Ok(false);
        }
        make_active(&mut tx, version, at).await?;
        tx.commit().await.map_err(port_error)?;
        Ok(true)
    }

    /// A transaction holding the registry's lock: activations are serialized, reads are not
    /// blocked.
    async fn locked_registry(&self) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, PortError> {
        let mut tx = self.pool.begin().await.map_err(port_error)?;
        sqlx::query("LOCK TABLE ml_models IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(port_error)?;
        Ok(tx)
    }

    /// Deactivates the active model, if any: rankings then drop the model signal.
    pub async fn deactivate_model(&self) -> Result<(), PortError> {
        sqlx::query("UPDATE ml_models SET is_active = false, updated_at = now() WHERE is_active")
            .execute(&self.pool)
            .await
            .map_err(port_error)?;
        Ok(())
    }

    /// Inferences recorded for `version`; `None` for an unknown version.
    pub async fn inference_count(&self, version: &str) -> Result<Option<u64>, PortError> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT inference_count FROM ml_models WHERE version = $1")
                .bind(version)
                .fetch_optional(&self.pool)
                .await
                .map_err(port_error)?;
        count
            .map(|n| {
                u64::try_from(n).map_err(|_| {
                    PortError::InvalidData(format!("model {version}: negative inference count"))
                })
            })
            .transpose()
    }
}

/// Within a locked transaction: deactivates the active version, activates `version` (known to
/// exist) as deployed at `at`, and records the activation.
async fn make_active(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    version: &str,
    at: DateTime<Utc>,
) -> Result<(), PortError> {
    sqlx::query("UPDATE ml_models SET is_active = false, updated_at = now() WHERE is_active")
        .execute(&mut **tx)
        .await
        .map_err(port_error)?;
    sqlx::query(
        "UPDATE ml_models SET is_active = true, deployed_at = $2, updated_at = now() \
         WHERE version = $1",
    )
    .bind(version)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(port_error)?;
    log_activation(tx, version, at).await
}

async fn log_activation(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    version: &str,
    at: DateTime<Utc>,
) -> Result<(), PortError> {
    sqlx::query("INSERT INTO ml_model_activations (version, activated_at) VALUES ($1, $2)")
        .bind(version)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(port_error)?;
    Ok(())
}

type ModelRow = (
    String,
    bool,
    DateTime<Utc>,
    DateTime<Utc>,
    String,
    i64,
    Option<i32>,
);

#[async_trait]
impl ModelRegistry for PostgresStore {
    async fn active_model(&self) -> Result<Option<ModelInfo>, PortError> {
        let row: Option<(String, DateTime<Utc>)> = self
            .traced("SELECT", "ml_models", async {
                sqlx::query_as("SELECT version, deployed_at FROM ml_models WHERE is_active")
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(port_error)
            })
            .await?;
        Ok(row.map(|(version, deployed_at)| ModelInfo {
            version,
            deployed_at,
        }))
    }

    async fn record_inferences(&self, version: &str, count: u64) -> Result<(), PortError> {
        if count == 0 {
            return Ok(());
        }
        let count = i64::try_from(count)
            .map_err(|_| PortError::Rejected(format!("inference count {count} is out of range")))?;
        // One atomic increment per snapshot refresh and replica: no read-modify-write race.
        self.traced("UPDATE", "ml_models", async {
            sqlx::query(
                "UPDATE ml_models \
                 SET inference_count = inference_count + $2, updated_at = now() \
                 WHERE version = $1",
            )
            .bind(version)
            .bind(count)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(port_error)
        })
        .await
    }

    async fn register(
        &self,
        version: &str,
        metrics: &serde_json::Value,
        artifact: &[u8],
        at: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        if version.is_empty() {
            return Err(PortError::Rejected(
                "a model version must not be empty".into(),
            ));
        }
        let inserted = self
            .traced("INSERT", "ml_models", async {
                sqlx::query(
                    "INSERT INTO ml_models \
                         (version, deployed_at, is_active, performance_metrics, artifact, created_at) \
                     VALUES ($1, $2, false, $3::text::jsonb, $4, $2) \
                     ON CONFLICT (version) DO NOTHING",
                )
                .bind(version)
                .bind(at)
                .bind(metrics.to_string())
                .bind(artifact)
                .execute(&self.pool)
                .await
                .map_err(port_error)
            })
            .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn models(&self) -> Result<Vec<ModelRecord>, PortError> {
        let rows: Vec<ModelRow> = self
            .traced("SELECT", "ml_models", async {
                sqlx::query_as(
                    "SELECT version, is_active, created_at, deployed_at, \
                            performance_metrics::text, inference_count, octet_length(artifact) \
                     FROM ml_models ORDER BY created_at DESC, version DESC",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(port_error)
            })
            .await?;
        rows.into_iter()
            .map(
                |(version, is_active, created_at, deployed_at, metrics, count, size)| {
                    Ok(ModelRecord {
                        performance_metrics: serde_json::from_str(&metrics).map_err(|e| {
                            PortError::InvalidData(format!("model {version}: metrics: {e}"))
                        })?,
                        inference_count: u64::try_from(count).unwrap_or(0),
                        artifact_bytes: size.map_or(0, |s| u64::try_from(s).unwrap_or(0)),
                        version,
                        is_active,
                        created_at,
                        deployed_at,
                    })
                },
            )
            .collect()
    }

    async fn activate(&self, version: &str, at: DateTime<Utc>) -> Result<bool, PortError> {
        self.traced("UPDATE", "ml_models", self.activate_in_tx(version, at))
            .await
    }

    async fn rollback(&self, at: DateTime<Utc>) -> Result<Option<String>, PortError> {
        self.traced("UPDATE", "ml_models", self.rollback_in_tx(at))
            .await
    }

    async fn artifact(&self, version: &str) -> Result<Option<Vec<u8>>, PortError> {
        let bytes: Option<Option<Vec<u8>>> = self
            .traced("SELECT", "ml_models", async {
                sqlx::query_scalar("SELECT artifact FROM ml_models WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(port_error)
            })
            .await?;
        Ok(bytes.flatten())
    }
}
