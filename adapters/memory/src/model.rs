use crate::lock_error;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::RwLock;
use vrs_application::ports::{ModelScorer, PortError};
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
