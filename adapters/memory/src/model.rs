use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::RwLock;
use vrs_application::ports::{ModelInfo, ModelRegistry, ModelScorer, PortError};
use vrs_domain::{UserId, VideoId};

/// A model that knows one fixed score per video (0.5 for unknown videos): a stand-in for a learned
/// model in the embedded mode and in tests.
#[derive(Debug, Default)]
pub struct StaticModelScorer {
    scores: RwLock<HashMap<VideoId, f64>>,
}

impl StaticModelScorer {
    pub fn set_scores(&self, scores: impl IntoIterator<Item = (VideoId, f64)>) {
        if let Ok(mut s) = self.scores.write() {
            s.extend(scores);
        }
    }
}

#[async_trait]
impl ModelScorer for StaticModelScorer {
    async fn score(&self, _user: UserId, videos: &[VideoId]) -> Result<Vec<f64>, PortError> {
        let scores = self.scores.read().map_err(lock_error)?;
        Ok(videos
            .iter()
            .map(|v| scores.get(v).copied().unwrap_or(0.5))
            .collect())
    }
}

/// The model registry in memory: one optional active model and per-version inference counters.
#[derive(Debug, Default)]
pub struct MemoryModelRegistry {
    pub(crate) active: RwLock<Option<ModelInfo>>,
    inferences: RwLock<HashMap<String, u64>>,
}

impl MemoryModelRegistry {
    /// Deploys `version` as the active model.
    pub fn activate(&self, version: &str, deployed_at: DateTime<Utc>) {
        if let Ok(mut a) = self.active.write() {
            *a = Some(ModelInfo {
                version: version.to_owned(),
                deployed_at,
            });
        }
        if let Ok(mut i) = self.inferences.write() {
            i.entry(version.to_owned()).or_insert(0);
        }
    }

    /// Deactivates every model.
    pub fn deactivate(&self) {
        if let Ok(mut a) = self.active.write() {
            *a = None;
        }
    }

    /// Inferences recorded for `version`.
    pub fn inferences(&self, version: &str) -> u64 {
        self.inferences
            .read()
            .ok()
            .and_then(|i| i.get(version).copied())
            .unwrap_or(0)
    }
}

#[async_trait]
impl ModelRegistry for MemoryModelRegistry {
    async fn active_model(&self) -> Result<Option<ModelInfo>, PortError> {
        Ok(self.active.read().map_err(lock_error)?.clone())
    }

    async fn record_inferences(&self, version: &str, count: u64) -> Result<(), PortError> {
        if let Some(n) = self
            .inferences
            .write()
            .map_err(lock_error)?
            .get_mut(version)
        {
            *n += count;
        }
        Ok(())
    }
}
