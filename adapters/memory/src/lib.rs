//! In-process implementations of every port.
//!
//! They back the embedded mode (no external server configured) and the tests of teams that swap
//! storage adapters. Each passes the same contract suites as the real adapters. State lives behind
//! `std::sync` locks that are never held across an `.await`.

mod catalog;
mod clock;
mod events;
mod experiments;
mod feed_cache;
mod follows;
mod history;
mod ledger;
mod media;
mod model;
mod ranking_config;
mod signals;
mod tiered;

pub use catalog::MemoryCatalog;
pub use clock::ManualClock;
pub use events::MemoryEventSink;
pub use experiments::MemoryExperimentStore;
pub use feed_cache::MemoryFeedCache;
pub use follows::MemoryFollowGraph;
pub use history::MemoryViewHistory;
pub use ledger::MemoryEventLedger;
pub use media::BaseUrlMediaUrls;
pub use model::{FactorModelScorer, MemoryModelRegistry};
pub use ranking_config::MemoryRankingConfig;
pub use signals::MemorySignalStore;
pub use tiered::{FALLBACKS_METRIC, TieredFeedCache, TieredViewHistory};

use async_trait::async_trait;
use std::sync::Arc;
use vrs_application::ports::{Clock, HealthProbe, PortError, Ports};

/// A poisoned lock means a panic while writing: report the store as unavailable, never panic again.
pub(crate) fn lock_error<T>(_: T) -> PortError {
    PortError::Unavailable("memory store lock poisoned".into())
}

/// A probe for an in-process store: it is up as long as the process is.
#[derive(Debug)]
pub struct InProcessProbe(pub &'static str);

#[async_trait]
impl HealthProbe for InProcessProbe {
    fn name(&self) -> &'static str {
        self.0
    }
    async fn check(&self) -> Result<(), PortError> {
        Ok(())
    }
}

/// Every memory adapter, with handles kept so tests can inspect and steer them.
#[derive(Clone, Debug)]
pub struct MemoryAdapters {
    pub catalog: Arc<MemoryCatalog>,
    pub follows: Arc<MemoryFollowGraph>,
    pub ranking_config: Arc<MemoryRankingConfig>,
    pub signals: Arc<MemorySignalStore>,
    pub history: Arc<MemoryViewHistory>,
    pub feed_cache: Arc<MemoryFeedCache>,
    pub events: Arc<MemoryEventSink>,
    pub event_ledger: Arc<MemoryEventLedger>,
    pub model: Arc<FactorModelScorer>,
    pub model_registry: Arc<MemoryModelRegistry>,
    pub experiments: Arc<MemoryExperimentStore>,
}

impl Default for MemoryAdapters {
    fn default() -> Self {
        let signals = Arc::new(MemorySignalStore::default());
        Self {
            catalog: Arc::default(),
            follows: Arc::default(),
            ranking_config: Arc::default(),
            events: Arc::new(MemoryEventSink::new(signals.clone())),
            event_ledger: Arc::default(),
            signals,
            history: Arc::default(),
            feed_cache: Arc::new(MemoryFeedCache::new(100_000)),
            model: Arc::default(),
            model_registry: Arc::default(),
            experiments: Arc::default(),
        }
    }
}

impl MemoryAdapters {
    /// The ports backed by these adapters, with the given clock and media URLs. `with_model` plugs
    /// in the model scorer (it scores once the registry has an active version with an artifact).
    pub fn ports(
        &self,
        clock: Arc<dyn Clock>,
        media: Arc<dyn vrs_application::ports::MediaUrls>,
        with_model: bool,
    ) -> Ports {
        Ports {
            catalog: self.catalog.clone(),
            follows: self.follows.clone(),
            ranking_config: self.ranking_config.clone(),
            signals: self.signals.clone(),
            history: self.history.clone(),
            feed_cache: self.feed_cache.clone(),
            events: self.events.clone(),
            event_ledger: self.event_ledger.clone(),
            model: with_model.then(|| self.model.clone() as _),
            model_registry: self.model_registry.clone(),
            experiments: self.experiments.clone(),
            media,
            clock,
            probes: vec![Arc::new(InProcessProbe("memory"))],
        }
    }
}
