//! The use cases end to end on the memory adapters: the feed rules a user can observe.
//!
//! This file holds the harness and the paging rules; `lifecycle` holds catalog, signal,
//! configuration, warm-up and health changes, `demo` a run on the generated demo catalog.

mod demo;
mod experiments;
mod lifecycle;
mod model;

use chrono::{DateTime, Duration, Utc};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;
use vrs_adapter_memory::{BaseUrlMediaUrls, ManualClock, MemoryAdapters};
use vrs_application::ports::{FeedCache, Ports};
use vrs_application::{
    CacheStatus, CandidateSnapshot, EngagementService, FeedConfig, FeedPage, FeedPosition,
    FeedService, NewEvent, PageRequest, SnapshotRefresher,
};
use vrs_domain::{CreatorId, EventType, Limit, UserId, Video, VideoId, VideoStatus};

/// The use cases wired to fresh memory adapters and a manual clock.
struct App {
    adapters: MemoryAdapters,
    clock: Arc<ManualClock>,
    ports: Ports,
    snapshot: Arc<CandidateSnapshot>,
    refresher: SnapshotRefresher,
    feed: Arc<FeedService>,
    engagement: EngagementService,
}

impl App {
    fn new() -> Self {
        Self::with_config(FeedConfig::default())
    }

    fn with_config(config: FeedConfig) -> Self {
        Self::build(config, false)
    }

    /// With the model scorer plugged in (it scores once a version is active).
    fn with_model() -> Self {
        Self::build(FeedConfig::default(), true)
    }

    fn build(config: FeedConfig, with_model: bool) -> Self {
        let adapters = MemoryAdapters::default();
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let media = Arc::new(BaseUrlMediaUrls::new("https://cdn.test"));
        let ports = adapters.ports(clock.clone(), media, with_model);
        let snapshot = Arc::new(CandidateSnapshot::new());
        Self {
            refresher: SnapshotRefresher::new(ports.clone(), snapshot.clone()),
            feed: Arc::new(FeedService::new(ports.clone(), snapshot.clone(), config)),
            engagement: EngagementService::new(ports.clone(), snapshot.clone()),
            adapters,
            clock,
            ports,
            snapshot,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        vrs_application::ports::Clock::now(self.clock.as_ref())
    }

    /// Stores `n` published videos, each by its own creator, the first the newest, and refreshes
    /// the snapshot. Distinct creators keep the diversity rule from reordering them.
    async fn with_videos(&self, n: usize) -> Vec<Video> {
        let videos: Vec<Video> = (1..=n)
            .map(|i| {
                let id = VideoId(Uuid::new_v4());
                let published = self.now() - Duration::hours(i as i64);
                Video {
                    id,
                    creator_id: CreatorId(Uuid::new_v4()),
                    title: format!("video {i}"),
                    duration_seconds: 20,
                    status: VideoStatus::Published,
                    visibility: vrs_domain::Visibility::Public,
                    media_key: format!("videos/{id}.m3u8"),
                    thumbnail_key: format!("thumbnails/{id}.jpg"),
                    published_at: Some(published),
                    updated_at: published,
                    deleted_at: None,
                }
            })
            .collect();
        self.ports
            .catalog
            .upsert_videos(&videos)
            .await
            .expect("upsert");
        self.refresh().await;
        videos
    }

    async fn refresh(&self) {
        self.refresher.refresh().await.expect("refresh");
    }

    async fn page(&self, user: UserId, limit: i64, position: Option<FeedPosition>) -> FeedPage {
        self.feed
            .page(PageRequest {
                user_id: user,
                limit: Limit::new(limit).expect("limit"),
                position,
                explain: true,
            })
            .await
            .expect("page")
    }

    /// A first page and every page after it, following the cursors.
    async fn walk(&self, user: UserId, limit: i64) -> Vec<FeedPage> {
        let mut pages = vec![self.page(user, limit, None).await];
        while let Some(next) = pages.last().and_then(|p| p.next) {
            assert!(pages.len() < 100, "the feed ends");
            pages.push(self.page(user, limit, Some(next.position)).await);
        }
        pages
    }

    async fn record(&self, user: UserId, video: VideoId, event_type: EventType) {
        let completion = event_type.is_watch().then_some(1.0);
        let event = NewEvent {
            event_id: Uuid::new_v4(),
            video_id: video,
            event_type,
            watch_ms: None,
            completion,
            occurred_at: None,
        };
        self.engagement
            .record(user, vec![event])
            .await
            .expect("record");
    }

    /// The user's cached session, as the feed cache holds it.
    async fn cached_session(&self, user: UserId) -> Vec<VideoId> {
        let session = self
            .adapters
            .feed_cache
            .current_session(user)
            .await
            .expect("feed cache")
            .expect("a cached session");
        session.items.iter().map(|i| i.video_id).collect()
    }
}

fn user() -> UserId {
    UserId(Uuid::new_v4())
}

fn ids(page: &FeedPage) -> Vec<VideoId> {
    page.items.iter().map(|i| i.video.id).collect()
}

fn all_ids(pages: &[FeedPage]) -> Vec<VideoId> {
    pages.iter().flat_map(ids).collect()
}

fn assert_unique(list: &[VideoId], why: &str) {
    let set: HashSet<&VideoId> = list.iter().collect();
    assert_eq!(set.len(), list.len(), "{why}");
}

#[tokio::test]
async fn pages_of_one_session_never_repeat_a_video() {
    let app = App::new();
    app.with_videos(60).await;
    let u = user();
    let pages = app.walk(u, 7).await;
    let seen = all_ids(&pages);
    assert_unique(&seen, "no video twice within a session");
    assert_eq!(seen.len(), 60, "the session covers every candidate");
    let statuses: Vec<CacheStatus> = pages.iter().map(|p| p.cache).collect();
    assert_eq!(
        statuses[0],
        CacheStatus::Miss,
        "the first page ranks the session"
    );
    assert!(
        statuses[1..].iter().all(|s| *s == CacheStatus::Hit),
        "follow-up pages are cut from it: {statuses:?}"
    );
}

#[tokio::test]
async fn a_watched_video_leaves_every_later_page() {
    let app = App::new();
    app.with_videos(60).await;
    let u = user();
    let first = app.page(u, 10, None).await;
    let second_at = first.next.expect("a second page").position;
    let second = app.page(u, 10, Some(second_at)).await;
    let on_screen = ids(&second)[3];
    // Also one that is further down the session and not served yet.
    let ahead = app.cached_session(u).await[40];
    app.record(u, on_screen, EventType::Complete).await;
    app.record(u, ahead, EventType::Watch).await;
    let gone = |pages: &[FeedPage], why: &str| {
        let seen = all_ids(pages);
        assert!(
            !seen.contains(&on_screen) && !seen.contains(&ahead),
            "{why}"
        );
    };

    let again = app.page(u, 10, Some(second_at)).await;
    gone(
        std::slice::from_ref(&again),
        "not on a page fetched again by cursor",
    );

    // 38 unseen videos are left in the cached session: the first page and its cursors use it.
    let cached = app.walk(u, 10).await;
    assert_eq!(cached[0].cache, CacheStatus::Hit);
    gone(
        &cached,
        "not on a first page or any cursor page cut from the cached session",
    );

    app.adapters
        .feed_cache
        .invalidate(u)
        .await
        .expect("invalidate");
    let ranked = app.walk(u, 10).await;
    assert_eq!(ranked[0].cache, CacheStatus::Miss);
    gone(&ranked, "not in a newly ranked session");
}

#[tokio::test]
async fn first_pages_skip_recent_serves_and_reuse_the_session_while_a_page_is_left() {
    let app = App::new();
    app.with_videos(60).await;
    let u = user();
    let mut statuses = Vec::new();
    let mut served = Vec::new();
    for _ in 0..6 {
        let page = app.page(u, 10, None).await;
        statuses.push(page.cache);
        served.extend(ids(&page));
    }
    assert_unique(&served, "six first pages of 60 videos repeat nothing");
    use CacheStatus::{Hit, Miss};
    assert_eq!(
        statuses,
        [Miss, Hit, Hit, Hit, Hit, Hit],
        "the cached session serves while it has a page of unseen videos"
    );
    let seventh = app.page(u, 10, None).await;
    assert_eq!(seventh.cache, Miss, "no unseen video left in the session");
    assert_eq!(
        seventh.items.len(),
        10,
        "repeats are served once nothing else is left"
    );
}

#[tokio::test]
async fn a_new_session_leaves_out_recent_serves_while_enough_others_exist() {
    let mut config = FeedConfig::default();
    config.ranking.session_size = 20;
    let app = App::with_config(config);
    app.with_videos(60).await;
    let u = user();
    let mut statuses = Vec::new();
    let mut served = Vec::new();
    for _ in 0..6 {
        let page = app.page(u, 10, None).await;
        statuses.push(page.cache);
        served.extend(ids(&page));
    }
    use CacheStatus::{Hit, Miss};
    assert_eq!(
        statuses,
        [Miss, Hit, Miss, Hit, Miss, Hit],
        "sessions of 20, pages of 10"
    );
    assert_unique(&served, "each new session ranks only videos not served yet");

    app.clock.advance(Duration::hours(25));
    let later = app.page(u, 10, None).await;
    assert_eq!(later.cache, Miss, "the cached session has expired");
    assert_eq!(
        later.items.len(),
        10,
        "serves older than a day no longer hold videos back"
    );
}

#[tokio::test]
async fn the_same_position_gives_the_same_page() {
    let app = App::new();
    app.with_videos(30).await;
    let u = user();
    let first = app.page(u, 8, None).await;
    let at = first.next.expect("a second page").position;
    let once = app.page(u, 8, Some(at)).await;
    let twice = app.page(u, 8, Some(at)).await;
    assert_eq!(ids(&once), ids(&twice), "same items, same order");
    assert_eq!(once.next, twice.next, "same cursor onward");
    assert_eq!(ids(&once).len(), 8);
    assert!(
        ids(&once).iter().all(|v| !ids(&first).contains(v)),
        "and it continues after the first page"
    );
}
