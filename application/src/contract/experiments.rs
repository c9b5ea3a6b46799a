//! Contract of [`ExperimentStore`].

use super::now_micros;
use crate::ports::{ExperimentStore, Transition};
use chrono::Duration;
use std::future::Future;
use std::sync::Arc;
use uuid::Uuid;
use vrs_domain::{Experiment, ExperimentDraft, ExperimentState, VariantDraft, Weights};

/// Runs every experiment-store case, each against a fresh store from `make`.
pub async fn experiments_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ExperimentStore>>,
{
    drafts_round_trip_and_names_are_unique(make().await).await;
    the_life_of_an_experiment(make().await).await;
    one_running_experiment_per_layer(make().await).await;
    concurrent_starts_in_one_layer_run_one(make().await).await;
}

/// A fresh two-variant draft; names are unique per call so cases can share a store.
pub fn draft(layer: &str) -> Experiment {
    let id = Uuid::new_v4();
    ExperimentDraft {
        name: format!("exp-{}", id.simple()),
        description: "contract case".into(),
        layer: Some(layer.to_owned()),
        salt: None,
        variants: vec![
            VariantDraft {
                name: "control".into(),
                share: 0.5,
                ..VariantDraft::default()
            },
            VariantDraft {
                name: "treatment".into(),
                share: 0.25,
                weights: Some(Weights::new(0.2, 0.2, 0.2, 0.2, 0.2).expect("weights")),
                model_version: Some("model-7".into()),
            },
        ],
    }
    .validate(id, now_micros())
    .expect("valid draft")
}

fn layer() -> String {
    format!("layer-{}", Uuid::new_v4().simple())
}

async fn drafts_round_trip_and_names_are_unique(store: Arc<dyn ExperimentStore>) {
    let e = draft(&layer());
    assert!(
        store.create(&e).await.expect("create"),
        "a new name is stored"
    );
    assert_eq!(
        store.experiment(e.id).await.expect("experiment"),
        Some(e.clone()),
        "read back exactly"
    );
    let mut same_name = draft(&layer());
    same_name.name = e.name.clone();
    assert!(
        !store.create(&same_name).await.expect("create"),
        "a taken name is refused"
    );
    assert_eq!(store.experiment(same_name.id).await.expect("read"), None);
    let later = draft(&layer());
    assert!(store.create(&later).await.expect("create"));
    let all = store.experiments().await.expect("experiments");
    let position = |id| all.iter().position(|x| x.id == id);
    assert!(
        position(later.id) < position(e.id) && position(e.id).is_some(),
        "the most recently created first"
    );
    assert_eq!(store.experiment(Uuid::new_v4()).await.expect("read"), None);
}

async fn the_life_of_an_experiment(store: Arc<dyn ExperimentStore>) {
    let e = draft(&layer());
    store.create(&e).await.expect("create");
    let at = now_micros();
    assert_eq!(
        store.stop(e.id, at).await.expect("stop"),
        Transition::WrongState(ExperimentState::Draft),
        "a draft is not stopped"
    );
    let Transition::Done(started) = store.start(e.id, at).await.expect("start") else {
        panic!("a draft starts")
    };
    assert_eq!(
        (started.state, started.started_at),
        (ExperimentState::Running, Some(at))
    );
    assert!(
        store
            .running()
            .await
            .expect("running")
            .iter()
            .any(|x| x.id == e.id),
        "listed as running"
    );
    assert_eq!(
        store.start(e.id, at).await.expect("start"),
        Transition::WrongState(ExperimentState::Running)
    );
    let stop_at = at + Duration::hours(1);
    let Transition::Done(stopped) = store.stop(e.id, stop_at).await.expect("stop") else {
        panic!("a running experiment stops")
    };
    assert_eq!(
        (stopped.state, stopped.stopped_at),
        (ExperimentState::Stopped, Some(stop_at))
    );
    assert!(
        !store
            .running()
            .await
            .expect("running")
            .iter()
            .any(|x| x.id == e.id)
    );
    assert_eq!(
        store.start(e.id, stop_at).await.expect("start"),
        Transition::WrongState(ExperimentState::Stopped),
        "a stopped experiment never runs again"
    );
    assert_eq!(
        store.experiment(e.id).await.expect("read"),
        Some(stopped),
        "the stored record is the one returned"
    );
    assert_eq!(
        store.start(Uuid::new_v4(), at).await.expect("start"),
        Transition::NotFound
    );
    assert_eq!(
        store.stop(Uuid::new_v4(), at).await.expect("stop"),
        Transition::NotFound
    );
}

async fn one_running_experiment_per_layer(store: Arc<dyn ExperimentStore>) {
    let l = layer();
    let (first, second, other_layer) = (draft(&l), draft(&l), draft(&layer()));
    for e in [&first, &second, &other_layer] {
        store.create(e).await.expect("create");
    }
    let at = now_micros();
    assert!(matches!(
        store.start(first.id, at).await.expect("start"),
        Transition::Done(_)
    ));
    assert_eq!(
        store.start(second.id, at).await.expect("start"),
        Transition::LayerBusy(first.name.clone()),
        "the layer is taken"
    );
    assert!(
        matches!(
            store.start(other_layer.id, at).await.expect("start"),
            Transition::Done(_)
        ),
        "another layer is independent"
    );
    store.stop(first.id, at).await.expect("stop");
    assert!(
        matches!(
            store.start(second.id, at).await.expect("start"),
            Transition::Done(_)
        ),
        "the layer is free once its experiment stopped"
    );
}

async fn concurrent_starts_in_one_layer_run_one(store: Arc<dyn ExperimentStore>) {
    let l = layer();
    let drafts: Vec<Experiment> = (0..6).map(|_| draft(&l)).collect();
    for e in &drafts {
        store.create(e).await.expect("create");
    }
    let at = now_micros();
    let starts = drafts.iter().map(|e| {
        let store = store.clone();
        let id = e.id;
        async move { store.start(id, at).await.expect("start") }
    });
    let outcomes = futures::future::join_all(starts).await;
    let done = outcomes
        .iter()
        .filter(|t| matches!(t, Transition::Done(_)))
        .count();
    assert_eq!(done, 1, "exactly one runs: {outcomes:?}");
    let running = store.running().await.expect("running");
    assert_eq!(running.iter().filter(|e| e.layer == l).count(), 1);
}
