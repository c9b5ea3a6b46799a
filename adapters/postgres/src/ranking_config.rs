//! `RankingConfigStore` on the versioned `ranking_weights` table.

use crate::error::port_error;
use crate::store::PostgresStore;
use async_trait::async_trait;
use vrs_application::ports::{PortError, RankingConfigStore};
use vrs_domain::{Signal, Weights};

impl PostgresStore {
    /// Stores `weights` as a new version and makes it the only active one, in one transaction:
    /// readers see either the old set or the new one, never none or two. Returns the new version.
    pub async fn activate_weights(&self, weights: Weights) -> Result<i64, PortError> {
        let mut tx = self.pool.begin().await.map_err(port_error)?;
        // Serializes activations (two would both deactivate the old set, and the second insert
        // would then violate the one-active index); plain reads are not blocked by this mode.
        sqlx::query("LOCK TABLE ranking_weights IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(port_error)?;
        sqlx::query("UPDATE ranking_weights SET is_active = false WHERE is_active")
            .execute(&mut *tx)
            .await
            .map_err(port_error)?;
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO ranking_weights \
                 (freshness, completion, engagement, affinity, model, activated_at, is_active) \
             VALUES ($1, $2, $3, $4, $5, now(), true) \
             RETURNING version",
        )
        .bind(weights.get(Signal::Freshness))
        .bind(weights.get(Signal::Completion))
        .bind(weights.get(Signal::Engagement))
        .bind(weights.get(Signal::Affinity))
        .bind(weights.get(Signal::Model))
        .fetch_one(&mut *tx)
        .await
        .map_err(port_error)?;
        tx.commit().await.map_err(port_error)?;
        Ok(version)
    }
}

#[async_trait]
impl RankingConfigStore for PostgresStore {
    /// `InvalidData` when no set is active or the active one fails [`Weights::new`]: the schema's
    /// checks make both unreachable short of manual edits, and the snapshot then keeps its last set.
    async fn active_weights(&self) -> Result<Weights, PortError> {
        let row: Option<(i64, f64, f64, f64, f64, f64)> = sqlx::query_as(
            "SELECT version, freshness, completion, engagement, affinity, model \
             FROM ranking_weights WHERE is_active",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(port_error)?;
        let (version, freshness, completion, engagement, affinity, model) =
            row.ok_or_else(|| PortError::InvalidData("no active ranking weight set".into()))?;
        Weights::new(freshness, completion, engagement, affinity, model).map_err(|e| {
            PortError::InvalidData(format!("ranking weight set version {version}: {e}"))
        })
    }
}
