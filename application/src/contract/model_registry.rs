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

    lifecycle(make(None).await, deployed_at).await;
}

/// Register, list, activate, roll back, read artifacts, count inferences.
async fn lifecycle(registry: Arc<dyn ModelRegistry>, at: DateTime<Utc>) {
    let tag = uuid::Uuid::new_v4();
    let (v1, v2) = (format!("lifecycle-{tag}-1"), format!("lifecycle-{tag}-2"));
    let metrics = serde_json::json!({"ndcg_at_10": 0.25, "users": 3});
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    assert_eq!(
        registry.register(&v1, &metrics, &bytes, at).await.ok(),
        Some(true),
        "a new version registers"
    );
    assert_eq!(
        registry
            .register(&v1, &serde_json::json!({}), b"other", at)
            .await
            .ok(),
        Some(false),
        "versions are immutable"
    );
    assert_eq!(
        registry.artifact(&v1).await.ok(),
        Some(Some(bytes.clone())),
        "the artifact comes back byte for byte"
    );
    assert_eq!(registry.artifact("no-such-version").await.ok(), Some(None));
    let later = at + chrono::Duration::seconds(10);
    assert!(
        registry
            .register(&v2, &serde_json::json!({"ndcg_at_10": 0.3}), b"v2", later)
            .await
            .unwrap_or(false)
    );

    let listed = registry.models().await.expect("models");
    let mine: Vec<_> = listed
        .iter()
        .filter(|m| m.version == v1 || m.version == v2)
        .collect();
    assert_eq!(
        mine.iter().map(|m| m.version.as_str()).collect::<Vec<_>>(),
        vec![v2.as_str(), v1.as_str()],
        "newest first"
    );
    let first = mine[1];
    assert!(!first.is_active, "registered, not active");
    assert_eq!(first.performance_metrics, metrics);
    assert_eq!(first.artifact_bytes, bytes.len() as u64);
    assert_eq!(first.created_at, at);
    assert_eq!(
        registry.active_model().await.ok(),
        Some(None),
        "nothing active yet"
    );

    assert_eq!(
        registry.activate("no-such-version", at).await.ok(),
        Some(false)
    );
    let t1 = at + chrono::Duration::seconds(20);
    assert_eq!(registry.activate(&v1, t1).await.ok(), Some(true));
    let t2 = at + chrono::Duration::seconds(30);
    assert_eq!(registry.activate(&v2, t2).await.ok(), Some(true));
    assert_eq!(
        registry
            .active_model()
            .await
            .ok()
            .flatten()
            .map(|m| (m.version, m.deployed_at)),
        Some((v2.clone(), t2)),
        "one active model, deployed when activated"
    );
    let t3 = at + chrono::Duration::seconds(40);
    assert_eq!(
        registry.rollback(t3).await.ok(),
        Some(Some(v1.clone())),
        "rollback goes to the version active before"
    );
    assert_eq!(
        registry
            .active_model()
            .await
            .ok()
            .flatten()
            .map(|m| m.version),
        Some(v1.clone())
    );
    assert_eq!(
        registry.rollback(t3).await.ok(),
        Some(Some(v2.clone())),
        "and a second rollback back again"
    );
    registry.record_inferences(&v2, 5).await.expect("record");
    registry.record_inferences(&v2, 6).await.expect("record");
    let listed = registry.models().await.expect("models");
    let active: Vec<_> = listed.iter().filter(|m| m.is_active).collect();
    assert_eq!(active.len(), 1, "exactly one active: {listed:?}");
    assert_eq!(active[0].version, v2);
    assert_eq!(active[0].inference_count, 11);
}
