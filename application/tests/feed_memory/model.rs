//! The learned model in use: trained from the signal store, registered, loaded by the snapshot
//! refresh, scoring feeds; the registry's guard and rollback.

use super::{App, user};
use vrs_application::model::{ActivationPolicy, Engagement, ModelError, ModelService};
use vrs_application::ports::ModelScorer;
use vrs_domain::{EventType, Signal, UserId, Video};

/// Two audiences: even users watch and like the first half of the videos, odd users the second.
async fn two_audiences(app: &App, videos: &[Video]) -> Vec<UserId> {
    let users: Vec<UserId> = (0..20).map(|_| user()).collect();
    let half = videos.len() / 2;
    for (n, u) in users.iter().enumerate() {
        // An hour apart: the training run's temporal holdout has a past and a future.
        app.clock.advance(chrono::Duration::hours(1));
        let mine = if n % 2 == 0 {
            &videos[..half]
        } else {
            &videos[half..]
        };
        for (k, v) in mine.iter().enumerate() {
            if (n + k) % 3 == 0 {
                continue;
            }
            app.record(*u, v.id, EventType::Like).await;
        }
    }
    users
}

fn service(app: &App) -> ModelService {
    ModelService::new(app.ports.model_registry.clone(), app.clock.clone())
}

async fn pairs(app: &App) -> Vec<Engagement> {
    app.ports
        .signals
        .engagement_pairs(app.now() - chrono::Duration::days(30), 1_000_000)
        .await
        .expect("engagement pairs")
}

/// A model-enabled app with two audiences on 40 videos, and its model service.
async fn app_with_audiences() -> (App, Vec<Video>, ModelService) {
    let app = App::with_model();
    let videos = app.with_videos(40).await;
    two_audiences(&app, &videos).await;
    let models = service(&app);
    (app, videos, models)
}

#[tokio::test]
async fn a_trained_model_is_registered_loaded_at_the_next_refresh_and_scores_feeds() {
    let (app, videos, models) = app_with_audiences().await;
    let report = models
        .train(
            pairs(&app).await,
            Default::default(),
            ActivationPolicy::Auto,
        )
        .await
        .expect("train");
    assert!(report.activated, "the first model goes live: {report:?}");
    assert!(report.metrics.interactions > 100 && report.artifact_bytes > 0);
    let listed = models.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, report.version);
    assert_eq!(
        listed[0].performance_metrics["ndcg_at_10"].as_f64(),
        Some(report.metrics.ndcg_at_10),
        "offline metrics are stored with the version"
    );

    // Not loaded before the snapshot refresh, loaded after it.
    assert_eq!(app.adapters.model.loaded_version(), None);
    let u = user();
    let before = app.page(u, 5, None).await;
    assert!(
        before.items.iter().all(|i| i
            .explanation
            .as_ref()
            .is_some_and(|e| e.weights.get(Signal::Model) == 0.0)),
        "no model signal before the refresh"
    );
    app.refresh().await;
    assert_eq!(
        app.adapters.model.loaded_version(),
        Some(report.version.clone())
    );

    // A new user who liked two videos of the first half gets the first half ranked up by the model.
    let fan = user();
    app.record(fan, videos[0].id, EventType::Complete).await;
    app.record(fan, videos[1].id, EventType::Complete).await;
    app.clock.advance(chrono::Duration::hours(2));
    let page = app.page(fan, 20, None).await;
    let model_of = |v: &Video| {
        page.items
            .iter()
            .find(|i| i.video.id == v.id)
            .and_then(|i| i.explanation.as_ref())
            .map(|e| e.signals.model)
    };
    let half = videos.len() / 2;
    let first: Vec<f64> = videos[2..half].iter().filter_map(model_of).collect();
    let second: Vec<f64> = videos[half..].iter().filter_map(model_of).collect();
    assert!(!first.is_empty() && !second.is_empty(), "{page:?}");
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    assert!(
        mean(&first) > mean(&second) + 0.1,
        "folded in from what the user watched: {first:?} vs {second:?}"
    );
    assert!(
        first.iter().chain(&second).all(|s| (0.0..=1.0).contains(s)),
        "calibrated into [0, 1]"
    );
    app.refresh().await;
    assert!(
        app.adapters.model_registry.inferences(&report.version) > 0,
        "inferences are counted per version"
    );
}

#[tokio::test]
async fn a_worse_version_needs_force_and_rollback_goes_back() {
    let (app, _, models) = app_with_audiences().await;
    let good = models
        .train(
            pairs(&app).await,
            Default::default(),
            ActivationPolicy::Auto,
        )
        .await
        .expect("train");
    assert!(good.metrics.ndcg_at_10 > 0.0, "{good:?}");
    let at = app.now();
    let registry = &app.ports.model_registry;
    let worse_metrics = serde_json::json!({"ndcg_at_10": good.metrics.ndcg_at_10 / 2.0});
    let artifact = registry
        .artifact(&good.version)
        .await
        .expect("artifact")
        .expect("stored");
    assert!(
        registry
            .register("worse", &worse_metrics, &artifact, at)
            .await
            .expect("register")
    );
    // The same NDCG up to rounding is not worse.
    let same = serde_json::json!({"ndcg_at_10": good.metrics.ndcg_at_10 - 1e-12});
    assert!(
        registry
            .register("same", &same, &artifact, at)
            .await
            .expect("register")
    );
    models.activate("same", false).await.expect("as good");
    models.activate(&good.version, false).await.expect("back");
    let refused = models.activate("worse", false).await;
    assert!(
        matches!(refused, Err(ModelError::Worse { .. })),
        "{refused:?}"
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("force"), "{message}");
    let forced = models.activate("worse", true).await.expect("forced");
    assert!(forced.forced);
    app.refresh().await;
    assert_eq!(
        app.adapters.model.loaded_version().as_deref(),
        Some("worse")
    );
    assert_eq!(models.rollback().await.expect("rollback"), good.version);
    app.refresh().await;
    assert_eq!(
        app.adapters.model.loaded_version(),
        Some(good.version.clone())
    );
    assert!(matches!(
        models.activate("nope", true).await,
        Err(ModelError::UnknownVersion(_))
    ));

    // A version without an artifact is refused, even forced...
    assert!(
        registry
            .register("empty", &serde_json::json!({}), &[], at)
            .await
            .expect("register")
    );
    assert!(matches!(
        models.activate("empty", true).await,
        Err(ModelError::NotLoadable { .. })
    ));
    // ...and when it is activated all the same (by hand in the registry), the last one keeps
    // scoring, and it is not fetched again at every refresh.
    assert!(registry.activate("empty", at).await.expect("activate"));
    let report = app.refresher.refresh().await.expect("refresh");
    assert!(report.degraded.contains(&"model"), "{report:?}");
    let report = app.refresher.refresh().await.expect("refresh");
    assert!(report.degraded.contains(&"model"), "{report:?}");
    assert_eq!(
        app.adapters.model.loaded_version(),
        Some(good.version.clone())
    );
    let page = app.page(user(), 5, None).await;
    assert!(
        page.items.iter().all(|i| i
            .explanation
            .as_ref()
            .is_some_and(|e| e.weights.get(Signal::Model) > 0.0)),
        "the model signal stays on"
    );
}

#[tokio::test]
async fn nothing_to_roll_back_to_and_nothing_to_train_on_are_named() {
    let app = App::with_model();
    let models = service(&app);
    assert!(matches!(
        models.rollback().await,
        Err(ModelError::NothingToRollBack)
    ));
    assert!(matches!(
        models
            .train(Vec::new(), Default::default(), ActivationPolicy::Auto)
            .await,
        Err(ModelError::NoData)
    ));
}
