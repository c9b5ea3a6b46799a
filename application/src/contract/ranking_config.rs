//! Contract of [`RankingConfigStore`].

use crate::ports::{RankingConfigStore, WeightSet};
use std::future::Future;
use std::sync::Arc;
use vrs_domain::{Signal, Weights};

/// Runs every ranking-configuration case. `make(w)` returns a fresh store whose active weight
/// set is `w` (for a database: the row inserted and activated).
pub async fn ranking_config_contract<F, Fut>(make: F)
where
    F: Fn(Weights) -> Fut,
    Fut: Future<Output = Arc<dyn RankingConfigStore>>,
{
    // The defaults, and sets of dyadic fractions, which survive any storage format exactly.
    let sets = [
        Weights::DEFAULT,
        Weights::new(0.125, 0.375, 0.25, 0.125, 0.125).expect("valid"),
        Weights::new(0.5, 0.5, 0.0, 0.0, 0.0).expect("valid"),
    ];
    for weights in sets {
        returns_the_active_set(make(weights).await, weights).await;
    }
    activation_makes_a_new_active_version(make(sets[0]).await, sets[1], sets[2]).await;
}

async fn returns_the_active_set(store: Arc<dyn RankingConfigStore>, expected: Weights) {
    let first = store.active_weights().await.expect("active_weights");
    assert_eq!(first, expected, "the active set is returned as stored");
    let revalidated = Weights::new(
        first.get(Signal::Freshness),
        first.get(Signal::Completion),
        first.get(Signal::Engagement),
        first.get(Signal::Affinity),
        first.get(Signal::Model),
    );
    assert_eq!(revalidated, Ok(first), "the returned set is valid");
    let second = store.active_weights().await.expect("active_weights");
    assert_eq!(second, first, "reading does not change the active set");
}

async fn activation_makes_a_new_active_version(
    store: Arc<dyn RankingConfigStore>,
    next: Weights,
    then: Weights,
) {
    let before = store.active_set().await.expect("active_set");
    assert!(before.active, "the active set says so");
    let second = store.activate(next).await.expect("activate");
    assert!(second.version > before.version, "versions increase");
    assert!(second.active);
    assert_eq!(second.weights, next);
    assert!(second.activated_at >= before.activated_at);
    assert_eq!(store.active_set().await.expect("active_set"), second);
    assert_eq!(store.active_weights().await.expect("active_weights"), next);

    // Rolling back is activating the earlier weights again, as a newer version.
    let third = store.activate(then).await.expect("activate");
    assert!(third.version > second.version);
    let rollback = store.activate(before.weights).await.expect("activate");
    assert!(rollback.version > third.version);
    assert_eq!(
        store.active_weights().await.expect("active_weights"),
        before.weights
    );

    let history = store.history(3).await.expect("history");
    let versions: Vec<i64> = history.iter().map(|s| s.version).collect();
    assert_eq!(
        versions,
        vec![rollback.version, third.version, second.version],
        "newest first, bounded by the limit"
    );
    let active: Vec<&WeightSet> = history.iter().filter(|s| s.active).collect();
    assert_eq!(active.len(), 1, "exactly one active version: {history:?}");
    assert_eq!(active[0].version, rollback.version);
    assert_eq!(history[1].weights, then);
    assert!(
        store.history(100).await.expect("history").len() >= 4,
        "earlier versions are kept"
    );
}
