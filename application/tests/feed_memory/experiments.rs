//! Experiments end to end on the memory adapters: assignment recorded in the session, exposures
//! logged once per served position, and results that tell a better variant from an equal one.

use super::App;
use chrono::Duration;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use uuid::Uuid;
use vrs_application::ExperimentService;
use vrs_domain::experiment::Metric;
use vrs_domain::{
    EngagementEvent, EventType, Experiment, ExperimentDraft, UserId, VariantDraft, Weights,
};

const ATTRIBUTION: std::time::Duration = std::time::Duration::from_secs(3 * 3600);

fn treatment_weights() -> Weights {
    Weights::new(0.5, 0.2, 0.2, 0.1, 0.0).expect("weights")
}

fn draft(name: &str, layer: &str, shares: (f64, f64)) -> ExperimentDraft {
    ExperimentDraft {
        name: name.into(),
        layer: Some(layer.into()),
        // A fixed salt (the name): the simulated traffic below is then the same in every run.
        salt: Some(format!("salt-{name}")),
        variants: vec![
            VariantDraft {
                name: "control".into(),
                share: shares.0,
                ..VariantDraft::default()
            },
            VariantDraft {
                name: "treatment".into(),
                share: shares.1,
                weights: Some(treatment_weights()),
                model_version: None,
            },
        ],
        ..ExperimentDraft::default()
    }
}

/// A user in `variant` of `e` (or, for `None`, outside every variant).
fn user_in(e: &Experiment, variant: Option<&str>) -> UserId {
    (0..100_000)
        .map(|_| UserId(Uuid::new_v4()))
        .find(|u| e.assign(*u).map(|(_, v)| v.name.as_str()) == variant)
        .expect("a user in the variant")
}

async fn flush(app: &App) {
    assert!(
        app.feed
            .exposure_log()
            .flush(std::time::Duration::from_secs(10))
            .await,
        "exposures published"
    );
}

#[tokio::test]
async fn a_session_is_served_by_one_variant_and_stopping_sends_new_sessions_back() {
    let app = App::new();
    app.with_videos(60).await;
    let service = ExperimentService::new(app.ports.clone(), ATTRIBUTION);
    let e = service
        .create(draft("weights-test", "ranking", (0.5, 0.5)))
        .await
        .expect("create");
    // A draft changes nothing.
    app.refresh().await;
    let treated = user_in(&e, Some("treatment"));
    let before = app.page(treated, 10, None).await;
    assert!(before.experiments.is_empty());

    service.start("weights-test").await.expect("start");
    app.refresh().await;
    let first = app.page(treated, 10, None).await;
    assert_eq!(first.experiments.len(), 1, "{:?}", first.experiments);
    assert_eq!(first.experiments[0].variant, "treatment");
    assert_eq!(first.experiments[0].experiment_id, e.id);
    assert_ne!(
        first.session_id, before.session_id,
        "the session ranked before the start is not reused"
    );
    // The freshness weight tells the variants apart: 0.5 in the treatment, 0.1 of 0.6 (the
    // default without the model) in the control.
    let weights_of = |page: &vrs_application::FeedPage| {
        let w = page.items[0]
            .explanation
            .as_ref()
            .expect("explained")
            .weights;
        (w.get(vrs_domain::Signal::Freshness) * 1e6).round() / 1e6
    };
    assert_eq!(weights_of(&first), 0.5, "ranked by the variant");
    let control_user = user_in(&e, Some("control"));
    let control = app.page(control_user, 10, None).await;
    assert_eq!(control.experiments[0].variant, "control");
    assert_ne!(weights_of(&control), 0.5);

    let second = app
        .page(treated, 10, Some(first.next.expect("more").position))
        .await;
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(
        second.experiments, first.experiments,
        "every page, one variant"
    );
    assert_eq!(weights_of(&second), 0.5);

    service.stop(&e.id.to_string()).await.expect("stop");
    app.refresh().await;
    let third = app
        .page(treated, 10, Some(second.next.expect("more").position))
        .await;
    assert_eq!(
        third.experiments, first.experiments,
        "a session ranked by a variant keeps serving by it"
    );
    let fresh = app.page(treated, 10, None).await;
    assert_ne!(
        fresh.session_id, first.session_id,
        "a new session, not the variant's"
    );
    assert!(fresh.experiments.is_empty(), "back to the default");
    assert_ne!(weights_of(&fresh), 0.5);
}

#[tokio::test]
async fn each_served_position_is_one_exposure_and_outsiders_have_none() {
    let app = App::new();
    app.with_videos(60).await;
    let service = ExperimentService::new(app.ports.clone(), ATTRIBUTION);
    let e = service
        .create(draft("exposures", "ranking", (0.25, 0.25)))
        .await
        .expect("create");
    service.start("exposures").await.expect("start");
    app.refresh().await;
    let user = user_in(&e, Some("control"));
    let first = app.page(user, 10, None).await;
    let next = first.next.expect("more").position;
    let second = app.page(user, 10, Some(next)).await;
    // A client retrying the same cursor is served the same positions: no new exposures.
    let again = app.page(user, 10, Some(next)).await;
    assert_eq!(
        again.items.iter().map(|i| i.position).collect::<Vec<_>>(),
        second.items.iter().map(|i| i.position).collect::<Vec<_>>()
    );
    let outsider = user_in(&e, None);
    assert!(app.page(outsider, 10, None).await.experiments.is_empty());
    flush(&app).await;

    let (_, results) = service.results("exposures").await.expect("results");
    let control = &results.variants[0];
    assert_eq!(
        (control.users, control.sessions, control.exposures),
        (1, 1, 20),
        "two pages of ten, the retried one once; the outsider exposed nothing"
    );
    assert_eq!(results.variants[1].exposures, 0);
}

/// Serves a first page of `limit` to `users` users of `e`'s layer, then sends a `complete` for
/// each exposed video with the probability of the user's variant; returns the users per variant.
async fn run_traffic(
    app: &App,
    e: &Experiment,
    users: usize,
    completion: &HashMap<&str, f64>,
    skip_treatment: f64,
    seed: u64,
) -> HashMap<String, usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut served = HashMap::new();
    let mut events = Vec::new();
    for _ in 0..users {
        let user = UserId(Uuid::from_u128(rng.r#gen()));
        let Some((_, variant)) = e.assign(user) else {
            continue;
        };
        if variant.name == "treatment" && rng.gen_bool(skip_treatment) {
            // A broken client or logger: these users' pages never show up.
            continue;
        }
        let page = app.page(user, 8, None).await;
        *served.entry(variant.name.clone()).or_insert(0) += 1;
        let taste: f64 = rng.gen_range(-0.05..0.05);
        for item in &page.items {
            if rng.gen_bool((completion[variant.name.as_str()] + taste).clamp(0.0, 1.0)) {
                events.push(EngagementEvent {
                    event_id: Uuid::new_v4(),
                    user_id: user,
                    video_id: item.video.id,
                    creator_id: item.video.creator_id,
                    event_type: EventType::Complete,
                    watch_ms: Some(20_000),
                    completion: Some(1.0),
                    occurred_at: app.now() + Duration::minutes(1),
                });
            }
        }
    }
    flush(app).await;
    for chunk in events.chunks(500) {
        app.ports.events.publish(chunk).await.expect("publish");
    }
    served
}

#[tokio::test]
async fn results_tell_a_better_variant_from_an_equal_one_and_flag_a_skewed_split() {
    let app = App::new();
    app.with_videos(40).await;
    let service = ExperimentService::new(app.ports.clone(), ATTRIBUTION);

    // Variant B truly completes more: 0.35 against 0.25.
    let better = service
        .create(draft("b-is-better", "ranking", (0.5, 0.5)))
        .await
        .expect("create");
    service.start("b-is-better").await.expect("start");
    app.refresh().await;
    let rates = HashMap::from([("control", 0.25), ("treatment", 0.35)]);
    run_traffic(&app, &better, 800, &rates, 0.0, 1).await;
    let (_, results) = service.results("b-is-better").await.expect("results");
    let completion = results.variants[1]
        .metrics
        .iter()
        .find(|m| m.metric == Metric::CompletionRate)
        .and_then(|m| m.difference)
        .expect("difference");
    assert!(
        completion.low > 0.0,
        "the interval excludes zero: {completion:?}"
    );
    assert!(
        (completion.difference - 0.10).abs() < 0.05,
        "{completion:?}"
    );
    assert!(
        !results.sample_ratio_mismatch,
        "{:?}",
        results.sample_ratio_p_value
    );
    service.stop("b-is-better").await.expect("stop");

    // No difference: the interval includes zero.
    let same = service
        .create(draft("a-equals-b", "ranking", (0.5, 0.5)))
        .await
        .expect("create");
    service.start("a-equals-b").await.expect("start");
    app.refresh().await;
    let rates = HashMap::from([("control", 0.3), ("treatment", 0.3)]);
    run_traffic(&app, &same, 800, &rates, 0.0, 2).await;
    let (_, results) = service.results("a-equals-b").await.expect("results");
    let completion = results.variants[1].metrics[Metric::CompletionRate as usize]
        .difference
        .expect("difference");
    assert!(
        completion.low < 0.0 && completion.high > 0.0,
        "the interval includes zero: {completion:?}"
    );
    assert!(!results.sample_ratio_mismatch);
    service.stop("a-equals-b").await.expect("stop");

    // A third of the treatment's users lost: the split no longer matches the shares.
    let skewed = service
        .create(draft("skewed", "ranking", (0.5, 0.5)))
        .await
        .expect("create");
    service.start("skewed").await.expect("start");
    app.refresh().await;
    run_traffic(&app, &skewed, 800, &rates, 0.33, 3).await;
    let (_, results) = service.results("skewed").await.expect("results");
    assert!(
        results.sample_ratio_mismatch,
        "flagged: {:?}",
        results.sample_ratio_p_value
    );
}

#[tokio::test]
async fn an_experiment_waits_until_its_variants_models_load() {
    let app = App::with_model();
    app.with_videos(30).await;
    let now = app.now();
    // Registered with an artifact this build cannot decode.
    assert!(
        app.ports
            .model_registry
            .register("broken", &serde_json::json!({}), b"not a model", now)
            .await
            .expect("register")
    );
    let service = ExperimentService::new(app.ports.clone(), ATTRIBUTION);
    let mut definition = draft("broken-model", "models", (0.5, 0.5));
    definition.variants[1].weights = None;
    definition.variants[1].model_version = Some("broken".into());
    let e = service.create(definition).await.expect("create");
    service.start("broken-model").await.expect("start");
    let report = app.refresher.refresh().await.expect("refresh");
    assert!(
        report.degraded.contains(&"experiments"),
        "{:?}",
        report.degraded
    );
    let treated = user_in(&e, Some("treatment"));
    assert!(
        app.page(treated, 5, None).await.experiments.is_empty(),
        "no user is put in a variant ranked without its model"
    );
}
