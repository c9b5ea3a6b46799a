use crate::lock_error;
use async_trait::async_trait;
use chrono::Utc;
use std::sync::RwLock;
use vrs_application::ports::{PortError, RankingConfigStore, WeightSet};
use vrs_domain::Weights;

/// Versioned weight sets in memory; version 1 is the defaults.
#[derive(Debug)]
pub struct MemoryRankingConfig {
    // Oldest first; the last one is active.
    versions: RwLock<Vec<WeightSet>>,
}

impl Default for MemoryRankingConfig {
    fn default() -> Self {
        Self::with_active(Weights::DEFAULT)
    }
}

impl MemoryRankingConfig {
    /// A store whose version 1, active, is `weights`.
    pub fn with_active(weights: Weights) -> Self {
        Self {
            versions: RwLock::new(vec![WeightSet {
                version: 1,
                weights,
                activated_at: Utc::now(),
                active: true,
            }]),
        }
    }

    /// Activates another weight set as a new version.
    pub fn set(&self, weights: Weights) {
        if let Ok(mut versions) = self.versions.write() {
            push(&mut versions, weights);
        }
    }
}

fn push(versions: &mut Vec<WeightSet>, weights: Weights) -> WeightSet {
    let version = versions.last().map_or(1, |v| v.version + 1);
    for v in versions.iter_mut() {
        v.active = false;
    }
    let set = WeightSet {
        version,
        weights,
        activated_at: Utc::now(),
        active: true,
    };
    versions.push(set);
    set
}

#[async_trait]
impl RankingConfigStore for MemoryRankingConfig {
    async fn active_weights(&self) -> Result<Weights, PortError> {
        Ok(self.active_set().await?.weights)
    }

    async fn active_set(&self) -> Result<WeightSet, PortError> {
        let versions = self.versions.read().map_err(lock_error)?;
        versions
            .last()
            .copied()
            .ok_or_else(|| PortError::InvalidData("no active ranking weight set".into()))
    }

    async fn activate(&self, weights: Weights) -> Result<WeightSet, PortError> {
        let mut versions = self.versions.write().map_err(lock_error)?;
        Ok(push(&mut versions, weights))
    }

    async fn history(&self, limit: usize) -> Result<Vec<WeightSet>, PortError> {
        let versions = self.versions.read().map_err(lock_error)?;
        Ok(versions.iter().rev().take(limit).copied().collect())
    }
}
