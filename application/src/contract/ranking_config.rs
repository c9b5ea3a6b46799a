//! Contract of [`RankingConfigStore`].

use crate::ports::RankingConfigStore;
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
