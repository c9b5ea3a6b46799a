//! Contract of [`ViewHistory`].

use super::{now_micros, user, video_id};
use crate::ports::ViewHistory;
use chrono::{DateTime, Duration, Utc};
use std::future::Future;
use std::sync::Arc;
use vrs_domain::{CreatorId, UserId, VideoId};

/// Runs every view-history case, each against a fresh adapter from `make`.
pub async fn history_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ViewHistory>>,
{
    unknown_user_has_no_history(make().await).await;
    served_videos_are_listed_from_their_time_on(make().await).await;
    watches_are_visible_at_once_and_apart_from_serves(make().await).await;
    the_latest_time_of_a_video_counts(make().await).await;
    users_do_not_share_history(make().await).await;
    hidden_videos_and_creators_are_visible_at_once(make().await).await;
}

async fn hidden_videos_and_creators_are_visible_at_once(h: Arc<dyn ViewHistory>) {
    let (u, other) = (user(), user());
    assert!(h.hidden(u).await.expect("hidden").is_empty(), "nothing yet");
    let (a, b) = (video_id(), video_id());
    let c = CreatorId(uuid::Uuid::new_v4());
    let at = now_micros();
    h.record_hidden(u, &[a], &[], at)
        .await
        .expect("record_hidden");
    h.record_hidden(u, &[a, b], &[c], at + Duration::seconds(1))
        .await
        .expect("record_hidden");
    // Nothing at all to record is fine.
    h.record_hidden(u, &[], &[], at)
        .await
        .expect("record_hidden");
    let hidden = h.hidden(u).await.expect("hidden");
    assert_eq!(hidden.videos, [a, b].into(), "every hidden video, once");
    assert_eq!(hidden.creators, [c].into(), "the hidden creator");
    assert!(
        h.hidden(other).await.expect("hidden").is_empty(),
        "another user's are theirs"
    );
    assert!(
        watched(h.as_ref(), u, at - Duration::days(1))
            .await
            .is_empty(),
        "hiding is not watching"
    );
}

fn sorted(mut list: Vec<VideoId>) -> Vec<VideoId> {
    list.sort_unstable();
    list.dedup();
    list
}

async fn served(h: &dyn ViewHistory, u: UserId, since: DateTime<Utc>) -> Vec<VideoId> {
    sorted(h.served_since(u, since).await.expect("served_since"))
}

async fn watched(h: &dyn ViewHistory, u: UserId, since: DateTime<Utc>) -> Vec<VideoId> {
    sorted(h.watched_since(u, since).await.expect("watched_since"))
}

async fn unknown_user_has_no_history(h: Arc<dyn ViewHistory>) {
    let (u, long_ago) = (user(), now_micros() - Duration::days(30));
    assert!(
        served(h.as_ref(), u, long_ago).await.is_empty(),
        "nothing served"
    );
    assert!(
        watched(h.as_ref(), u, long_ago).await.is_empty(),
        "nothing watched"
    );
}

async fn served_videos_are_listed_from_their_time_on(h: Arc<dyn ViewHistory>) {
    let u = user();
    let at = now_micros() - Duration::hours(1);
    let (a, b) = (video_id(), video_id());
    h.record_served(u, &[a, b], at)
        .await
        .expect("record_served");
    assert_eq!(
        served(h.as_ref(), u, at - Duration::hours(1)).await,
        sorted(vec![a, b]),
        "every video served after `since`"
    );
    assert_eq!(
        served(h.as_ref(), u, at).await,
        sorted(vec![a, b]),
        "`since` is inclusive"
    );
    assert!(
        served(h.as_ref(), u, at + Duration::milliseconds(1))
            .await
            .is_empty(),
        "nothing served after the last serve"
    );
}

async fn watches_are_visible_at_once_and_apart_from_serves(h: Arc<dyn ViewHistory>) {
    let u = user();
    let at = now_micros();
    let since = at - Duration::hours(1);
    let (shown, seen) = (video_id(), video_id());
    h.record_served(u, &[shown], at)
        .await
        .expect("record_served");
    h.record_watched(u, &[seen], at)
        .await
        .expect("record_watched");
    assert_eq!(
        watched(h.as_ref(), u, since).await,
        vec![seen],
        "a watch is visible as soon as record_watched returns, and serves are not watches"
    );
    assert_eq!(
        served(h.as_ref(), u, since).await,
        vec![shown],
        "watches are not serves"
    );
}

async fn the_latest_time_of_a_video_counts(h: Arc<dyn ViewHistory>) {
    let u = user();
    let late = now_micros() - Duration::hours(1);
    let early = late - Duration::hours(5);
    let (again, backfilled) = (video_id(), video_id());
    h.record_served(u, &[again], early).await.expect("record");
    h.record_served(u, &[again], late).await.expect("record");
    assert_eq!(
        served(h.as_ref(), u, late).await,
        vec![again],
        "a video served again counts from its last serve"
    );
    h.record_watched(u, &[backfilled], late)
        .await
        .expect("record");
    h.record_watched(u, &[backfilled], early)
        .await
        .expect("record");
    assert_eq!(
        watched(h.as_ref(), u, late).await,
        vec![backfilled],
        "recording an older time does not hide a newer one"
    );
}

async fn users_do_not_share_history(h: Arc<dyn ViewHistory>) {
    let (u1, u2) = (user(), user());
    let at = now_micros();
    let since = at - Duration::hours(1);
    let (a, b) = (video_id(), video_id());
    h.record_served(u1, &[a], at).await.expect("record");
    h.record_watched(u2, &[b], at).await.expect("record");
    assert_eq!(served(h.as_ref(), u1, since).await, vec![a], "u1's serves");
    assert!(
        served(h.as_ref(), u2, since).await.is_empty(),
        "u2 was served nothing"
    );
    assert_eq!(
        watched(h.as_ref(), u2, since).await,
        vec![b],
        "u2's watches"
    );
    assert!(
        watched(h.as_ref(), u1, since).await.is_empty(),
        "u1 watched nothing"
    );
}
