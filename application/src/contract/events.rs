//! Contract of [`EventSink`]: deduplication by `event_id`, and accepted events reaching the signal
//! store it feeds.

use super::{SignalPipeline, creator, event, eventually, now_micros, user, video_id};
use crate::ports::{PublishOutcome, SignalStore};
use chrono::{DateTime, Duration, Utc};
use std::future::Future;
use vrs_domain::{EngagementEvent, EventType, VideoId, VideoStats};

/// Runs every event-sink case, each against a fresh pipeline from `make`.
pub async fn events_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = SignalPipeline>,
{
    accepted_events_reach_the_signal_store(make().await).await;
    a_repeated_batch_is_all_duplicates(make().await).await;
    repeats_within_a_batch_are_duplicates(make().await).await;
    a_known_event_id_is_a_duplicate_whatever_its_content(make().await).await;
    a_mixed_batch_applies_only_the_new_events(make().await).await;
}

/// Window of the stats queries: every event of a case is minutes old.
fn since() -> DateTime<Utc> {
    now_micros() - Duration::hours(3)
}

fn at() -> DateTime<Utc> {
    now_micros() - Duration::minutes(10)
}

/// Several events on one video by one user.
fn events_on(video: VideoId, types: &[EventType]) -> Vec<EngagementEvent> {
    let (u, c, t) = (user(), creator(), at());
    types.iter().map(|&ty| event(u, video, c, ty, t)).collect()
}

async fn stats_of(store: &dyn SignalStore, video: VideoId) -> VideoStats {
    store
        .video_stats(since())
        .await
        .expect("video_stats")
        .into_iter()
        .find(|(id, _)| *id == video)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

/// Waits until the video's stats match `expected` (or time runs out) and asserts they do.
async fn assert_stats(store: &dyn SignalStore, video: VideoId, expected: VideoStats, why: &str) {
    let stats = eventually(|| stats_of(store, video), |s| *s == expected).await;
    assert_eq!(stats, expected, "{why}");
}

fn outcome(accepted: usize, duplicates: usize) -> PublishOutcome {
    PublishOutcome {
        accepted,
        duplicates,
    }
}

async fn accepted_events_reach_the_signal_store(p: SignalPipeline) {
    let v = video_id();
    let events = events_on(v, &[EventType::View, EventType::Like, EventType::Share]);
    let (u, c) = (events[0].user_id, events[0].creator_id);
    let published = p.sink.publish(&events).await.expect("publish");
    assert_eq!(published, outcome(3, 0), "fresh events are all accepted");
    let expected = VideoStats {
        views: 1,
        likes: 1,
        shares: 1,
        ..VideoStats::default()
    };
    assert_stats(
        p.store.as_ref(),
        v,
        expected,
        "accepted events are aggregated",
    )
    .await;
    let affinity = p
        .store
        .creator_affinity(u, since())
        .await
        .expect("creator_affinity");
    assert_eq!(
        affinity,
        vec![(c, 7.5)],
        "and reach the user's creator affinity"
    );
    let active = p
        .store
        .most_active_users(since(), 10_000)
        .await
        .expect("most_active_users");
    assert!(active.contains(&u), "and the user's activity");
}

async fn a_repeated_batch_is_all_duplicates(p: SignalPipeline) {
    let v = video_id();
    let events = events_on(v, &[EventType::View, EventType::Like]);
    assert_eq!(
        p.sink.publish(&events).await.expect("publish"),
        outcome(2, 0),
        "first delivery"
    );
    assert_eq!(
        p.sink.publish(&events).await.expect("publish again"),
        outcome(0, 2),
        "a redelivered batch is counted as duplicates"
    );
    let expected = VideoStats {
        views: 1,
        likes: 1,
        ..VideoStats::default()
    };
    assert_stats(p.store.as_ref(), v, expected, "and applied once").await;
}

async fn repeats_within_a_batch_are_duplicates(p: SignalPipeline) {
    let v = video_id();
    let events = events_on(v, &[EventType::View, EventType::Like]);
    let batch = [
        events[0].clone(),
        events[0].clone(),
        events[1].clone(),
        events[0].clone(),
    ];
    assert_eq!(
        p.sink.publish(&batch).await.expect("publish"),
        outcome(2, 2),
        "repeats inside one batch are duplicates"
    );
    let expected = VideoStats {
        views: 1,
        likes: 1,
        ..VideoStats::default()
    };
    assert_stats(p.store.as_ref(), v, expected, "and applied once").await;
}

async fn a_known_event_id_is_a_duplicate_whatever_its_content(p: SignalPipeline) {
    let v = video_id();
    let view = events_on(v, &[EventType::View]);
    p.sink.publish(&view).await.expect("publish");
    let relabeled = EngagementEvent {
        event_type: EventType::Like,
        ..view[0].clone()
    };
    assert_eq!(
        p.sink.publish(&[relabeled]).await.expect("publish"),
        outcome(0, 1),
        "the event id alone identifies an event"
    );
    let expected = VideoStats {
        views: 1,
        ..VideoStats::default()
    };
    assert_stats(
        p.store.as_ref(),
        v,
        expected,
        "the duplicate's content is not applied",
    )
    .await;
}

async fn a_mixed_batch_applies_only_the_new_events(p: SignalPipeline) {
    let v = video_id();
    let events = events_on(v, &[EventType::View, EventType::Comment, EventType::Like]);
    p.sink.publish(&events[..1]).await.expect("publish");
    assert_eq!(
        p.sink.publish(&events).await.expect("publish"),
        outcome(2, 1),
        "only the known event is a duplicate"
    );
    let expected = VideoStats {
        views: 1,
        comments: 1,
        likes: 1,
        ..VideoStats::default()
    };
    assert_stats(p.store.as_ref(), v, expected, "each event applied once").await;
}
