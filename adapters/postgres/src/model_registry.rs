//! `ModelRegistry` on the `ml_models` table.

use crate::error::port_error;
use crate::store::PostgresStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vrs_application::ports::{ModelInfo, ModelRegistry, PortError};

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
        tx.commit().await.map_err(port_error)
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
}
