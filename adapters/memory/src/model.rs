use crate::lock_error;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::{Arc, RwLock};
use vrs_application::model::{LoadedModel, ModelArtifact};
use vrs_application::ports::{ModelInfo, ModelRecord, ModelRegistry, ModelScorer, PortError};
use vrs_domain::{CreatorId, UserId, VideoId};

/// Scores with the learned model ([`vrs_application::model`]) loaded from a registry artifact:
/// the user is folded in from their recent interactions, then every video scored (by its creator
/// too, so a video newer than the model still gets a personal score). Pure CPU, in
/// process: it serves every deployment (the artifact comes from the registry).
#[derive(Debug, Default)]
pub struct FactorModelScorer {
    loaded: RwLock<Option<Arc<LoadedModel>>>,
    /// Versions experiment variants score with, by version.
    variants: RwLock<std::collections::HashMap<String, Arc<LoadedModel>>>,
}

impl FactorModelScorer {
    /// The loaded model, for inspection.
    pub fn model(&self) -> Option<Arc<LoadedModel>> {
        self.loaded.read().ok().and_then(|m| m.clone())
    }
}

#[async_trait]
impl ModelScorer for FactorModelScorer {
    fn loaded_version(&self) -> Option<String> {
        self.model().map(|m| m.version().to_owned())
    }

    fn load(&self, version: &str, artifact: &[u8]) -> Result<(), PortError> {
        let artifact = ModelArtifact::decode(artifact)
            .map_err(|e| PortError::InvalidData(format!("model {version}: {e}")))?;
        let model = Arc::new(LoadedModel::new(version, artifact));
        *self.loaded.write().map_err(lock_error)? = Some(model);
        Ok(())
    }

    fn variant_versions(&self) -> Vec<String> {
        self.variants
            .read()
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn load_variant(&self, version: &str, artifact: &[u8]) -> Result<(), PortError> {
        let artifact = ModelArtifact::decode(artifact)
            .map_err(|e| PortError::InvalidData(format!("model {version}: {e}")))?;
        let model = Arc::new(LoadedModel::new(version, artifact));
        self.variants
            .write()
            .map_err(lock_error)?
            .insert(version.to_owned(), model);
        Ok(())
    }

    fn retain_variants(&self, keep: &[String]) {
        if let Ok(mut v) = self.variants.write() {
            v.retain(|version, _| keep.contains(version));
        }
    }

    async fn score(
        &self,
        version: Option<String>,
        _user: UserId,
        recent: &[(VideoId, CreatorId, f32)],
        videos: &[(VideoId, CreatorId)],
    ) -> Result<Vec<f64>, PortError> {
        let model = match version.as_deref() {
            None => self.model(),
            Some(v) => self
                .variants
                .read()
                .map_err(lock_error)?
                .get(v)
                .cloned()
                .or_else(|| self.model().filter(|m| m.version() == v)),
        }
        .ok_or_else(|| PortError::Unavailable("the model is not loaded".into()))?;
        let user = model.user_vectors(recent);
        Ok(model.score(&user, videos))
    }
}

#[derive(Clone, Debug)]
struct Entry {
    record: ModelRecord,
    artifact: Vec<u8>,
}

#[derive(Debug, Default)]
struct Registry {
    /// In registration order.
    models: Vec<Entry>,
    /// Versions in activation order.
    activations: Vec<String>,
}

/// The model registry in memory: registered versions with their artifacts, at most one active,
/// per-version inference counters and the activation history.
#[derive(Debug, Default)]
pub struct MemoryModelRegistry {
    inner: RwLock<Registry>,
}

impl MemoryModelRegistry {
    /// Registers `version` without an artifact (if new) and makes it the active model.
    pub fn deploy(&self, version: &str, deployed_at: DateTime<Utc>) {
        if let Ok(mut r) = self.inner.write() {
            if !r.models.iter().any(|m| m.record.version == version) {
                r.models.push(Entry {
                    record: record(version, &serde_json::json!({}), 0, deployed_at),
                    artifact: Vec::new(),
                });
            }
            activate(&mut r, version, deployed_at);
        }
    }

    /// Deactivates every model.
    pub fn deactivate(&self) {
        if let Ok(mut r) = self.inner.write() {
            for m in &mut r.models {
                m.record.is_active = false;
            }
        }
    }

    /// Inferences recorded for `version`.
    pub fn inferences(&self, version: &str) -> u64 {
        self.inner
            .read()
            .ok()
            .and_then(|r| {
                r.models
                    .iter()
                    .find(|m| m.record.version == version)
                    .map(|m| m.record.inference_count)
            })
            .unwrap_or(0)
    }
}

fn record(
    version: &str,
    metrics: &serde_json::Value,
    size: usize,
    at: DateTime<Utc>,
) -> ModelRecord {
    ModelRecord {
        version: version.to_owned(),
        is_active: false,
        created_at: at,
        deployed_at: at,
        performance_metrics: metrics.clone(),
        inference_count: 0,
        artifact_bytes: size as u64,
    }
}

fn activate(r: &mut Registry, version: &str, at: DateTime<Utc>) -> bool {
    if !r.models.iter().any(|m| m.record.version == version) {
        return false;
    }
    for m in &mut r.models {
        m.record.is_active = m.record.version == version;
        if m.record.is_active {
            m.record.deployed_at = at;
        }
    }
    r.activations.push(version.to_owned());
    true
}

#[async_trait]
impl ModelRegistry for MemoryModelRegistry {
    async fn active_model(&self) -> Result<Option<ModelInfo>, PortError> {
        let r = self.inner.read().map_err(lock_error)?;
        Ok(r.models
            .iter()
            .find(|m| m.record.is_active)
            .map(|m| ModelInfo {
                version: m.record.version.clone(),
                deployed_at: m.record.deployed_at,
            }))
    }

    async fn record_inferences(&self, version: &str, count: u64) -> Result<(), PortError> {
        let mut r = self.inner.write().map_err(lock_error)?;
        if let Some(m) = r.models.iter_mut().find(|m| m.record.version == version) {
            m.record.inference_count += count;
        }
        Ok(())
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
        let mut r = self.inner.write().map_err(lock_error)?;
        if r.models.iter().any(|m| m.record.version == version) {
            return Ok(false);
        }
        r.models.push(Entry {
            record: record(version, metrics, artifact.len(), at),
            artifact: artifact.to_vec(),
        });
        Ok(true)
    }

    async fn models(&self) -> Result<Vec<ModelRecord>, PortError> {
        let r = self.inner.read().map_err(lock_error)?;
        Ok(r.models.iter().rev().map(|m| m.record.clone()).collect())
    }

    async fn activate(&self, version: &str, at: DateTime<Utc>) -> Result<bool, PortError> {
        let mut r = self.inner.write().map_err(lock_error)?;
        Ok(activate(&mut r, version, at))
    }

    async fn rollback(&self, at: DateTime<Utc>) -> Result<Option<String>, PortError> {
        let mut r = self.inner.write().map_err(lock_error)?;
        let current = r
            .models
            .iter()
            .find(|m| m.record.is_active)
            .map(|m| m.record.version.clone());
        let previous = r
            .activations
            .iter()
            .rev()
            .find(|v| Some(*v) != current.as_ref())
            .cloned();
        Ok(previous.filter(|v| activate(&mut r, v, at)))
    }

    async fn artifact(&self, version: &str) -> Result<Option<Vec<u8>>, PortError> {
        let r = self.inner.read().map_err(lock_error)?;
        Ok(r.models
            .iter()
            .find(|m| m.record.version == version && !m.artifact.is_empty())
            .map(|m| m.artifact.clone()))
    }
}
