//! Use cases against mocked ports: how each of them degrades or fails when a port misbehaves.
//!
//! This file holds the mocks and the feed cases; `engagement` and `health` hold the others.

mod admin;
mod engagement;
mod health;

use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;
use vrs_application::ports::{
    EventLedger, HealthProbe, MockClock, MockEventLedger, MockEventSink, MockFeedCache,
    MockFollowGraph, MockHealthProbe, MockMediaUrls, MockModelRegistry, MockModelScorer,
    MockRankingConfigStore, MockSignalStore, MockVideoCatalog, MockViewHistory, PortError, Ports,
    PublishOutcome, SeenAmong,
};
use vrs_application::{
    CacheStatus, CacheWarmer, CandidateSnapshot, EngagementError, EngagementService, FeedConfig,
    FeedError, FeedPage, FeedPosition, FeedService, HealthService, HealthStatus, NewEvent,
    PageRequest, RecordOutcome, SnapshotState,
};
use vrs_domain::{
    CandidatePool, CreatorId, EventType, FeedSession, Hidden, Limit, Reason, SessionId,
    SessionItem, Signal, SignalValues, UserId, Video, VideoId, VideoStatus, Weights,
};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn down() -> PortError {
    PortError::Unavailable("down".into())
}

/// `n` published videos, one per creator, published 1..=n hours ago.
fn videos(n: u128) -> Vec<Video> {
    (1..=n)
        .map(|i| {
            let id = VideoId(Uuid::from_u128(0x1000 + i));
            let published = now() - Duration::hours(i as i64);
            Video {
                id,
                creator_id: CreatorId(Uuid::from_u128(0x2000 + i)),
                title: format!("video {i}"),
                duration_seconds: 30,
                status: VideoStatus::Published,
                visibility: vrs_domain::Visibility::Public,
                media_key: format!("v/{id}.m3u8"),
                thumbnail_key: format!("t/{id}.jpg"),
                published_at: Some(published),
                updated_at: published,
                deleted_at: None,
            }
        })
        .collect()
}

/// A snapshot of `videos(12)` with the default weights.
fn loaded_snapshot() -> Arc<CandidateSnapshot> {
    let snapshot = Arc::new(CandidateSnapshot::new());
    snapshot.store(SnapshotState {
        pool: CandidatePool::build(videos(12), &HashMap::new(), &[]),
        weights: Weights::DEFAULT,
        built_at: now(),
        signals_fresh: true,
        model: Some(vrs_application::ports::ModelInfo {
            version: "test-model".into(),
            deployed_at: now(),
        }),
        experiments: Vec::new(),
    });
    snapshot
}

fn user() -> UserId {
    UserId(Uuid::from_u128(0xabc))
}

fn first_page(limit: i64) -> PageRequest {
    PageRequest {
        user_id: user(),
        limit: Limit::new(limit).expect("limit"),
        position: None,
        explain: true,
    }
}

/// Counts the calls of a mocked method.
fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Every port as a mock. Tests set the expectations they care about first; `ports()` then adds
/// healthy defaults behind them, which mockall only uses when no earlier expectation matches.
struct Mocks {
    catalog: MockVideoCatalog,
    follows: MockFollowGraph,
    signals: MockSignalStore,
    history: MockViewHistory,
    feed_cache: MockFeedCache,
    events: MockEventSink,
    model: Option<MockModelScorer>,
    /// Replaces the (real, in-memory) event ledger.
    event_ledger: Option<Arc<dyn EventLedger>>,
    probes: Vec<Arc<dyn HealthProbe>>,
}

impl Mocks {
    fn new() -> Self {
        Self {
            catalog: MockVideoCatalog::new(),
            follows: MockFollowGraph::new(),
            signals: MockSignalStore::new(),
            history: MockViewHistory::new(),
            feed_cache: MockFeedCache::new(),
            events: MockEventSink::new(),
            model: None,
            event_ledger: None,
            probes: Vec::new(),
        }
    }

    /// A model that scores every video 0.75.
    fn with_model(mut self) -> Self {
        let mut model = MockModelScorer::new();
        model
            .expect_score()
            .returning(|_, _, _, ids| Ok(vec![0.75; ids.len()]));
        self.model = Some(model);
        self
    }

    fn ports(mut self) -> Ports {
        self.catalog
            .expect_videos_by_ids()
            .returning(|_| Ok(vec![]));
        self.follows
            .expect_followed_creators()
            .returning(|_| Ok(vec![]));
        self.signals
            .expect_creator_affinity()
            .returning(|_, _| Ok(vec![]));
        self.signals
            .expect_watched_since()
            .returning(|_, _| Ok(vec![]));
        self.history
            .expect_served_since()
            .returning(|_, _| Ok(vec![]));
        self.history
            .expect_watched_since()
            .returning(|_, _| Ok(vec![]));
        self.history
            .expect_record_served()
            .returning(|_, _, _| Ok(()));
        self.history
            .expect_record_watched()
            .returning(|_, _, _| Ok(()));
        self.history
            .expect_hidden_since()
            .returning(|_, _| Ok(Hidden::default()));
        // Each test mocks the whole histories' reads; the feed falls back on them when a cached
        // session's items cannot be checked.
        self.history
            .expect_seen_among()
            .returning(|_, _, _, _| Err(PortError::Unavailable("checks are not mocked".into())));
        self.history
            .expect_record_hidden()
            .returning(|_, _, _, _| Ok(()));
        self.signals
            .expect_hidden()
            .returning(|_| Ok(Hidden::default()));
        self.feed_cache
            .expect_current_session()
            .returning(|_| Ok(None));
        self.feed_cache.expect_session().returning(|_, _| Ok(None));
        self.feed_cache
            .expect_store_session()
            .returning(|_, _| Ok(()));
        self.feed_cache
            .expect_refresh_session()
            .returning(|_, _| Ok(()));
        self.events.expect_publish().returning(|batch| {
            Ok(PublishOutcome {
                accepted: batch.len(),
                duplicates: 0,
            })
        });
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        let mut media = MockMediaUrls::new();
        media
            .expect_playback_url()
            .returning(|v| format!("https://cdn/{}", v.media_key));
        media
            .expect_thumbnail_url()
            .returning(|v| format!("https://cdn/{}", v.thumbnail_key));
        Ports {
            catalog: Arc::new(self.catalog),
            follows: Arc::new(self.follows),
            ranking_config: Arc::new(MockRankingConfigStore::new()),
            signals: Arc::new(self.signals),
            history: Arc::new(self.history),
            feed_cache: Arc::new(self.feed_cache),
            events: Arc::new(self.events),
            // A real ledger: use-case tests check deduplication end to end.
            event_ledger: self
                .event_ledger
                .unwrap_or_else(|| Arc::new(vrs_adapter_memory::MemoryEventLedger::default())),
            model: self.model.map(|m| Arc::new(m) as _),
            model_registry: Arc::new(MockModelRegistry::new()),
            experiments: Arc::new(vrs_adapter_memory::MemoryExperimentStore::default()),
            media: Arc::new(media),
            clock: Arc::new(clock),
            probes: self.probes,
        }
    }

    fn feed(self) -> FeedService {
        FeedService::new(self.ports(), loaded_snapshot(), FeedConfig::default())
    }
}

/// The weights the page's items were scored with.
fn weights(page: &FeedPage) -> Weights {
    page.items
        .first()
        .and_then(|i| i.explanation)
        .map(|e| e.weights)
        .expect("an explained item")
}

fn assert_sums_to_one(w: Weights) {
    let sum: f64 = Signal::ALL.iter().map(|&s| w.get(s)).sum();
    assert!(
        (sum - 1.0).abs() < 1e-9,
        "renormalized weights sum to 1: {w:?}"
    );
}

#[tokio::test]
async fn cache_read_error_serves_a_bypassed_page_without_cursor() {
    let mut mocks = Mocks::new();
    mocks
        .feed_cache
        .expect_current_session()
        .returning(|_| Err(down()));
    let stores = counter();
    let seen = stores.clone();
    mocks
        .feed_cache
        .expect_store_session()
        .returning(move |_, _| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    let page = mocks.feed().page(first_page(5)).await.expect("page");
    assert_eq!(page.items.len(), 5, "the page is still served");
    assert_eq!(page.cache, CacheStatus::Bypass);
    assert_eq!(
        page.next, None,
        "no cursor into a session that was not stored"
    );
    assert_eq!(
        stores.load(Ordering::SeqCst),
        0,
        "a cache that failed is not written"
    );
}

#[tokio::test]
async fn cache_write_error_serves_a_bypassed_page_without_cursor() {
    let mut mocks = Mocks::new();
    mocks
        .feed_cache
        .expect_store_session()
        .returning(|_, _| Err(down()));
    let page = mocks.feed().page(first_page(5)).await.expect("page");
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.cache, CacheStatus::Bypass);
    assert_eq!(
        page.next, None,
        "the session a cursor would point into was not stored"
    );
}

#[tokio::test]
async fn a_stored_session_is_a_miss_with_a_cursor() {
    let page = Mocks::new().feed().page(first_page(5)).await.expect("page");
    assert_eq!(page.cache, CacheStatus::Miss);
    let next = page.next.expect("12 videos make more than one page of 5");
    assert_eq!(next.position.offset, 5);
}

#[tokio::test]
async fn the_model_folds_the_user_in_from_what_they_watched() {
    let watched = videos(12)[3].id;
    let mut mocks = Mocks::new();
    mocks
        .history
        .expect_watched_since()
        .returning(move |_, _| Ok(vec![watched]));
    let mut model = MockModelScorer::new();
    model
        .expect_score()
        .withf(move |_, _, recent, ids| {
            recent.len() == 1
                && recent[0].0 == watched
                && recent[0].1 == videos(12)[3].creator_id
                && ids.iter().all(|(v, _)| *v != watched)
        })
        .times(1)
        .returning(|_, _, _, ids| Ok(vec![0.5; ids.len()]));
    mocks.model = Some(model);
    let page = mocks.feed().page(first_page(5)).await.expect("page");
    assert_eq!(page.items.len(), 5);
}

#[tokio::test]
async fn follows_error_still_serves_with_every_signal() {
    let mut mocks = Mocks::new().with_model();
    mocks
        .follows
        .expect_followed_creators()
        .returning(|_| Err(down()));
    let page = mocks.feed().page(first_page(5)).await.expect("page");
    assert_eq!(page.items.len(), 5);
    assert_eq!(
        weights(&page),
        Weights::DEFAULT,
        "missing follows remove a source, not a signal"
    );
}

#[tokio::test]
async fn affinity_error_still_serves_with_affinity_renormalized_away() {
    let mut mocks = Mocks::new().with_model();
    mocks
        .signals
        .expect_creator_affinity()
        .returning(|_, _| Err(down()));
    let page = mocks.feed().page(first_page(5)).await.expect("page");
    assert_eq!(page.items.len(), 5);
    let w = weights(&page);
    assert_eq!(w.get(Signal::Affinity), 0.0, "affinity dropped");
    assert!(
        w.get(Signal::Model) > Weights::DEFAULT.get(Signal::Model),
        "others scaled up"
    );
    assert_sums_to_one(w);
    assert!(
        page.items
            .iter()
            .all(|i| i.explanation.map(|e| e.contributions.affinity) == Some(0.0)),
        "no item gets an affinity contribution"
    );
}

#[tokio::test]
async fn model_scores_are_used_when_they_fit() {
    let page = Mocks::new()
        .with_model()
        .feed()
        .page(first_page(5))
        .await
        .expect("page");
    assert_eq!(weights(&page), Weights::DEFAULT, "every signal available");
    assert!(
        page.items
            .iter()
            .all(|i| i.explanation.map(|e| e.signals.model) == Some(0.75)),
        "each item carries its model score"
    );
}

#[tokio::test]
async fn model_error_renormalizes_without_the_model() {
    let mut model = MockModelScorer::new();
    model.expect_score().returning(|_, _, _, _| Err(down()));
    let mut mocks = Mocks::new();
    mocks.model = Some(model);
    let page = mocks.feed().page(first_page(5)).await.expect("page");
    assert_eq!(page.items.len(), 5);
    let w = weights(&page);
    assert_eq!(w.get(Signal::Model), 0.0);
    assert!(w.get(Signal::Affinity) > 0.0, "affinity is still available");
    assert_sums_to_one(w);
}

#[tokio::test]
async fn model_answer_of_the_wrong_length_is_ignored() {
    let mut model = MockModelScorer::new();
    model.expect_score().returning(|_, _, _, _| Ok(vec![0.9]));
    let mut mocks = Mocks::new();
    mocks.model = Some(model);
    let page = mocks.feed().page(first_page(5)).await.expect("page");
    assert_eq!(page.items.len(), 5);
    assert_eq!(
        weights(&page).get(Signal::Model),
        0.0,
        "scores that do not fit are dropped"
    );
    assert!(
        page.items
            .iter()
            .all(|i| i.explanation.map(|e| e.signals.model) == Some(0.0)),
        "no item keeps a misaligned score"
    );
}

#[tokio::test]
async fn history_errors_degrade_to_an_unfiltered_page() {
    let mut mocks = Mocks::new();
    mocks
        .history
        .expect_served_since()
        .returning(|_, _| Err(down()));
    mocks
        .history
        .expect_watched_since()
        .returning(|_, _| Err(down()));
    mocks
        .history
        .expect_record_served()
        .returning(|_, _, _| Err(down()));
    let page = mocks.feed().page(first_page(5)).await.expect("page");
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.cache, CacheStatus::Miss);
}

#[tokio::test]
async fn no_snapshot_is_not_ready() {
    let feed = FeedService::new(
        Mocks::new().ports(),
        Arc::new(CandidateSnapshot::new()),
        FeedConfig::default(),
    );
    assert_eq!(
        feed.page(first_page(5)).await.err(),
        Some(FeedError::NotReady)
    );
    let cursor = PageRequest {
        position: Some(FeedPosition {
            session_id: SessionId(Uuid::new_v4()),
            offset: 5,
        }),
        ..first_page(5)
    };
    assert_eq!(feed.page(cursor).await.err(), Some(FeedError::NotReady));
}

fn cursor_into(session: SessionId) -> PageRequest {
    PageRequest {
        position: Some(FeedPosition {
            session_id: session,
            offset: 5,
        }),
        ..first_page(5)
    }
}

#[tokio::test]
async fn cursor_into_an_unknown_session_is_expired() {
    let feed = Mocks::new().feed();
    let result = feed.page(cursor_into(SessionId(Uuid::new_v4()))).await;
    assert_eq!(result.err(), Some(FeedError::SessionExpired));
}

#[tokio::test]
async fn cursor_into_a_session_past_its_expiry_is_expired() {
    let mut mocks = Mocks::new();
    mocks.feed_cache.expect_session().returning(|user, id| {
        Ok(Some(FeedSession {
            experiments: Vec::new(),
            id,
            user_id: user,
            created_at: now() - Duration::hours(2),
            // The cache still holds it, but its own expiry has passed.
            expires_at: now(),
            weights: Weights::DEFAULT,
            items: Vec::new(),
        }))
    });
    let result = mocks
        .feed()
        .page(cursor_into(SessionId(Uuid::new_v4())))
        .await;
    assert_eq!(result.err(), Some(FeedError::SessionExpired));
}

#[tokio::test]
async fn cursor_with_the_cache_down_is_unavailable_rather_than_a_page_that_repeats() {
    let mut mocks = Mocks::new();
    mocks
        .feed_cache
        .expect_session()
        .returning(|_, _| Err(down()));
    mocks.feed_cache.expect_store_session().never();
    let result = mocks
        .feed()
        .page(cursor_into(SessionId(Uuid::new_v4())))
        .await;
    assert!(
        matches!(result, Err(FeedError::Unavailable(_))),
        "a page ranked anew would repeat earlier pages: {result:?}"
    );
}

/// A stored session of the snapshot's videos, created `age` ago, expiring at `expires_at`.
#[tokio::test]
async fn a_cursor_page_reads_what_was_watched_since_its_session_was_ranked_and_every_hide() {
    type Reads = Arc<std::sync::Mutex<Vec<DateTime<Utc>>>>;
    let ranked = now() - Duration::hours(1);
    let (watched, hidden): (Reads, Reads) = Default::default();
    let mut mocks = Mocks::new();
    let seen = watched.clone();
    mocks
        .history
        .expect_watched_since()
        .returning(move |_, at| {
            seen.lock().expect("lock").push(at);
            Ok(vec![])
        });
    let seen = hidden.clone();
    mocks.history.expect_hidden_since().returning(move |_, at| {
        seen.lock().expect("lock").push(at);
        Ok(Hidden::default())
    });
    mocks
        .feed_cache
        .expect_session()
        .returning(move |user, id| {
            Ok(Some(FeedSession {
                created_at: ranked,
                ..stored_session(user, id, now() + Duration::hours(2))
            }))
        });
    let feed = mocks.feed();
    let reads = |request| {
        let (feed, watched, hidden) = (&feed, watched.clone(), hidden.clone());
        async move {
            watched.lock().expect("lock").clear();
            hidden.lock().expect("lock").clear();
            feed.page(request).await.expect("page");
            let watched = watched.lock().expect("lock").clone();
            let hidden = hidden.lock().expect("lock").clone();
            (watched, hidden)
        }
    };
    let every_hide = vec![DateTime::<Utc>::UNIX_EPOCH];
    let id = vrs_application::ports::new_session_id(ranked);
    assert_eq!(id.created_at(), Some(ranked));
    assert_eq!(
        reads(cursor_into(id)).await,
        (vec![ranked - Duration::minutes(15)], every_hide.clone()),
        "watched since 15 minutes before the session was ranked; every hide"
    );
    assert_eq!(
        reads(cursor_into(SessionId(Uuid::new_v4()))).await,
        (vec![now() - Duration::days(30)], every_hide.clone()),
        "an id that does not tell: watched in the whole window"
    );
    let later = vrs_application::ports::new_session_id(now());
    assert_eq!(
        reads(cursor_into(later)).await,
        (
            vec![
                now() - Duration::minutes(15),
                ranked - Duration::minutes(15)
            ],
            every_hide
        ),
        "an id later than its session: watched read again from the session's own time"
    );
}

/// A cached session whose items the history check answers for (`seen_among` mocked).
fn checked_session_mocks(seen: SeenAmong, current: FeedSession) -> Mocks {
    let mut mocks = Mocks::new();
    mocks
        .history
        .expect_seen_among()
        .returning(move |_, _, _, _| Ok(seen.clone()));
    mocks
        .feed_cache
        .expect_current_session()
        .returning(move |_| Ok(Some(current.clone())));
    mocks
}

#[tokio::test]
async fn a_first_page_reuses_its_session_without_what_the_check_finds_and_ranks_anew_when_too_little_is_left()
 {
    let request = first_page(5);
    let session = stored_session(
        request.user_id,
        SessionId(Uuid::new_v4()),
        now() + Duration::hours(3),
    );
    let items: Vec<(VideoId, CreatorId)> = session
        .items
        .iter()
        .map(|i| (i.video_id, i.creator_id))
        .collect();
    let seen = SeenAmong {
        served: [items[0].0].into(),
        watched: [items[1].0].into(),
        hidden: Hidden {
            videos: [items[2].0].into(),
            creators: [items[3].1].into(),
        },
    };
    let page = checked_session_mocks(seen, session.clone())
        .feed()
        .page(request)
        .await
        .expect("page");
    assert_eq!(page.cache, CacheStatus::Hit, "the cached session is reused");
    assert_eq!(page.session_id, session.id);
    let served: Vec<VideoId> = page.items.iter().map(|i| i.video.id).collect();
    assert_eq!(served.len(), 5);
    for (i, (video, _)) in items.iter().take(4).enumerate() {
        assert!(
            !served.contains(video),
            "item {i} was served, watched or hidden: {served:?}"
        );
    }

    // Every item served already: a new session is ranked.
    let seen = SeenAmong {
        served: items.iter().map(|(v, _)| *v).collect(),
        ..SeenAmong::default()
    };
    let page = checked_session_mocks(seen, session.clone())
        .feed()
        .page(first_page(5))
        .await
        .expect("page");
    assert_eq!(page.cache, CacheStatus::Miss, "a new session");
    assert_ne!(page.session_id, session.id);
}

fn stored_session(user: UserId, id: SessionId, expires_at: DateTime<Utc>) -> FeedSession {
    FeedSession {
        experiments: Vec::new(),
        id,
        user_id: user,
        created_at: now() - Duration::hours(1),
        expires_at,
        weights: Weights::DEFAULT,
        items: videos(20)
            .into_iter()
            .map(|v| SessionItem {
                video_id: v.id,
                creator_id: v.creator_id,
                score: 0.5,
                reason: Reason::Fresh,
                signals: SignalValues::default(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn every_cursor_handed_out_stays_valid_an_hour() {
    let mut mocks = Mocks::new();
    // Five minutes left: the page extends the session before handing out its cursor.
    mocks
        .feed_cache
        .expect_session()
        .returning(|user, id| Ok(Some(stored_session(user, id, now() + Duration::minutes(5)))));
    let refreshed = counter();
    let seen = refreshed.clone();
    mocks
        .feed_cache
        .expect_refresh_session()
        .times(1)
        .returning(move |session, ttl| {
            assert!(session.expires_at >= now() + Duration::hours(1));
            assert!(ttl >= std::time::Duration::from_secs(3_600));
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    let page = mocks
        .feed()
        .page(cursor_into(SessionId(Uuid::new_v4())))
        .await
        .expect("page");
    let next = page.next.expect("a next page");
    assert!(next.expires_at >= now() + Duration::hours(1), "{next:?}");
    assert_eq!(refreshed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn hidden_videos_and_creators_leave_cached_pages_and_fall_back_to_the_signal_store() {
    let all = videos(20);
    let dismissed = all[2].id;
    let hidden_creator = all[4].creator_id;
    let mut mocks = Mocks::new();
    mocks.history.expect_hidden_since().returning(move |_, _| {
        Ok(Hidden {
            videos: [dismissed].into(),
            creators: HashSet::new(),
        })
    });
    mocks.signals.expect_hidden().returning(move |_| {
        Ok(Hidden {
            videos: HashSet::new(),
            creators: [hidden_creator].into(),
        })
    });
    mocks
        .feed_cache
        .expect_session()
        .returning(|user, id| Ok(Some(stored_session(user, id, now() + Duration::hours(2)))));
    let feed = mocks.feed();
    let page = feed
        .page(cursor_into(SessionId(Uuid::new_v4())))
        .await
        .expect("page");
    assert!(!page.items.is_empty());
    assert!(page.items.iter().all(|i| i.video.id != dismissed));

    // With the history down, the signal store's record filters instead.
    let mut mocks = Mocks::new();
    mocks
        .history
        .expect_hidden_since()
        .returning(|_, _| Err(down()));
    mocks.signals.expect_hidden().returning(move |_| {
        Ok(Hidden {
            videos: [dismissed].into(),
            creators: [hidden_creator].into(),
        })
    });
    mocks
        .feed_cache
        .expect_session()
        .returning(|user, id| Ok(Some(stored_session(user, id, now() + Duration::hours(2)))));
    let page = mocks
        .feed()
        .page(cursor_into(SessionId(Uuid::new_v4())))
        .await
        .expect("page");
    assert!(!page.items.is_empty());
    assert!(
        page.items
            .iter()
            .all(|i| i.video.id != dismissed && i.video.creator_id != hidden_creator),
        "hidden videos and creators are left out"
    );

    // With neither answering, no page rather than one that may show them.
    let mut mocks = Mocks::new();
    mocks
        .history
        .expect_hidden_since()
        .returning(|_, _| Err(down()));
    mocks.signals.expect_hidden().returning(|_| Err(down()));
    mocks
        .feed_cache
        .expect_session()
        .returning(|user, id| Ok(Some(stored_session(user, id, now() + Duration::hours(2)))));
    let feed = mocks.feed();
    assert!(matches!(
        feed.page(cursor_into(SessionId(Uuid::new_v4()))).await,
        Err(FeedError::Unavailable(_))
    ));
    assert!(matches!(
        feed.page(first_page(5)).await,
        Err(FeedError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_cursor_page_with_the_history_down_leaves_out_what_the_signal_store_saw_watched() {
    let mut mocks = Mocks::new();
    let watched: Vec<VideoId> = videos(20).iter().skip(5).take(3).map(|v| v.id).collect();
    let archived = watched.clone();
    mocks
        .history
        .expect_watched_since()
        .returning(|_, _| Err(down()));
    mocks
        .signals
        .expect_watched_since()
        .returning(move |_, _| Ok(archived.clone()));
    mocks
        .feed_cache
        .expect_session()
        .returning(|user, id| Ok(Some(stored_session(user, id, now() + Duration::hours(2)))));
    let page = mocks
        .feed()
        .page(cursor_into(SessionId(Uuid::new_v4())))
        .await
        .expect("page");
    assert!(!page.items.is_empty());
    assert!(
        page.items.iter().all(|i| !watched.contains(&i.video.id)),
        "watched videos are left out"
    );
}
