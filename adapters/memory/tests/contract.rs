//! The memory adapters against the contract suites every adapter of a port passes.

use std::sync::Arc;
use vrs_adapter_memory::{
    MemoryAdapters, MemoryCatalog, MemoryFeedCache, MemoryFollowGraph, MemoryRankingConfig,
    MemoryViewHistory,
};
use vrs_application::contract::{
    SignalPipeline, catalog, events, feed_cache, follows, history, ranking_config, signals,
};
use vrs_application::ports::{
    FeedCache, FollowGraph, RankingConfigStore, VideoCatalog, ViewHistory,
};
use vrs_domain::Weights;

/// The memory event sink and the memory signal store it applies events to.
async fn pipeline() -> SignalPipeline {
    let adapters = MemoryAdapters::default();
    SignalPipeline {
        sink: adapters.events,
        store: adapters.signals,
    }
}

#[tokio::test]
async fn catalog_contract() {
    catalog::catalog_contract(|| async {
        Arc::new(MemoryCatalog::default()) as Arc<dyn VideoCatalog>
    })
    .await;
}

#[tokio::test]
async fn follows_contract() {
    follows::follows_contract(|| async {
        Arc::new(MemoryFollowGraph::default()) as Arc<dyn FollowGraph>
    })
    .await;
}

#[tokio::test]
async fn ranking_config_contract() {
    ranking_config::ranking_config_contract(|weights: Weights| async move {
        let store = MemoryRankingConfig::default();
        store.set(weights);
        Arc::new(store) as Arc<dyn RankingConfigStore>
    })
    .await;
}

#[tokio::test]
async fn signals_contract() {
    signals::signals_contract(pipeline).await;
}

#[tokio::test]
async fn history_contract() {
    history::history_contract(|| async {
        Arc::new(MemoryViewHistory::default()) as Arc<dyn ViewHistory>
    })
    .await;
}

#[tokio::test]
async fn feed_cache_contract() {
    feed_cache::feed_cache_contract(|| async {
        Arc::new(MemoryFeedCache::new(1_000)) as Arc<dyn FeedCache>
    })
    .await;
}

#[tokio::test]
async fn events_contract() {
    events::events_contract(pipeline).await;
}

#[tokio::test]
async fn model_registry_contract() {
    vrs_application::contract::model_registry::model_registry_contract(|model| async move {
        let registry = vrs_adapter_memory::MemoryModelRegistry::default();
        if let Some((version, deployed_at)) = model {
            registry.deploy(&version, deployed_at);
        }
        Arc::new(registry) as Arc<dyn vrs_application::ports::ModelRegistry>
    })
    .await;
}

#[tokio::test]
async fn event_ledger_contract() {
    vrs_application::contract::event_ledger::event_ledger_contract(|| async {
        Arc::new(vrs_adapter_memory::MemoryEventLedger::default())
            as Arc<dyn vrs_application::ports::EventLedger>
    })
    .await;
}

#[tokio::test]
async fn experiments_contract() {
    vrs_application::contract::experiments::experiments_contract(|| async {
        Arc::new(vrs_adapter_memory::MemoryExperimentStore::default())
            as Arc<dyn vrs_application::ports::ExperimentStore>
    })
    .await;
}
