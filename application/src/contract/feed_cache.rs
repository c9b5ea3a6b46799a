//! Contract of [`FeedCache`].

use super::{creator, now_micros, user, video_id};
use crate::ports::FeedCache;
use chrono::Duration as ChronoDuration;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vrs_domain::{FeedSession, Reason, SessionId, SessionItem, SignalValues, UserId, Weights};

/// Lifetime of the sessions that are meant to outlive a case.
const LONG: Duration = Duration::from_secs(600);
/// Lifetime of the sessions that a case waits out; whole seconds suit every TTL mechanism.
const SHORT: Duration = Duration::from_secs(1);

/// Runs every feed-cache case, each against a fresh adapter from `make`. Takes about two seconds:
/// one case waits for short-lived sessions to expire.
pub async fn feed_cache_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn FeedCache>>,
{
    unknown_user_has_no_session(make().await).await;
    stored_session_is_current_and_readable_by_id(make().await).await;
    another_users_session_id_reads_as_none(make().await).await;
    earlier_sessions_stay_readable(make().await).await;
    invalidate_drops_only_that_users_current_session(make().await).await;
    invalidate_all_drops_every_current_session_but_keeps_cursors(make().await).await;
    sessions_expire_after_their_own_ttl(make().await).await;
    a_refreshed_session_lives_longer_and_stays_where_it_was(make().await).await;
}

async fn a_refreshed_session_lives_longer_and_stays_where_it_was(cache: Arc<dyn FeedCache>) {
    let older = session(user());
    let newer = session(older.user_id);
    cache.store_session(&older, SHORT).await.expect("store");
    cache.store_session(&newer, LONG).await.expect("store");
    let mut extended = older.clone();
    extended.expires_at += ChronoDuration::hours(1);
    cache
        .refresh_session(&extended, LONG)
        .await
        .expect("refresh");
    assert_eq!(
        current(cache.as_ref(), older.user_id).await.as_ref(),
        Some(&newer),
        "refreshing an older session does not make it current"
    );
    tokio::time::sleep(SHORT + Duration::from_millis(600)).await;
    assert_eq!(
        by_id(cache.as_ref(), older.user_id, older.id)
            .await
            .as_ref(),
        Some(&extended),
        "the refreshed session outlives its first TTL, with its new contents"
    );
    let gone = session(user());
    assert!(
        cache.refresh_session(&gone, LONG).await.is_err(),
        "a session that is gone cannot be extended"
    );
    assert_eq!(
        by_id(cache.as_ref(), gone.user_id, gone.id).await,
        None,
        "refreshing a session that is not stored does not create it"
    );
}

/// A session of three items. Scores and weights are dyadic fractions and times whole
/// microseconds, so any serialization round-trips them exactly.
fn session(user: UserId) -> FeedSession {
    let now = now_micros();
    let signals = SignalValues {
        freshness: 0.5,
        completion: 0.25,
        engagement: 0.75,
        affinity: 0.125,
        model: 0.0,
    };
    FeedSession {
        experiments: Vec::new(),
        id: SessionId(Uuid::new_v4()),
        user_id: user,
        created_at: now,
        expires_at: now + ChronoDuration::hours(1),
        weights: Weights::new(0.125, 0.375, 0.25, 0.125, 0.125).expect("valid weights"),
        items: [Reason::Following, Reason::Trending, Reason::Fresh]
            .into_iter()
            .enumerate()
            .map(|(i, reason)| SessionItem {
                video_id: video_id(),
                creator_id: creator(),
                score: 1.0 - i as f64 / 4.0,
                reason,
                signals,
            })
            .collect(),
    }
}

async fn current(cache: &dyn FeedCache, u: UserId) -> Option<FeedSession> {
    cache.current_session(u).await.expect("current_session")
}

async fn by_id(cache: &dyn FeedCache, u: UserId, id: SessionId) -> Option<FeedSession> {
    cache.session(u, id).await.expect("session")
}

async fn unknown_user_has_no_session(cache: Arc<dyn FeedCache>) {
    let u = user();
    assert_eq!(current(cache.as_ref(), u).await, None, "no current session");
    assert_eq!(
        by_id(cache.as_ref(), u, SessionId(Uuid::new_v4())).await,
        None,
        "no session by an unknown id"
    );
}

async fn stored_session_is_current_and_readable_by_id(cache: Arc<dyn FeedCache>) {
    let s = session(user());
    cache.store_session(&s, LONG).await.expect("store");
    assert_eq!(
        current(cache.as_ref(), s.user_id).await.as_ref(),
        Some(&s),
        "the stored session is current, unchanged"
    );
    assert_eq!(
        by_id(cache.as_ref(), s.user_id, s.id).await.as_ref(),
        Some(&s),
        "and readable by id"
    );
}

async fn another_users_session_id_reads_as_none(cache: Arc<dyn FeedCache>) {
    let s = session(user());
    let intruder = user();
    cache.store_session(&s, LONG).await.expect("store");
    assert_eq!(
        by_id(cache.as_ref(), intruder, s.id).await,
        None,
        "a session id only opens its own user's session"
    );
    assert_eq!(
        current(cache.as_ref(), intruder).await,
        None,
        "another user's store does not make a session current for this one"
    );
}

async fn earlier_sessions_stay_readable(cache: Arc<dyn FeedCache>) {
    let u = user();
    let (first, second) = (session(u), session(u));
    cache.store_session(&first, LONG).await.expect("store");
    cache.store_session(&second, LONG).await.expect("store");
    assert_eq!(
        current(cache.as_ref(), u).await.as_ref(),
        Some(&second),
        "the most recently stored session is current"
    );
    assert_eq!(
        by_id(cache.as_ref(), u, first.id).await.as_ref(),
        Some(&first),
        "cursors into an earlier session keep working"
    );
}

async fn invalidate_drops_only_that_users_current_session(cache: Arc<dyn FeedCache>) {
    let (s, other) = (session(user()), session(user()));
    cache.store_session(&s, LONG).await.expect("store");
    cache.store_session(&other, LONG).await.expect("store");
    cache.invalidate(s.user_id).await.expect("invalidate");
    assert_eq!(
        current(cache.as_ref(), s.user_id).await,
        None,
        "no current session after invalidate"
    );
    assert_eq!(
        current(cache.as_ref(), other.user_id).await.as_ref(),
        Some(&other),
        "other users keep theirs"
    );
    cache
        .invalidate(user())
        .await
        .expect("invalidating a user without a session is a no-op");
}

async fn invalidate_all_drops_every_current_session_but_keeps_cursors(cache: Arc<dyn FeedCache>) {
    let (a, b) = (session(user()), session(user()));
    cache.store_session(&a, LONG).await.expect("store");
    cache.store_session(&b, LONG).await.expect("store");
    let dropped = cache.invalidate_all().await.expect("invalidate_all");
    // Other cases may share the backing store, so only a lower bound holds.
    assert!(dropped >= 2, "both current sessions counted: {dropped}");
    for s in [&a, &b] {
        assert_eq!(current(cache.as_ref(), s.user_id).await, None);
        assert_eq!(
            by_id(cache.as_ref(), s.user_id, s.id).await.as_ref(),
            Some(s),
            "cursors into invalidated sessions keep working"
        );
    }
    let c = session(user());
    cache.store_session(&c, LONG).await.expect("store");
    assert_eq!(
        current(cache.as_ref(), c.user_id).await.as_ref(),
        Some(&c),
        "sessions stored afterwards are current"
    );
}

async fn sessions_expire_after_their_own_ttl(cache: Arc<dyn FeedCache>) {
    // Alone: expires with its TTL.
    let alone = session(user());
    cache.store_session(&alone, SHORT).await.expect("store");
    // A long-lived session replaced by a short-lived one: current follows the newer session.
    let lasting = session(user());
    let replacing = session(lasting.user_id);
    cache.store_session(&lasting, LONG).await.expect("store");
    cache.store_session(&replacing, SHORT).await.expect("store");
    // A short-lived session replaced by a long-lived one: current lives as long as the newer one.
    let brief = session(user());
    let renewed = session(brief.user_id);
    cache.store_session(&brief, SHORT).await.expect("store");
    cache.store_session(&renewed, LONG).await.expect("store");

    assert_eq!(
        current(cache.as_ref(), alone.user_id).await.as_ref(),
        Some(&alone),
        "readable before its TTL"
    );
    tokio::time::sleep(SHORT + Duration::from_millis(600)).await;

    assert_eq!(
        by_id(cache.as_ref(), alone.user_id, alone.id).await,
        None,
        "expired by id"
    );
    assert_eq!(
        current(cache.as_ref(), alone.user_id).await,
        None,
        "expired as current"
    );
    assert_eq!(
        current(cache.as_ref(), lasting.user_id).await,
        None,
        "the most recently stored session expired, and an older one does not become current"
    );
    assert_eq!(
        by_id(cache.as_ref(), lasting.user_id, lasting.id)
            .await
            .as_ref(),
        Some(&lasting),
        "an older session lives for its own TTL"
    );
    assert_eq!(
        by_id(cache.as_ref(), brief.user_id, brief.id).await,
        None,
        "the short-lived session expired"
    );
    assert_eq!(
        current(cache.as_ref(), renewed.user_id).await.as_ref(),
        Some(&renewed),
        "storing a session gives the current pointer the new session's TTL"
    );
}
