//! The in-process tiers: they pass the ports' contracts in front of a working shared store, and
//! keep sessions and histories answering while the shared store is down.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use uuid::Uuid;
use vrs_adapter_memory::{
    MemoryFeedCache, MemorySignalStore, MemoryViewHistory, TieredFeedCache, TieredViewHistory,
};
use vrs_application::contract::{feed_cache, history};
use vrs_application::ports::{FeedCache, PortError, SeenAmong, SignalStore, ViewHistory};
use vrs_domain::{
    CreatorId, EngagementEvent, EventType, FeedSession, Hidden, SessionId, UserId, VideoId, Weights,
};

#[tokio::test]
async fn a_tiered_feed_cache_passes_the_contract() {
    feed_cache::feed_cache_contract(|| async {
        Arc::new(TieredFeedCache::new(
            Arc::new(MemoryFeedCache::new(1_000)),
            1_000,
        )) as Arc<dyn FeedCache>
    })
    .await;
}

#[tokio::test]
async fn a_tiered_history_passes_the_contract() {
    history::history_contract(|| async {
        Arc::new(TieredViewHistory::new(
            Arc::new(MemoryViewHistory::default()),
            Arc::new(MemorySignalStore::default()),
            1_000,
        )) as Arc<dyn ViewHistory>
    })
    .await;
}

/// A store that fails every call while it is switched down.
struct Switchable<T> {
    inner: T,
    down: AtomicBool,
}

impl<T> Switchable<T> {
    fn new(inner: T) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
        }
    }
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    fn check(&self) -> Result<(), PortError> {
        if self.down.load(Ordering::SeqCst) {
            Err(PortError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl<T: FeedCache> FeedCache for Switchable<T> {
    async fn current_session(&self, user: UserId) -> Result<Option<FeedSession>, PortError> {
        self.check()?;
        self.inner.current_session(user).await
    }
    async fn session(&self, user: UserId, id: SessionId) -> Result<Option<FeedSession>, PortError> {
        self.check()?;
        self.inner.session(user, id).await
    }
    async fn store_session(
        &self,
        session: &FeedSession,
        ttl: std::time::Duration,
    ) -> Result<(), PortError> {
        self.check()?;
        self.inner.store_session(session, ttl).await
    }
    async fn refresh_session(
        &self,
        session: &FeedSession,
        ttl: std::time::Duration,
    ) -> Result<(), PortError> {
        self.check()?;
        self.inner.refresh_session(session, ttl).await
    }
    async fn invalidate(&self, user: UserId) -> Result<(), PortError> {
        self.check()?;
        self.inner.invalidate(user).await
    }
    async fn invalidate_all(&self) -> Result<u64, PortError> {
        self.check()?;
        self.inner.invalidate_all().await
    }
}

#[async_trait]
impl<T: ViewHistory> ViewHistory for Switchable<T> {
    async fn served_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError> {
        self.check()?;
        self.inner.served_since(user, since).await
    }
    async fn record_served(
        &self,
        user: UserId,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.check()?;
        self.inner.record_served(user, videos, at).await
    }
    async fn watched_since(
        &self,
        user: UserId,
        since: DateTime<Utc>,
    ) -> Result<Vec<VideoId>, PortError> {
        self.check()?;
        self.inner.watched_since(user, since).await
    }
    async fn record_watched(
        &self,
        user: UserId,
        videos: &[VideoId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.check()?;
        self.inner.record_watched(user, videos, at).await
    }
    async fn hidden_since(&self, user: UserId, since: DateTime<Utc>) -> Result<Hidden, PortError> {
        self.check()?;
        self.inner.hidden_since(user, since).await
    }
    async fn seen_among(
        &self,
        user: UserId,
        items: &[(VideoId, CreatorId)],
        served_since: DateTime<Utc>,
        watched_since: DateTime<Utc>,
    ) -> Result<SeenAmong, PortError> {
        self.check()?;
        self.inner
            .seen_among(user, items, served_since, watched_since)
            .await
    }
    async fn record_hidden(
        &self,
        user: UserId,
        videos: &[VideoId],
        creators: &[CreatorId],
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.check()?;
        self.inner.record_hidden(user, videos, creators, at).await
    }
}

fn session(user: UserId) -> FeedSession {
    let now = Utc::now();
    FeedSession {
        experiments: Vec::new(),
        id: SessionId(Uuid::new_v4()),
        user_id: user,
        created_at: now,
        expires_at: now + Duration::hours(1),
        weights: Weights::DEFAULT,
        items: Vec::new(),
    }
}

#[tokio::test]
async fn sessions_stored_or_read_before_an_outage_continue_during_it() {
    let shared = Arc::new(Switchable::new(MemoryFeedCache::new(100)));
    let tiered = TieredFeedCache::new(shared.clone(), 100);
    let ttl = std::time::Duration::from_secs(600);
    let user = UserId(Uuid::new_v4());
    // Ranked by this replica, and ranked by another one (stored in the shared cache only) but
    // read here once.
    let mine = session(user);
    tiered.store_session(&mine, ttl).await.expect("store");
    let theirs = session(user);
    shared.store_session(&theirs, ttl).await.expect("store");
    assert_eq!(
        tiered
            .session(user, theirs.id)
            .await
            .ok()
            .flatten()
            .as_ref(),
        Some(&theirs)
    );
    let unseen = session(user);
    shared.store_session(&unseen, ttl).await.expect("store");

    shared.set_down(true);
    for s in [&mine, &theirs] {
        assert_eq!(
            tiered.session(user, s.id).await.ok().flatten().as_ref(),
            Some(s),
            "a session this replica stored or read continues"
        );
    }
    assert_eq!(
        tiered.session(user, unseen.id).await.ok().flatten(),
        None,
        "a session this replica never saw is unknown (the client starts over)"
    );
    let during = session(user);
    assert!(tiered.store_session(&during, ttl).await.is_ok());
    assert_eq!(
        tiered.current_session(user).await.ok().flatten().as_ref(),
        Some(&during),
        "a session ranked during the outage is current and continues"
    );
    shared.set_down(false);
    assert_eq!(
        tiered
            .session(user, during.id)
            .await
            .ok()
            .flatten()
            .as_ref(),
        Some(&during),
        "its cursors still continue once the shared cache, which never got it, is back"
    );
    assert_eq!(
        tiered.current_session(user).await.ok().flatten().as_ref(),
        Some(&unseen),
        "but the shared cache decides which session is current again"
    );
    tiered.invalidate(user).await.expect("invalidate");
    assert_eq!(tiered.current_session(user).await.ok().flatten(), None);
}

#[tokio::test]
async fn with_the_shared_history_down_watches_come_from_this_replica_and_the_signal_store() {
    let shared = Arc::new(Switchable::new(MemoryViewHistory::default()));
    let archive = Arc::new(MemorySignalStore::default());
    let tiered = TieredViewHistory::new(shared.clone(), archive.clone(), 100);
    let user = UserId(Uuid::new_v4());
    let now = Utc::now();
    let (here, elsewhere, served) = (
        VideoId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
        VideoId(Uuid::new_v4()),
    );
    tiered
        .record_watched(user, &[here], now)
        .await
        .expect("watch");
    tiered
        .record_served(user, &[served], now)
        .await
        .expect("served");
    // Watched through another replica: only the signal store knows.
    archive
        .apply(&[EngagementEvent {
            event_id: Uuid::new_v4(),
            user_id: user,
            video_id: elsewhere,
            creator_id: CreatorId(Uuid::new_v4()),
            event_type: EventType::Watch,
            watch_ms: Some(1_000),
            completion: Some(0.5),
            occurred_at: now,
        }])
        .expect("apply");

    shared.set_down(true);
    let since = now - Duration::days(30);
    let mut watched = tiered.watched_since(user, since).await.expect("watched");
    watched.sort_unstable();
    let mut expected = vec![here, elsewhere];
    expected.sort_unstable();
    assert_eq!(watched, expected);
    assert_eq!(
        tiered.served_since(user, since).await.ok(),
        Some(vec![served])
    );
    assert!(
        tiered.record_served(user, &[here], now).await.is_ok(),
        "serving does not fail with the shared history"
    );
    assert!(
        tiered.record_watched(user, &[served], now).await.is_err(),
        "a watch the shared history cannot remember is refused (its event is retried)"
    );
    assert!(archive.watched_since(user, since).await.is_ok());
}

#[tokio::test]
async fn with_the_shared_history_down_hidden_videos_come_from_this_replica_and_the_signal_store() {
    let shared = Arc::new(Switchable::new(MemoryViewHistory::default()));
    let archive = Arc::new(MemorySignalStore::default());
    let tiered = TieredViewHistory::new(shared.clone(), archive.clone(), 100);
    let user = UserId(Uuid::new_v4());
    let now = Utc::now();
    let (here, elsewhere) = (VideoId(Uuid::new_v4()), VideoId(Uuid::new_v4()));
    let creator = CreatorId(Uuid::new_v4());
    tiered
        .record_hidden(user, &[here], &[], now)
        .await
        .expect("hide");
    // Hidden through another replica: only the signal store knows.
    archive
        .apply(&[EngagementEvent {
            event_id: Uuid::new_v4(),
            user_id: user,
            video_id: elsewhere,
            creator_id: creator,
            event_type: EventType::HideCreator,
            watch_ms: None,
            completion: None,
            occurred_at: now,
        }])
        .expect("apply");
    assert_eq!(
        tiered
            .hidden_since(user, DateTime::<Utc>::UNIX_EPOCH)
            .await
            .ok()
            .map(|h| h.creators.len()),
        Some(0),
        "while the shared history answers, it decides"
    );

    shared.set_down(true);
    let hidden = tiered
        .hidden_since(user, DateTime::<Utc>::UNIX_EPOCH)
        .await
        .expect("hidden");
    assert_eq!(hidden.videos, [here].into());
    assert_eq!(hidden.creators, [creator].into());
    let other = VideoId(Uuid::new_v4());
    let seen = tiered
        .seen_among(
            user,
            &[
                (here, CreatorId(Uuid::new_v4())),
                (other, creator),
                (elsewhere, CreatorId(Uuid::new_v4())),
            ],
            now - Duration::days(1),
            now - Duration::days(30),
        )
        .await
        .expect("the items are checked against this replica's and the signal store's records");
    assert_eq!(seen.hidden.videos, [here].into());
    assert!(seen.hidden.hides(&other, &creator), "by its hidden creator");
    assert!(!seen.hidden.videos.contains(&elsewhere));
    assert!(
        tiered
            .record_hidden(user, &[elsewhere], &[], now)
            .await
            .is_err(),
        "a hide the shared history cannot remember is refused (its event is retried)"
    );
}
