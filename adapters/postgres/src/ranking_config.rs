//! `RankingConfigStore` on the versioned `ranking_weights` table.

use crate::error::port_error;
use crate::store::PostgresStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vrs_application::ports::{PortError, RankingConfigStore, WeightSet};
use vrs_domain::{Signal, Weights};

/// A `ranking_weights` row.
type Row = (i64, f64, f64, f64, f64, f64, Option<DateTime<Utc>>, bool);

const COLUMNS: &str =
    "version, freshness, completion, engagement, affinity, model, activated_at, is_active";

/// `InvalidData` when a stored set fails [`Weights::new`]: the schema's checks make it unreachable
/// short of manual edits, and the snapshot then keeps its last set.
fn weight_set(row: Row) -> Result<WeightSet, PortError> {
    let (version, freshness, completion, engagement, affinity, model, activated_at, active) = row;
    let weights =
        Weights::new(freshness, completion, engagement, affinity, model).map_err(|e| {
            PortError::InvalidData(format!("ranking weight set version {version}: {e}"))
        })?;
    Ok(WeightSet {
        version,
        weights,
        // Never-activated rows (inserted by hand) report their version's creation as unknown.
        activated_at: activated_at.unwrap_or(DateTime::UNIX_EPOCH),
        active,
    })
}

impl PostgresStore {
    /// Stores `weights` as a new version and makes it the only active one, in one transaction:
    /// readers see either the old set or the new one, never none or two. Returns the new version.
    pub async fn activate_weights(&self, weights: Weights) -> Result<i64, PortError> {
        Ok(self.activate(weights).await?.version)
    }
}

#[async_trait]
impl RankingConfigStore for PostgresStore {
    async fn active_weights(&self) -> Result<Weights, PortError> {
        Ok(self.active_set().await?.weights)
    }

    /// `InvalidData` when no set is active (unreachable short of manual edits).
    async fn active_set(&self) -> Result<WeightSet, PortError> {
        let row: Option<Row> = self
            .traced("SELECT", "ranking_weights", async {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM ranking_weights WHERE is_active"
                ))
                .fetch_optional(&self.pool)
                .await
                .map_err(port_error)
            })
            .await?;
        weight_set(
            row.ok_or_else(|| PortError::InvalidData("no active ranking weight set".into()))?,
        )
    }

    async fn activate(&self, weights: Weights) -> Result<WeightSet, PortError> {
        let row = self
            .traced("INSERT", "ranking_weights", self.insert_active(weights))
            .await?;
        weight_set(row)
    }

    async fn history(&self, limit: usize) -> Result<Vec<WeightSet>, PortError> {
        let rows: Vec<Row> = self
            .traced("SELECT", "ranking_weights", async {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM ranking_weights ORDER BY version DESC LIMIT $1"
                ))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(port_error)
            })
            .await?;
        rows.into_iter().map(weight_set).collect()
    }
}

impl PostgresStore {
    /// The transaction of [`RankingConfigStore::activate`].
    async fn insert_active(&self, weights: Weights) -> Result<Row, PortError> {
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
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO ranking_weights \
                 (freshness, completion, engagement, affinity, model, activated_at, is_active) \
             VALUES ($1, $2, $3, $4, $5, now(), true) \
             RETURNING {COLUMNS}"
        ))
        .bind(weights.get(Signal::Freshness))
        .bind(weights.get(Signal::Completion))
        .bind(weights.get(Signal::Engagement))
        .bind(weights.get(Signal::Affinity))
        .bind(weights.get(Signal::Model))
        .fetch_one(&mut *tx)
        .await
        .map_err(port_error)?;
        tx.commit().await.map_err(port_error)?;
        Ok(row)
    }
}
