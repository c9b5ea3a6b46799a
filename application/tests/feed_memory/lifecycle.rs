//! Changes around the feed: catalog deletions, engagement, ranking configuration, warm-up, health.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use vrs_application::{CacheWarmer, FeedError, HealthService, HealthStatus};
use vrs_domain::{Signal, Weights};

#[tokio::test]
async fn a_deleted_or_unpublished_video_never_appears_even_from_a_cached_session() {
    let app = App::new();
    let videos = app.with_videos(60).await;
    let u = user();
    let first = app.page(u, 10, None).await;
    let session = app.cached_session(u).await;
    // Both are in the cached session but not served yet.
    let (deleted, unpublished) = (session[15], session[35]);
    let changed: Vec<Video> = videos
        .iter()
        .filter(|v| v.id == deleted || v.id == unpublished)
        .map(|v| {
            let mut v = v.clone();
            v.updated_at = app.now();
            if v.id == deleted {
                v.status = VideoStatus::Deleted;
                v.deleted_at = Some(app.now());
            } else {
                v.status = VideoStatus::Draft;
            }
            v
        })
        .collect();
    app.ports
        .catalog
        .upsert_videos(&changed)
        .await
        .expect("upsert");
    app.refresh().await;
    let absent = |pages: &[FeedPage], why: &str| {
        let seen = all_ids(pages);
        assert!(
            !seen.contains(&deleted) && !seen.contains(&unpublished),
            "{why}"
        );
    };

    let cursor = app
        .page(u, 10, Some(first.next.expect("a second page").position))
        .await;
    absent(std::slice::from_ref(&cursor), "not on a cursor page");
    let pages = app.walk(u, 10).await;
    assert_eq!(
        pages[0].cache,
        CacheStatus::Hit,
        "served from the cached session"
    );
    absent(&pages, "not on pages of the cached session");
    assert_eq!(
        all_ids(&pages).len() + 20,
        58,
        "every other video of the session is still served"
    );
}

#[tokio::test]
async fn a_private_or_unlisted_video_never_appears_even_from_a_cached_session() {
    let app = App::new();
    let mut videos = app.with_videos(60).await;
    // Two more that were never public: they are never ranked.
    let hidden: Vec<Video> = videos
        .drain(..2)
        .map(|v| Video {
            id: VideoId(Uuid::new_v4()),
            visibility: vrs_domain::Visibility::Private,
            ..v
        })
        .collect();
    app.ports
        .catalog
        .upsert_videos(&hidden)
        .await
        .expect("upsert");
    app.refresh().await;
    let u = user();
    let first = app.page(u, 10, None).await;
    let session = app.cached_session(u).await;
    for h in &hidden {
        assert!(!session.contains(&h.id), "a private video was ranked");
    }
    // Two videos of the cached session become private and unlisted after it was ranked.
    let (private, unlisted) = (session[15], session[35]);
    let changed: Vec<Video> = videos
        .iter()
        .filter(|v| v.id == private || v.id == unlisted)
        .map(|v| {
            let mut v = v.clone();
            v.updated_at = app.now();
            v.visibility = if v.id == private {
                vrs_domain::Visibility::Private
            } else {
                vrs_domain::Visibility::Unlisted
            };
            v
        })
        .collect();
    app.ports
        .catalog
        .upsert_videos(&changed)
        .await
        .expect("upsert");
    app.refresh().await;
    let mut pages = vec![
        app.page(u, 10, Some(first.next.expect("a second page").position))
            .await,
    ];
    pages.extend(app.walk(u, 10).await);
    pages.extend(app.walk(user(), 10).await);
    let seen = all_ids(&pages);
    for id in [private, unlisted]
        .into_iter()
        .chain(hidden.iter().map(|v| v.id))
    {
        assert!(!seen.contains(&id), "a non-public video was served");
    }
}

#[tokio::test]
async fn a_like_raises_the_videos_engagement_after_the_next_refresh() {
    let app = App::new();
    let videos = app.with_videos(10).await;
    let liked = videos[4].id;
    let fan = user();
    app.record(fan, liked, EventType::View).await;
    app.record(fan, liked, EventType::Like).await;
    let engagement = |app: &App| {
        app.snapshot
            .load()
            .and_then(|s| s.pool.get(&liked).map(|e| e.engagement))
    };
    assert_eq!(
        engagement(&app),
        Some(0.0),
        "signals change only with a refresh"
    );

    app.refresh().await;
    assert_eq!(engagement(&app), Some(1.0), "one like per view");
    let page = app.page(user(), 10, None).await;
    let item = page
        .items
        .iter()
        .find(|i| i.video.id == liked)
        .expect("the liked video is in another user's feed");
    assert_eq!(item.stats.likes, 1);
    assert_eq!(
        item.explanation.map(|e| e.signals.engagement),
        Some(1.0),
        "and ranks with its new engagement"
    );
}

#[tokio::test]
async fn warm_up_makes_the_next_first_page_a_hit() {
    let app = App::new();
    let videos = app.with_videos(30).await;
    let (busy, active) = (user(), user());
    for (u, n) in [(busy, 3), (active, 1)] {
        for v in &videos[..n] {
            app.record(u, v.id, EventType::View).await;
        }
    }
    let warmer = CacheWarmer::new(app.ports.clone(), app.feed.clone());
    let progress = AtomicUsize::new(0);
    let report = warmer
        .warm_most_active(10, 2, |n| {
            progress.fetch_add(n, Ordering::SeqCst);
        })
        .await
        .expect("warm-up");
    assert_eq!((report.warmed, report.failed), (2, 0), "both active users");
    assert_eq!(
        progress.load(Ordering::SeqCst),
        2,
        "progress reported per user"
    );

    for u in [busy, active] {
        assert_eq!(app.page(u, 10, None).await.cache, CacheStatus::Hit);
    }
    assert_eq!(
        app.page(user(), 10, None).await.cache,
        CacheStatus::Miss,
        "a user without activity was not warmed"
    );
}

#[tokio::test]
async fn health_and_feed_are_ready_only_after_the_first_refresh() {
    let app = App::new();
    let health = HealthService::new(
        app.ports.clone(),
        app.snapshot.clone(),
        std::time::Duration::from_secs(300),
    )
    .with_cache_period(std::time::Duration::ZERO);
    let before = health.check().await;
    assert_eq!(
        (before.status, before.ready),
        (HealthStatus::Degraded, false)
    );
    let request = PageRequest {
        user_id: user(),
        limit: Limit::default(),
        position: None,
        explain: false,
    };
    assert_eq!(
        app.feed.page(request).await.err(),
        Some(FeedError::NotReady)
    );

    app.with_videos(5).await;
    let after = health.check().await;
    assert_eq!((after.status, after.ready), (HealthStatus::Ok, true));
    assert!(app.feed.page(request).await.is_ok(), "feeds are served");

    app.clock.advance(Duration::minutes(10));
    let stale = health.check().await;
    assert_eq!(
        (stale.status, stale.ready),
        (HealthStatus::Degraded, true),
        "a snapshot older than the limit degrades but still serves"
    );
}

#[tokio::test]
async fn a_ranking_configuration_change_is_picked_up_by_the_next_refresh() {
    let app = App::new();
    let videos = app.with_videos(20).await;
    let fresh_only = Weights::new(1.0, 0.0, 0.0, 0.0, 0.0).expect("valid");
    app.adapters.ranking_config.set(fresh_only);
    let weights = |page: &FeedPage| {
        page.items
            .first()
            .and_then(|i| i.explanation)
            .map(|e| e.weights)
    };

    let before = app.page(user(), 10, None).await;
    assert_eq!(
        weights(&before).map(|w| w.get(Signal::Freshness)),
        Some(
            Weights::DEFAULT
                .renormalized(vrs_domain::SignalSet::ALL.without(Signal::Model))
                .get(Signal::Freshness)
        ),
        "the old weights until the snapshot is refreshed"
    );

    app.refresh().await;
    assert_eq!(app.snapshot.load().map(|s| s.weights), Some(fresh_only));
    let after = app.page(user(), 10, None).await;
    assert_eq!(
        weights(&after),
        Some(fresh_only),
        "a new session ranks with the new set"
    );
    let newest: Vec<VideoId> = videos[..10].iter().map(|v| v.id).collect();
    assert_eq!(ids(&after), newest, "by freshness alone: newest first");
}

#[tokio::test]
async fn a_change_committed_late_behind_the_watermark_is_still_picked_up() {
    let app = App::new();
    let videos = app.with_videos(30).await;
    let u = user();
    assert!(!all_ids(&app.walk(u, 10).await).is_empty());

    // A change that moves the watermark to now, then a writer's change committed afterwards but
    // stamped 10 s earlier (its transaction began before): a deletion the feed must honour.
    let mut recent = videos[0].clone();
    recent.title = "retitled".into();
    recent.updated_at = app.now();
    app.ports
        .catalog
        .upsert_videos(&[recent])
        .await
        .expect("upsert");
    app.refresh().await;
    let mut late = videos[1].clone();
    late.status = VideoStatus::Deleted;
    late.deleted_at = Some(app.now());
    late.updated_at = app.now() - chrono::Duration::seconds(10);
    app.ports
        .catalog
        .upsert_videos(&[late.clone()])
        .await
        .expect("upsert");
    app.refresh().await;

    let seen = all_ids(&app.walk(user(), 10).await);
    assert!(!seen.is_empty());
    assert!(
        !seen.contains(&late.id),
        "the late deletion was missed by the refresh"
    );
}
