//! `ExperimentStore` on the `experiments` table (migration 016).

use crate::error::port_error;
use crate::store::PostgresStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vrs_application::ports::{ExperimentStore, PortError, Transition};
use vrs_domain::{Experiment, ExperimentState, Variant};

type Row = (
    Uuid,
    String,
    String,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

const COLUMNS: &str = "id, name, description, layer, salt, state, variants::text, created_at, \
                       started_at, stopped_at";

fn experiment(row: Row) -> Result<Experiment, PortError> {
    let (id, name, description, layer, salt, state, variants, created_at, started_at, stopped_at) =
        row;
    let state = ExperimentState::parse(&state)
        .ok_or_else(|| PortError::InvalidData(format!("experiment {id}: state {state:?}")))?;
    let variants: Vec<Variant> = serde_json::from_str(&variants)
        .map_err(|e| PortError::InvalidData(format!("experiment {id}: variants: {e}")))?;
    Ok(Experiment {
        id,
        name,
        description,
        layer,
        salt,
        state,
        variants,
        created_at,
        started_at,
        stopped_at,
    })
}

/// Whether a failure is the one-running-per-layer index refusing a start.
fn layer_taken(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

impl PostgresStore {
    async fn select_experiments(
        &self,
        filter: &str,
        id: Option<Uuid>,
    ) -> Result<Vec<Experiment>, PortError> {
        let sql =
            format!("SELECT {COLUMNS} FROM experiments {filter} ORDER BY created_at DESC, id");
        let rows: Vec<Row> = self
            .traced("SELECT", "experiments", async {
                let mut q = sqlx::query_as(&sql);
                if let Some(id) = id {
                    q = q.bind(id);
                }
                q.fetch_all(&self.pool).await.map_err(port_error)
            })
            .await?;
        rows.into_iter().map(experiment).collect()
    }

    /// Why a state change touched no row.
    async fn no_transition(&self, id: Uuid) -> Result<Transition, PortError> {
        Ok(match self.experiment(id).await? {
            None => Transition::NotFound,
            Some(e) => Transition::WrongState(e.state),
        })
    }
}

#[async_trait]
impl ExperimentStore for PostgresStore {
    async fn create(&self, e: &Experiment) -> Result<bool, PortError> {
        let variants = serde_json::to_string(&e.variants)
            .map_err(|err| PortError::Rejected(format!("variants: {err}")))?;
        let inserted = self
            .traced("INSERT", "experiments", async {
                sqlx::query(
                    "INSERT INTO experiments \
                         (id, name, description, layer, salt, state, variants, created_at, \
                          started_at, stopped_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(e.id)
                .bind(&e.name)
                .bind(&e.description)
                .bind(&e.layer)
                .bind(&e.salt)
                .bind(e.state.as_str())
                .bind(variants)
                .bind(e.created_at)
                .bind(e.started_at)
                .bind(e.stopped_at)
                .execute(&self.pool)
                .await
                .map_err(port_error)
            })
            .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn experiments(&self) -> Result<Vec<Experiment>, PortError> {
        self.select_experiments("", None).await
    }

    async fn experiment(&self, id: Uuid) -> Result<Option<Experiment>, PortError> {
        Ok(self
            .select_experiments("WHERE id = $1", Some(id))
            .await?
            .into_iter()
            .next())
    }

    async fn running(&self) -> Result<Vec<Experiment>, PortError> {
        self.select_experiments("WHERE state = 'running'", None)
            .await
    }

    async fn start(&self, id: Uuid, at: DateTime<Utc>) -> Result<Transition, PortError> {
        let sql = format!(
            "UPDATE experiments SET state = 'running', started_at = $2 \
             WHERE id = $1 AND state = 'draft' RETURNING {COLUMNS}"
        );
        let started: Result<Option<Row>, sqlx::Error> = self
            .traced("UPDATE", "experiments", async {
                Ok(sqlx::query_as(&sql)
                    .bind(id)
                    .bind(at)
                    .fetch_optional(&self.pool)
                    .await)
            })
            .await?;
        match started {
            Ok(Some(row)) => Ok(Transition::Done(experiment(row)?)),
            Ok(None) => self.no_transition(id).await,
            Err(err) if layer_taken(&err) => {
                let layer = self.experiment(id).await?.map(|e| e.layer);
                let running = self.running().await?;
                Ok(Transition::LayerBusy(
                    running
                        .into_iter()
                        .find(|e| Some(&e.layer) == layer.as_ref())
                        .map(|e| e.name)
                        .unwrap_or_default(),
                ))
            }
            Err(err) => Err(port_error(err)),
        }
    }

    async fn stop(&self, id: Uuid, at: DateTime<Utc>) -> Result<Transition, PortError> {
        let sql = format!(
            "UPDATE experiments SET state = 'stopped', stopped_at = $2 \
             WHERE id = $1 AND state = 'running' RETURNING {COLUMNS}"
        );
        let stopped: Option<Row> = self
            .traced("UPDATE", "experiments", async {
                sqlx::query_as(&sql)
                    .bind(id)
                    .bind(at)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(port_error)
            })
            .await?;
        match stopped {
            Some(row) => Ok(Transition::Done(experiment(row)?)),
            None => self.no_transition(id).await,
        }
    }
}
