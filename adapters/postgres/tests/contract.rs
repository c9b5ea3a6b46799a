//! The PostgreSQL adapter against the contract suites every adapter of its ports passes.
//!
//! One fresh database per suite; the suites' cases use random ids and time ranges, so they share it.

mod common;

use common::TestDb;
use std::sync::Arc;
use vrs_application::contract::{catalog, follows, model_registry, ranking_config};
use vrs_application::ports::{FollowGraph, ModelRegistry, RankingConfigStore, VideoCatalog};
use vrs_domain::Weights;

#[tokio::test]
async fn catalog_contract() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let store = db.store.clone();
    catalog::catalog_contract(|| {
        let store = store.clone();
        async move { Arc::new(store) as Arc<dyn VideoCatalog> }
    })
    .await;
}

#[tokio::test]
async fn follows_contract() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let store = db.store.clone();
    follows::follows_contract(|| {
        let store = store.clone();
        async move { Arc::new(store) as Arc<dyn FollowGraph> }
    })
    .await;
}

#[tokio::test]
async fn ranking_config_contract() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let store = db.store.clone();
    ranking_config::ranking_config_contract(|weights: Weights| {
        let store = store.clone();
        async move {
            store.activate_weights(weights).await.expect("activate");
            Arc::new(store) as Arc<dyn RankingConfigStore>
        }
    })
    .await;
}

#[tokio::test]
async fn model_registry_contract() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let store = db.store.clone();
    model_registry::model_registry_contract(|model| {
        let store = store.clone();
        async move {
            match model {
                Some((version, deployed_at)) => store
                    .deploy_model(&version, &serde_json::json!({}), deployed_at)
                    .await
                    .expect("deploy"),
                None => store.deactivate_model().await.expect("deactivate"),
            }
            Arc::new(store) as Arc<dyn ModelRegistry>
        }
    })
    .await;
}

#[tokio::test]
async fn experiments_contract() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let store = db.store.clone();
    vrs_application::contract::experiments::experiments_contract(|| {
        let store = store.clone();
        async move { Arc::new(store) as Arc<dyn vrs_application::ports::ExperimentStore> }
    })
    .await;
}
