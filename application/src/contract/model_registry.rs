//! Contract of [`ModelRegistry`]. The factory gives a registry in which `version` was deployed and
//! activated (at the given time) and nothing else is active; `None` gives one with no active model.

use crate::ports::{ModelInfo, ModelRegistry};
use chrono::{DateTime, DurationRound, Utc};
use std::future::Future;
use std::sync::Arc;

/// Runs every case.
pub async fn model_registry_contract<F, Fut>(make: F)
where
    F: Fn(Option<(String, DateTime<Utc>)>) -> Fut,
    Fut: Future<Output = Arc<dyn ModelRegistry>>,
{
    let deployed_at = Utc::now()
        .duration_trunc(chrono::Duration::microseconds(1))
        .unwrap_or_else(|_| Utc::now());
    let version = format!("contract-{}", uuid::Uuid::new_v4());

    let registry = make(None).await;
    assert_eq!(
        registry.active_model().await.ok(),
        Some(None),
        "no active model"
    );
    assert!(
        registry
            .record_inferences("no-such-version", 3)
            .await
            .is_ok(),
        "unknown versions are ignored"
    );

    let registry = make(Some((version.clone(), deployed_at))).await;
    assert_eq!(
        registry.active_model().await.ok(),
        Some(Some(ModelInfo {
            version: version.clone(),
            deployed_at,
        })),
        "the deployed model is active"
    );
    for _ in 0..3 {
        assert!(registry.record_inferences(&version, 7).await.is_ok());
    }
}
