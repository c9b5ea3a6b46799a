use crate::lock_error;
use async_trait::async_trait;
use std::sync::RwLock;
use vrs_application::ports::{PortError, RankingConfigStore};
use vrs_domain::Weights;

/// The active weights in memory; the defaults until [`MemoryRankingConfig::set`] is called.
#[derive(Debug, Default)]
pub struct MemoryRankingConfig {
    weights: RwLock<Weights>,
}

impl MemoryRankingConfig {
    /// Activates another weight set.
    pub fn set(&self, weights: Weights) {
        if let Ok(mut w) = self.weights.write() {
            *w = weights;
        }
    }
}

#[async_trait]
impl RankingConfigStore for MemoryRankingConfig {
    async fn active_weights(&self) -> Result<Weights, PortError> {
        Ok(*self.weights.read().map_err(lock_error)?)
    }
}
